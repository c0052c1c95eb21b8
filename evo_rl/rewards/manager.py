"""The reward manager: builds the configured terms, sums them, and applies the episode rules."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
from pydantic import ValidationError

from evo_rl.config import CarConfig, EpisodeConfig, RewardTermConfig, import_object
from evo_rl.errors import ConfigError, EvoError
from evo_rl.rewards import terms as _builtin_terms  # noqa: F401 - registers the NumPy terms
from evo_rl.rewards import trajectory as _trajectory  # noqa: F401 - registers progress_trajectory
from evo_rl.rewards.base import TERMS, RewardOutput, RewardTerm, StepContext
from evo_rl.rewards.multitrack import ReferenceSet, TrackGroup
from evo_rl.rewards.reference_trajectory import ReferenceTrajectory, as_points3, load_reference
from evo_rl.sim.track import Track

# A car makes progress (for `episode.no_progress_seconds`) when its best distance along
# the track this episode grows by at least this much, m.
PROGRESS_GAIN = 1.0


class RewardManager:
    """Weighted sum of reward terms over N cars, with the episode-end rules.

    ``terms`` and ``episode`` are the ``reward`` and ``episode`` sections of the
    config. ``source`` names the car source and ``provides`` what it reports (the
    names of :data:`evo_rl.envs.source.FIELDS`; None: the simulator's
    ``World.provides``); a term or rule that needs data the source lacks is a
    :class:`~evo_rl.errors.ConfigError` here, at start-up, naming both. ``track`` is
    the source's track model, None when it has none, or a :class:`~evo_rl.rewards.multitrack.TrackGroup`
    when its cars drive several tracks (each track then gets its own reference). ``reference`` is a ``[P, 3]``
    or ``[P, 2]`` trajectory; when None, ``episode.reference`` names it: null or
    ``centre`` (the track's centre line), ``racing_line`` (the simulator's
    minimum-curvature line for the default car) or a ``.npy``/``.csv`` file.
    """

    def __init__(
        self,
        terms: list[RewardTermConfig],
        episode: EpisodeConfig,
        track: Track | TrackGroup | None,
        n_envs: int,
        source: str = "sim",
        reference: np.ndarray | None = None,
        provides: frozenset[str] | None = None,
    ) -> None:
        if provides is None:
            if source != "sim":
                raise ConfigError(f"car source {source!r}: say what it provides (RewardManager(provides=...))")
            from evo_rl.sim.world import World

            provides = World.provides
        self.n_envs = n_envs
        self.episode = episode
        self.source = source
        self.provides = frozenset(provides)
        self.track = track
        if isinstance(track, TrackGroup):
            if reference is not None or episode.reference not in (None, "centre", "racing_line"):
                raise ConfigError(
                    "episode.reference names one track's reference, but the cars drive several env.tracks; "
                    "use episode.reference: null (each track's centre line) or racing_line"
                )
            refs = [_make_reference(None, episode, t) for t in track.tracks]
            self.reference: Any = ReferenceSet(refs, track.track_id)
        else:
            self.reference = _make_reference(reference, episode, track)
        self.labels: list[str] = []
        self.weights: list[float] = []
        self.terms: list[Any] = []
        for i, cfg in enumerate(terms):
            label = cfg.name or cfg.term
            if label in self.labels:
                raise ConfigError(f"reward[{i}]: two terms are labelled {label!r}; give one of them a different `name`")
            self.labels.append(label)
            self.weights.append(cfg.weight)
            self.terms.append(self._build(cfg, i))
        if episode.max_stray is not None:
            self._require({"track"}, "episode.max_stray", "set episode.max_stray: null or give env.track a track model")
        # no_progress_seconds measures progress along the track model, or else metres driven
        self._progress_on_track = "track" in self.provides
        if episode.no_progress_seconds is not None and not self._progress_on_track:
            self._require({"position"}, "episode.no_progress_seconds", "set episode.no_progress_seconds: null")
        self._driven = np.zeros(n_envs)  # [N] m driven this episode (no_progress without a track model)
        self._best_s = np.full(n_envs, -np.inf)  # [N] best progress this episode, m
        self._last_gain = np.zeros(n_envs, np.int64)  # [N] episode step of the last progress
        self._ring: np.ndarray | None = None  # [W+1, N, 3] recent positions for the stuck rule

    # ------------------------------------------------------------------ building

    def _build(self, cfg: RewardTermConfig, i: int) -> Any:
        where = f"reward[{i}] ({cfg.term})"
        if cfg.term in TERMS:
            cls = TERMS[cfg.term]
        elif ":" in cfg.term or "." in cfg.term:
            cls = import_object(cfg.term, what=f"{where}: custom reward term")
        else:
            raise ConfigError(
                f"{where}: unknown reward term {cfg.term!r}; built-in terms: {', '.join(sorted(TERMS))} "
                "(or give an import path module:function)"
            )
        self._require(
            frozenset(getattr(cls, "needs", frozenset())),
            f"{where}: term {cfg.term!r}",
            "remove the term or choose another car source (env.source)",
        )
        if isinstance(cls, type) and issubclass(cls, RewardTerm):
            try:
                params = cls.Params(**cfg.params).model_dump()
            except ValidationError as e:
                raise ConfigError(_params_error(where, cls, e)) from None
            return cls(self.n_envs, self.track, self.reference, **params)
        if inspect.isclass(cls):
            return _custom_class(cls, cfg, where, self.n_envs, self.track, self.reference)
        if callable(cls):
            return _FunctionTerm(cls, cfg, where)
        raise ConfigError(f"{where}: {cfg.term!r} is a {type(cls).__name__}, not a function or class")

    def _require(self, needs: frozenset[str] | set[str], consumer: str, fix: str) -> None:
        missing = sorted(set(needs) - self.provides)
        if missing:
            raise ConfigError(
                f"{consumer} needs {', '.join(missing)}, which the car source {self.source!r} does not provide "
                f"(it provides: {', '.join(sorted(self.provides)) or 'nothing'}); {fix}"
            )

    def add_tracks(self, tracks: list[Track]) -> None:
        """The source added ``tracks`` (already in the :class:`TrackGroup`): give them references."""
        if not isinstance(self.track, TrackGroup):
            raise EvoError("add_tracks needs a RewardManager built for several tracks (a TrackGroup)")
        self.reference.add([_make_reference(None, self.episode, t) for t in tracks])

    # ------------------------------------------------------------------ stepping

    def reset(self, mask: np.ndarray) -> None:
        """Clear the per-episode state of the masked cars ``[N]`` bool."""
        mask = np.asarray(mask, dtype=bool)
        for term in self.terms:
            reset = getattr(term, "reset", None)
            if reset is not None:
                reset(mask)
        self._best_s[mask] = -np.inf
        self._last_gain[mask] = 0
        self._driven[mask] = 0.0

    def __call__(self, ctx: StepContext) -> RewardOutput:
        n = self.n_envs
        terminate = np.zeros(n, bool)  # [N]
        reason = np.full(n, "", dtype=object)  # [N]
        values = []
        for label, term in zip(self.labels, self.terms, strict=True):
            out = term(ctx)
            ends = None
            if isinstance(out, tuple):
                out, ends = out
            v = np.asarray(out, dtype=np.float64)
            if v.shape != (n,):
                raise EvoError(
                    f"reward term {label!r} returned shape {v.shape}; it must return one value per car ({n},)"
                )
            if ends is not None:
                ends = np.asarray(ends, dtype=bool)
                new = ends & ~terminate
                reason[new] = getattr(term, "end_reason", "") or label
                terminate |= ends
            values.append(v)
        self._rules(ctx, terminate, reason)
        terminal = terminate | np.asarray(ctx.world.finished, dtype=bool)
        reward = np.zeros(n)
        terms = {}
        for label, term, weight, v in zip(self.labels, self.terms, self.weights, values, strict=True):
            finalize = getattr(term, "finalize", None)
            if finalize is not None:
                v = v.copy()
                finalize(v, terminal)
            w = weight * v
            reward += w
            terms[label] = w.astype(np.float32)
        return RewardOutput(reward.astype(np.float32), terms, terminate, reason)

    def _rules(self, ctx: StepContext, terminate: np.ndarray, reason: np.ndarray) -> None:
        ep, w = self.episode, ctx.world
        steps = np.asarray(ctx.steps)

        def end(mask: np.ndarray, why: str) -> None:
            new = mask & ~terminate
            reason[new] = why
            terminate[:] |= mask

        if ep.max_stray is not None:
            end(np.abs(self.reference.offset(w.progress_s, w.lateral)) > ep.max_stray, "max_stray")
        if ep.no_progress_seconds is not None:
            if self._progress_on_track:
                progress = w.progress_s
            else:
                self._driven += np.linalg.norm(w.position3() - ctx.prev_pos3, axis=1)
                progress = self._driven
            gained = progress >= self._best_s + PROGRESS_GAIN
            self._best_s = np.where(gained, progress, self._best_s)
            self._last_gain = np.where(gained, steps, self._last_gain)
            end((steps - self._last_gain) * ctx.dt >= ep.no_progress_seconds, "no_progress")
        if ep.stuck_seconds is not None:
            end(self._stuck(ctx, steps, ep.stuck_seconds), "stuck")

    def _stuck(self, ctx: StepContext, steps: np.ndarray, seconds: float) -> np.ndarray:
        window = max(1, int(round(seconds / ctx.dt)))  # steps
        if self._ring is None or len(self._ring) != window + 1:
            self._ring = np.zeros((window + 1, self.n_envs, 3))  # [W+1, N, 3]
        ring, cars = self._ring, np.arange(self.n_envs)
        first = steps == 1
        ring[0, first] = ctx.prev_pos3[first]
        ring[steps % (window + 1), cars] = ctx.world.position3()
        then = ring[(steps - window) % (window + 1), cars]  # [N, 3]
        moved = np.linalg.norm(ring[steps % (window + 1), cars] - then, axis=1)
        return (steps >= window) & (moved < self.episode.stuck_distance)


class _NoReference:
    """Stands for the reference trajectory of a source without a track model when none was given:
    a term or rule that reads it is refused when it is built, at start-up."""

    def __getattr__(self, name: str) -> Any:
        raise ConfigError(
            "this reward needs a reference trajectory, and the car source has no track model to take one from; "
            "record the map (`evo-rl game tm2020 record-track`) and set env.track, or record a reference "
            "trajectory (`evo-rl game tm2020 record-reward`) and set episode.reference to its file"
        )


def _make_reference(reference: np.ndarray | None, episode: EpisodeConfig, track: Track | None) -> Any:
    if track is None:
        if reference is not None:
            return ReferenceTrajectory(as_points3(reference), None)
        if episode.reference in (None, "centre", "racing_line"):
            return _NoReference()
        return ReferenceTrajectory(load_reference(episode.reference), None)
    if reference is not None:
        return ReferenceTrajectory(np.asarray(reference), track)
    if episode.reference in (None, "centre"):
        return ReferenceTrajectory.centre(track)
    if episode.reference == "racing_line":
        from evo_rl.sim.reference_lap import compute_reference_lap

        ref = compute_reference_lap(track, CarConfig())
        line = ref.line[ref.start_index : ref.finish_index + 1]  # [K, 2] start line to finish line
        return ReferenceTrajectory(as_points3(line, track.height), track)
    return ReferenceTrajectory(load_reference(episode.reference, track.height), track)


def _params_error(where: str, cls: type[RewardTerm], err: ValidationError) -> str:
    allowed = ", ".join(cls.Params.model_fields) or "none"
    lines = [f"{where}: invalid params"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            lines.append(f"  params.{key}: unknown parameter of {cls.name!r}; its parameters: {allowed}")
        else:
            lines.append(f"  params.{key} = {e.get('input')!r}: {e['msg']}")
    return "\n".join(lines)


class _FunctionTerm:
    """A custom term given as a function ``f(ctx: StepContext, **params) -> [N] values``."""

    def __init__(self, fn: Callable, cfg: RewardTermConfig, where: str) -> None:
        try:
            inspect.signature(fn).bind(None, **cfg.params)
        except TypeError as e:
            raise ConfigError(
                f"{where}: custom reward function {cfg.term!r} cannot be called as f(ctx, **params) "
                f"with params {sorted(cfg.params)}: {e}"
            ) from None
        except ValueError:  # builtins without a signature: accept, they fail loudly on the first step
            pass
        self.fn, self.params = fn, dict(cfg.params)

    def __call__(self, ctx: StepContext) -> Any:
        return self.fn(ctx, **self.params)


def _custom_class(
    cls: type, cfg: RewardTermConfig, where: str, n_envs: int, track: Track, reference: ReferenceTrajectory
) -> Any:
    """A custom term class ``Cls(n_envs, track, reference, **params)`` whose instances are
    called as ``term(ctx)``, with an optional ``reset(mask)``."""
    try:
        inspect.signature(cls).bind(n_envs, track, reference, **cfg.params)
    except TypeError as e:
        raise ConfigError(
            f"{where}: custom reward class {cfg.term!r} cannot be built as Cls(n_envs, track, reference, **params) "
            f"with params {sorted(cfg.params)}: {e}"
        ) from None
    try:
        term = cls(n_envs, track, reference, **cfg.params)
    except EvoError:
        raise
    except Exception as e:  # noqa: BLE001 - user code: report which term failed and why
        raise ConfigError(
            f"{where}: building custom reward class {cfg.term!r} failed: {type(e).__name__}: {e}"
        ) from None
    if not callable(term):
        raise ConfigError(f"{where}: custom reward class {cfg.term!r} has no __call__(self, ctx)")
    try:
        inspect.signature(term).bind(None)
    except TypeError as e:
        raise ConfigError(
            f"{where}: custom reward class {cfg.term!r}: __call__ must take one argument, ctx: {e}"
        ) from None
    return term
