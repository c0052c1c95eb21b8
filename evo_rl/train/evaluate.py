"""Deterministic evaluation episodes: finish rate and lap times against the
track's reference lap time and its record lap (:mod:`evo_rl.sim.records`)."""

from __future__ import annotations

import math
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from evo_rl.config import EvoConfig, RandomiseConfig
from evo_rl.train.collect import EpisodeEnd

Act = Callable[[Any], np.ndarray]  # batched observation -> actions [N, 3]


@dataclass
class EvalResult:
    """The outcome of one evaluation (one episode per car)."""

    episodes: int
    finish_rate: float  # fraction of episodes that crossed the finish line
    lap_times: list[float]  # race time of every finished episode, s
    mean_lap_time: float | None  # mean of lap_times; None without a finish
    best_lap_time: float | None
    reference_lap_time: float | None  # the track's reference lap time, s
    lap_time_ratio: float | None  # mean_lap_time / reference_lap_time; None without a finish
    mean_progress: float  # mean fraction of the track driven, 0..1
    mean_reward: float  # mean episode return
    mean_checkpoints: float  # mean checkpoint gates passed
    score: float  # ranks evaluations: mean over episodes of progress (0..1), 1 + reference / lap time if finished
    end_reasons: dict[str, int] = field(default_factory=dict)
    record_lap_time: float | None = None  # the track's record lap time (the planner's), s; None if none is known
    record_ratio: float | None = None  # mean_lap_time / record_lap_time; None without a record or a finish

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def reference_lap_time(track: Any, cfg: EvoConfig) -> float | None:
    """The track's reference lap time for the configured car (None if it cannot be computed)."""
    from evo_rl.sim.reference_lap import compute_reference_lap

    if track is None:
        return None
    try:
        return float(compute_reference_lap(track, cfg.car).lap_time)
    except Exception as e:  # noqa: BLE001 - a missing reference only removes the comparison
        warnings.warn(f"no reference lap time for track {track.name!r}: {type(e).__name__}: {e}", stacklevel=2)
        return None


def record_lap_time(track: Any, cfg: EvoConfig) -> float | None:
    """The track's record lap time for the configured car, step and controls (None if none is known)."""
    from evo_rl.sim.records import record_lap_time as lookup

    if track is None:
        return None
    try:
        return lookup(track, cfg)
    except Exception as e:  # noqa: BLE001 - a missing record only removes the comparison
        warnings.warn(f"no record lap time for track {track.name!r}: {type(e).__name__}: {e}", stacklevel=2)
        return None


class Evaluator:
    """Runs ``episodes`` deterministic episodes at once, one car each, in its own
    environment (separate from the training one); the same start perturbations
    every time, so evaluations are comparable."""

    def __init__(
        self, cfg: EvoConfig, episodes: int, track: Any = None, seed: int | None = None, env: Any = None
    ) -> None:
        """``env``: drive in this one-car environment instead, one episode after the other (a real-time game,
        :class:`~evo_rl.games.realtime.RealTimeVecEnv` with ``autoreset=False``)."""
        from evo_rl.envs.vector import VecTrackEnv

        self.cfg = cfg
        self.episodes = episodes
        self.sequential = env is not None
        if track is None:
            track = cfg.env.track  # with env.tracks, training draws from many tracks; evaluation drives env.track
        if env is None:  # the nominal car and clean sensors: domain randomisation is for training
            cfg = cfg.model_copy(update={"randomise": RandomiseConfig()})
        self.env = env if env is not None else VecTrackEnv(cfg, n_envs=episodes, track=track, autoreset=False)
        self.seed = cfg.env.seed + 1_000_003 if seed is None else seed
        self.reference_lap_time = reference_lap_time(self.env.track, cfg)
        self.record_lap_time = record_lap_time(self.env.track, cfg)

    def run(self, act: Act, max_steps: int | None = None) -> EvalResult:
        """Drive every episode until it ends (``env.max_steps`` at most)."""
        if not self.sequential:
            parts = [self._drive(act, self.episodes, self.seed, max_steps)]
        else:
            parts = [self._drive(act, 1, self.seed + k, max_steps) for k in range(self.episodes)]
        lap, progress, ret, cps = (np.concatenate([part[i] for part in parts]) for i in range(4))
        reasons: dict[str, int] = {}
        for part in parts:
            for key, count in part[4].items():
                reasons[key] = reasons.get(key, 0) + count
        return summarize(lap, progress, ret, cps, reasons, self.reference_lap_time, self.record_lap_time)

    def _drive(
        self, act: Act, n: int, seed: int, max_steps: int | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, int]]:
        """Lap time (NaN unfinished), progress, return and checkpoints ``[n]`` of ``n`` cars driven at once."""
        obs, _ = self.env.reset(seed=seed)
        done = np.zeros(n, bool)  # [N]
        lap = np.full(n, np.nan)  # [N] lap time where finished
        progress = np.zeros(n)  # [N]
        ret = np.zeros(n)  # [N]
        cps = np.zeros(n)  # [N]
        reasons: dict[str, int] = {}
        limit = max_steps or self.env.max_steps
        for _ in range(limit):
            actions = np.asarray(act(obs), np.float32).reshape(n, 3)
            actions[done] = 0.0
            obs, _, terminated, truncated, info = self.env.step(actions)
            ended = (terminated | truncated) & ~done
            if ended.any():
                finished = ended & info["finished"]
                lap[finished] = info["race_time"][finished]
                progress[ended] = np.where(info["finished"][ended], 1.0, info["progress"][ended])
                ret[ended] = info["episode_return"][ended]
                cps[ended] = info["checkpoints"][ended]
                for reason in info["end_reason"][ended]:
                    reasons[str(reason)] = reasons.get(str(reason), 0) + 1
                done |= ended
            if done.all():
                break
        if not done.all():  # only when max_steps was cut below the env's limit
            rest = ~done
            progress[rest] = info["progress"][rest]
            ret[rest] = info["episode_return"][rest]
            cps[rest] = info["checkpoints"][rest]
            reasons["eval_limit"] = int(rest.sum())
        return lap, progress, ret, cps, reasons


