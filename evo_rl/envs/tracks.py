"""The tracks cars train on: ``env.tracks`` (named tracks and generated sets) and the curriculum.

A :class:`TrackPool` builds the tracks of ``env.tracks``: built-in names and ``.track`` files as
they are, and generated sets (``{seeds: [first, end], n_blocks, min_radius, width, checkpoints}``)
through :func:`~evo_rl.sim.generate.generate_track`. Each car draws a track from the pool at
every episode start (:meth:`TrackPool.sample`).

With ``env.curriculum.enabled`` the generated sets start easy and get harder: level ``l`` of
``L`` builds each set at difficulty ``d = l / (L - 1)``, its length from ``n_blocks // 2`` (at
least 4) up to ``n_blocks`` and its tightest radius from 48 m (wide curves only) down to
``min_radius``. When the finish rate over the last ``window`` episodes at a level reaches
``promote_at``, the next level's tracks are built and drawn from (:meth:`TrackPool.record`);
named tracks are drawn at every level. The pool only grows, so a car keeps the track of the
episode it is driving. ``randomise.road_width`` draws each generated track's width from its
range (a fixed draw per seed).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from evo_rl.config import EvoConfig, GeneratedTracks
from evo_rl.errors import ConfigError, TrackError
from evo_rl.sim.generate import generated_track
from evo_rl.sim.track import Track

EASY_RADIUS = 48.0  # m: the tightest radius of the curriculum's first level (2-block curves and wider)
EASY_BLOCKS = 4  # the fewest blocks of a curriculum track


def curriculum_knobs(spec: GeneratedTracks, difficulty: float) -> tuple[int, float]:
    """(n_blocks, min_radius) of a generated set at ``difficulty`` in [0, 1] (1: the set's own knobs)."""
    d = float(np.clip(difficulty, 0.0, 1.0))
    easy_blocks = min(spec.n_blocks, max(EASY_BLOCKS, spec.n_blocks // 2))
    easy_radius = max(spec.min_radius, EASY_RADIUS)
    n_blocks = int(round(easy_blocks + d * (spec.n_blocks - easy_blocks)))
    return n_blocks, easy_radius + d * (spec.min_radius - easy_radius)


def generated_set(
    spec: GeneratedTracks, difficulty: float = 1.0, road_width: tuple[float, float] | None = None
) -> list[Track]:
    """The tracks of a generated set at ``difficulty``, named by :func:`generated_name`."""
    n_blocks, min_radius = curriculum_knobs(spec, difficulty)
    out = []
    for seed in range(*spec.seeds):
        width = spec.width
        if road_width is not None:
            width = round(float(np.random.default_rng([seed, 1]).uniform(*road_width)), 1)
        checkpoints = min(spec.checkpoints, n_blocks)
        try:
            out.append(generated_track(seed, n_blocks, min_radius, width, checkpoints))
        except TrackError as e:
            raise ConfigError(f"env.tracks: generated set {spec.seeds}: {e}") from None
    return out


class TrackPool:
    """The training tracks of ``cfg.env.tracks`` (``env.track`` alone when it is null) and the curriculum."""

    def __init__(self, cfg: EvoConfig) -> None:
        from evo_rl.sim.catalog import get_track

        env = cfg.env
        self.curriculum = env.curriculum
        self.road_width = cfg.randomise.road_width
        entries = env.tracks if env.tracks is not None else [env.track]
        if not entries:
            raise ConfigError("env.tracks is empty: list at least one track, or set it to null to train on env.track")
        self.named: list[Track] = []
        self.sets: list[GeneratedTracks] = []
        for i, e in enumerate(entries):
            if isinstance(e, GeneratedTracks):
                self.sets.append(e)
            elif e is None:
                raise ConfigError("env.track is null, but the simulator needs a track: name one (`evo-rl tracks list`)")
            else:
                try:
                    self.named.append(get_track(e))
                except TrackError as err:
                    raise ConfigError(f"env.tracks[{i}]: {err}") from None
        self.levels = self.curriculum.levels if self.curriculum.enabled and self.sets else 1
        self.level = 0
        self.tracks: list[Track] = list(self.named) + self._level_tracks(0)  # every track built, in World order
        self.active = np.arange(len(self.tracks))  # [A] the track ids drawn from at this level
        self._finishes: deque[bool] = deque(maxlen=self.curriculum.window)

    @property
    def difficulty(self) -> float:
        """Difficulty of the generated sets at the current level, 0..1."""
        return 1.0 if self.levels == 1 else self.level / (self.levels - 1)

    def _level_tracks(self, level: int) -> list[Track]:
        d = 1.0 if self.levels == 1 else level / (self.levels - 1)
        return [t for spec in self.sets for t in generated_set(spec, d, self.road_width)]

    def sample(self, k: int, rng: np.random.Generator) -> np.ndarray:
        """Track ids ``[k]`` int64 drawn uniformly from the current level."""
        return self.active[rng.integers(0, len(self.active), k)].astype(np.int64)

    def record(self, finished: np.ndarray) -> list[Track]:
        """Count ended episodes (``finished [E]`` bool); returns the tracks of a new level when the finish rate
        reaches ``curriculum.promote_at`` (add them to the World), else []."""
        self._finishes.extend(bool(f) for f in np.asarray(finished, bool).reshape(-1))
        full = len(self._finishes) == self._finishes.maxlen
        if self.level + 1 >= self.levels or not full or np.mean(self._finishes) < self.curriculum.promote_at:
            return []
        self.level += 1
        self._finishes.clear()
        new = self._level_tracks(self.level)
        first = len(self.tracks)
        self.tracks.extend(new)
        self.active = np.concatenate([np.arange(len(self.named)), np.arange(first, first + len(new))])
        return new
