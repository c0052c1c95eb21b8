"""The batched core shared by :class:`VecTrackEnv` and :class:`TrackEnv`.

:class:`TrackCore` owns one :class:`~evo_rl.sim.world.World` of N cars, the
reward manager and the observation buffers. It steps every car, computes
rewards and episode ends, and restarts the cars it is told to; it never decides
when to restart (the environments around it do: auto-reset or the user).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from evo_rl.config import EvoConfig
from evo_rl.envs.observation import Observation, ObservationBuilder
from evo_rl.rewards import RewardManager, StepContext
from evo_rl.sim.track import Track
from evo_rl.sim.world import check_actions

END_FINISH = "finish"  # end_reason of a car that crossed the finish line
END_TIME_LIMIT = "time_limit"  # end_reason of an episode truncated at env.max_steps


class StepResult(NamedTuple):
    """What one batched step produced, before any restart."""

    reward: np.ndarray  # [N] float32
    terminated: np.ndarray  # [N] bool
    truncated: np.ndarray  # [N] bool
    terms: dict[str, np.ndarray]  # term name -> [N] float32
    end_reason: np.ndarray  # [N] str, "" while the episode runs


def resolve_track(track: Track | str | None, cfg: EvoConfig) -> Track:
    """A :class:`Track` from an instance, a built-in name or a path (``cfg.env.track`` when None)."""
    if isinstance(track, Track):
        return track
    from evo_rl.sim.catalog import get_track

    return get_track(cfg.env.track if track is None else track)


class TrackCore:
    """N cars on one track: world, sensors, observation buffers, rewards, episode counters."""

    def __init__(
        self,
        cfg: EvoConfig,
        n_envs: int,
        track: Track | str | None = None,
        world: Any = None,
        rewards: Any = None,
    ) -> None:
        self.cfg = cfg
        self.n_envs = n_envs
        self.track = resolve_track(track, cfg)
        if world is None:
            from evo_rl.sim.world import World

            world = World(
                self.track,
                n_envs,
                car=cfg.car,
                lidar=cfg.lidar,
                camera=cfg.camera,
                sim=cfg.sim,
                controls=cfg.env.controls,
            )
        self.world = world
        self.rewards = rewards if rewards is not None else RewardManager(cfg.reward, cfg.episode, self.track, n_envs)
        self.dt = cfg.sim.dt
        self.start_s = float(self.track.s[self.track.start])
        self.obs = ObservationBuilder(cfg, n_envs, self.start_s, self.track.length)
        self.steps = np.zeros(n_envs, np.int64)  # [N] steps of the running episode
        self.episode_return = np.zeros(n_envs, np.float64)  # [N] reward summed over the running episode
        self.prev_action = np.zeros((n_envs, 3), np.float32)  # [N, 3] last applied action, zeros at a start

    # ------------------------------------------------------------------ episodes

    def restart(self, mask: np.ndarray, rng: np.random.Generator) -> None:
        """Put the cars of ``mask`` [N] bool on the start line, with a random sideways offset and heading."""
        env = self.cfg.env
        k = int(np.count_nonzero(mask))
        lateral = np.zeros(self.n_envs)  # [N] m, left positive
        yaw = np.zeros(self.n_envs)  # [N] rad
        lateral[mask] = rng.uniform(-1.0, 1.0, k) * env.start_lateral
        yaw[mask] = rng.uniform(-1.0, 1.0, k) * np.radians(env.start_yaw_deg)
        self.world.reset(mask, lateral=lateral, yaw=yaw)
        self.rewards.reset(mask)
        self.steps[mask] = 0
        self.episode_return[mask] = 0.0
        self.prev_action[mask] = 0.0
        self.obs.sense(self.world, rows=mask)
        self.obs.restart(mask)

    # ------------------------------------------------------------------ stepping

    def step(self, actions: Any) -> StepResult:
        """Advance every car one control step and score it; nothing changes if the actions are invalid."""
        a = check_actions(actions, self.n_envs)  # [N, 3] float32, clipped
        world = self.world
        prev_s = world.progress_s.copy()  # [N]
        prev_pos3 = world.position3()  # [N, 3]
        world.step(a)
        self.steps += 1
        out = self.rewards(StepContext(world, prev_s, prev_pos3, a, self.prev_action, self.steps, self.dt))
        self.prev_action = a
        reward = np.asarray(out.reward, np.float32)
        self.episode_return += reward

        finished = world.finished.copy()
        terminated = finished | out.terminate
        truncated = (self.steps >= self.cfg.env.max_steps) & ~terminated
        end_reason = np.where(finished, END_FINISH, np.where(out.terminate, out.reason, ""))
        end_reason = np.where(truncated, END_TIME_LIMIT, end_reason).astype(str)

        self.obs.sense(world)
        self.obs.push(a)
        return StepResult(reward, terminated, truncated, dict(out.terms), end_reason)

    # ------------------------------------------------------------------ outputs

    def observation(self) -> Observation:
        """Observations of all cars (fresh arrays)."""
        return self.obs.build()

    def info(self) -> dict[str, Any]:
        """Batched state of all cars: one array per key, rows are cars."""
        w = self.world
        progress = np.clip((w.progress_s - self.start_s) / max(self.track.length, 1e-9), 0.0, 1.0)
        return {
            "checkpoints": np.array(w.checkpoints, np.int32),  # [N]
            "race_time": np.array(w.race_time, np.float64),  # [N] s
            "finished": np.array(w.finished, bool),  # [N]
            "wall_contact": np.array(w.wall_contact, bool),  # [N]
            "progress": progress.astype(np.float32),  # [N] 0..1
            "position": np.asarray(w.position3(), np.float64),  # [N, 3] game x, y, z
            "speed_kmh": (w.speed() * 3.6).astype(np.float32),  # [N]
            "episode_steps": self.steps.copy(),  # [N]
            "episode_return": self.episode_return.copy(),  # [N]
        }
