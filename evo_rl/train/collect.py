"""The acting half of training: a collector steps a car source with an actor and produces typed
messages, :class:`Transitions` and :class:`EpisodeEnd`.

The same collector runs inside ``evo-rl train`` (its transitions go straight into the replay)
and inside every ``evo-rl worker`` (they are batched and sent to the trainer). A transition holds
only the newest frame of each observation field: the replay rebuilds the stacked histories and
previous actions from its per-car streams, so no frame travels or is stored twice.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from evo_rl.memory.layout import ObsLayout


@dataclass
class EpisodeEnd:
    """One ended training episode, as the trainer's statistics and evaluation read it."""

    ret: float  # undiscounted return
    steps: int
    checkpoints: int
    finished: bool
    reason: str  # end_reason: finished, time_limit, crash, game_lost, ...
    race_time: float  # seconds
    progress: float  # fraction of the track, 1.0 when finished
    terms: dict[str, float] = field(default_factory=dict)  # reward term sums over the episode

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EpisodeEnd:
        return cls(
            ret=float(d["ret"]),
            steps=int(d["steps"]),
            checkpoints=int(d["checkpoints"]),
            finished=bool(d["finished"]),
            reason=str(d["reason"]),
            race_time=float(d["race_time"]),
            progress=float(d["progress"]),
            terms={str(k): float(v) for k, v in dict(d.get("terms", {})).items()},
        )


class EpisodeTracker:
    """Sums the reward terms of N running episodes and reports the episodes that end."""

    def __init__(self, n_envs: int) -> None:
        self.n_envs = n_envs
        self._term_sums: dict[str, np.ndarray] = {}  # term -> [N] sums over the running episodes

    def step(self, infos: dict[str, Any], terminated: np.ndarray, truncated: np.ndarray) -> list[EpisodeEnd]:
        for name, values in infos.get("reward_terms", {}).items():
            sums = self._term_sums.get(name)
            if sums is None:
                sums = self._term_sums[name] = np.zeros(self.n_envs)
            sums += values
        done = np.asarray(terminated) | np.asarray(truncated)
        if not done.any():
            return []
        final = infos.get("final_info", infos)
        ended = []
        for i in np.flatnonzero(done).tolist():
            finished = bool(final["finished"][i])
            ended.append(
                EpisodeEnd(
                    ret=float(final["episode_return"][i]),
                    steps=int(final["episode_steps"][i]),
                    checkpoints=int(final["checkpoints"][i]),
                    finished=finished,
                    reason=str(infos["end_reason"][i]),
                    race_time=float(final["race_time"][i]),
                    progress=1.0 if finished else float(final["progress"][i]),
                    terms={name: float(sums[i]) for name, sums in self._term_sums.items()},
                )
            )
            for sums in self._term_sums.values():
                sums[i] = 0.0
        return ended


@dataclass
class Transitions:
    """One vector-env step of m cars, newest frames only (``ReplayMemory.add_frames`` takes it).

    ``final_frames`` holds the last observation of the cars whose episode ended
    (``terminated | truncated``), in car order: one row per ended car.
    """

    frames: list[np.ndarray]  # [m, *frame shape] per observation field
    action: np.ndarray  # [m, act_dim] float32, as applied
    reward: np.ndarray  # [m] float32
    terminated: np.ndarray  # [m] bool
    truncated: np.ndarray  # [m] bool
    final_frames: list[np.ndarray]  # [k, *frame shape] per field, k = ended cars
    episodes: list[EpisodeEnd]

    @property
    def n_cars(self) -> int:
        return int(self.reward.shape[0])


def exploring_actor(actor: Any, param_noise: float, seed: int) -> Any:
    """What a collector acts with: ``actor``, or with ``train.param_noise`` its perturbed copies
    (:class:`~evo_rl.algos.extras.ParamNoiseActor`, which follows ``actor``'s weights as they change)."""
    if param_noise <= 0:
        return actor
    from evo_rl.algos.extras import ParamNoiseActor

    return ParamNoiseActor(actor, param_noise, seed=seed)


class Collector:
    """A car source (a vector env) and an actor: each :meth:`step` is one step of every car.

    ``actor`` is anything with ``act(obs, test=False) -> [N, 3]`` (an EVO RL actor); it can be
    replaced between steps (:meth:`set_actor`, new weights from a trainer).
    """

    def __init__(self, env: Any, layout: ObsLayout, actor: Any, rng: np.random.Generator) -> None:
        self.env = env
        self.layout = layout
        self.actor = actor
        self.rng = rng
        self.n_envs = int(env.num_envs)
        self.tracker = EpisodeTracker(self.n_envs)
        self.obs: Any = None

    def reset(self, seed: int | None = None) -> Any:
        self.obs, _ = self.env.reset(seed=seed)
        return self.obs

    def step(self, random: bool = False) -> Transitions:
        """Act (uniformly at random with ``random``, else with the actor's sampled actions) and step."""
        obs = self.obs
        if random:
            actions = self.rng.uniform(-1.0, 1.0, (self.n_envs, 3)).astype(np.float32)  # [N, 3]
        else:
            with torch.no_grad():
                actions = np.asarray(self.actor.act(obs, test=False), np.float32)  # [N, 3]
        next_obs, reward, terminated, truncated, infos = self.env.step(actions)
        terminated, truncated = np.asarray(terminated, bool), np.asarray(truncated, bool)
        done = terminated | truncated
        final_frames: list[np.ndarray] = [np.zeros((0, *f.shape), f.dtype) for f in self.layout.fields]
        if done.any():
            rows = np.flatnonzero(done)
            final_frames = self.layout.final_frames(infos.get("final_obs"), infos.get("_final_obs"), rows, self.n_envs)
        # both sources lie in [-1, 1] (uniform, tanh-squashed actor), so the env applies them unclipped and
        # the replay stores exactly what was applied (actions are checked in one place, sim.world.check_actions)
        out = Transitions(
            frames=self.layout.frames(obs, self.n_envs),
            action=actions,
            reward=np.asarray(reward, np.float32).reshape(-1),
            terminated=terminated,
            truncated=truncated,
            final_frames=final_frames,
            episodes=self.tracker.step(infos, terminated, truncated),
        )
        self.obs = next_obs
        return out