def summarize(
    lap: np.ndarray,
    progress: np.ndarray,
    ret: np.ndarray,
    cps: np.ndarray,
    reasons: dict[str, int],
    ref: float | None,
    record: float | None = None,
) -> EvalResult:
    """The :class:`EvalResult` of episodes: lap time ``[E]`` s (NaN unfinished), progress, return, checkpoints;
    ``ref`` and ``record`` the track's reference and record lap times."""
    n = len(lap)
    laps = [float(t) for t in lap[np.isfinite(lap)]]
    mean_lap = round(float(np.mean(laps)), 3) if laps else None  # laps count whole ms
    per_episode = np.where(np.isfinite(lap), 1.0 + (ref or 0.0) / np.where(np.isfinite(lap), lap, 1.0), progress)
    return EvalResult(
        episodes=n,
        finish_rate=len(laps) / max(n, 1),
        lap_times=laps,
        mean_lap_time=mean_lap,
        best_lap_time=min(laps) if laps else None,
        reference_lap_time=ref,
        lap_time_ratio=mean_lap / ref if (mean_lap is not None and ref) else None,
        mean_progress=float(progress.mean()) if n else 0.0,
        mean_reward=float(ret.mean()) if n else 0.0,
        mean_checkpoints=float(cps.mean()) if n else 0.0,
        score=float(per_episode.mean()) if n else 0.0,
        end_reasons=reasons,
        record_lap_time=record,
        record_ratio=mean_lap / record if (mean_lap is not None and record) else None,
    )


class RecentEpisodes:
    """The evaluation of a real-time run: the last ``episodes`` training episodes.

    A game drives one car in real time, so separate evaluation episodes would stop the learning
    for minutes; the trainer feeds every ended training episode here (:meth:`add`) and an
    evaluation summarises the most recent ones (driven by the stochastic policy, so the scores are
    a lower bound of the deterministic policy's).
    """

    def __init__(self, cfg: EvoConfig, episodes: int, track: Any = None) -> None:
        self.episodes = episodes
        self.reference_lap_time = reference_lap_time(track, cfg)
        self.record_lap_time = record_lap_time(track, cfg)
        self._ended: deque[tuple[float, float, float, float, str]] = deque(maxlen=episodes)

    def add(self, episode: EpisodeEnd) -> None:
        """Keep an ended training episode."""
        lap = episode.race_time if episode.finished else math.nan
        self._ended.append((lap, episode.progress, episode.ret, float(episode.checkpoints), episode.reason))

    def run(self, act: Act | None = None, max_steps: int | None = None) -> EvalResult:
        rows = list(self._ended)
        arr = np.array([r[:4] for r in rows], np.float64).reshape(-1, 4)  # [E, 4]
        reasons: dict[str, int] = {}
        for r in rows:
            reasons[r[4]] = reasons.get(r[4], 0) + 1
        return summarize(
            arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3], reasons, self.reference_lap_time, self.record_lap_time
        )
