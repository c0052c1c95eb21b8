"""Batched observations: sensor histories and previous actions in preallocated buffers.

One :class:`ObservationBuilder` serves N cars. Each step it reads the world's
sensors once for all cars, shifts the history and action buffers by one frame
(oldest first) and assembles TMRL's tuple (or one flat float32 array). At an
episode start the history is filled with the first frame and the actions with zeros.
"""

from __future__ import annotations

import numpy as np

from evo_rl.config import EvoConfig
from evo_rl.envs.source import CarSource
from evo_rl.envs.spaces import MAX_GEAR, MAX_SPEED_KMH, lidar_beams

Observation = tuple[np.ndarray, ...] | np.ndarray


def flavour_needs(cfg: EvoConfig) -> frozenset[str]:
    """The car-source fields (:data:`evo_rl.envs.source.FIELDS`) the observations of ``cfg.env.flavour`` read."""
    return {
        "lidar": frozenset({"speed", "lidar"}),
        "lidar_progress": frozenset({"speed", "lidar", "track"}),
        "full": frozenset({"speed", "gear", "rpm", "frames"}),
    }[cfg.env.flavour]


class ObservationBuilder:
    """Observation buffers of ``n_envs`` cars for ``cfg.env.flavour``."""

    def __init__(self, cfg: EvoConfig, n_envs: int, start_s: float, length: float) -> None:
        env = cfg.env
        self.n_envs = n_envs
        self.flavour = env.flavour
        self.flat = env.flat
        self.max_rpm = cfg.car.max_rpm
        self.start_s = start_s
        self.length = max(length, 1e-9)
        frame_shape: tuple[int, ...]
        frame_dtype: type[np.generic]
        n_scalars = {"lidar": 1, "lidar_progress": 2, "full": 3}[env.flavour]
        if env.flavour == "full":
            frame_shape, frame_dtype = (cfg.camera.height, cfg.camera.width), np.uint8
        else:
            frame_shape, frame_dtype = (lidar_beams(cfg),), np.float32
        self.scalars = np.zeros((n_envs, n_scalars), np.float32)  # [N, S]: speed, then progress or gear, rpm
        self.frame = np.zeros((n_envs, *frame_shape), frame_dtype)  # [N, beams] or [N, H, W]: latest sensor frame
        self.history = np.zeros((n_envs, env.hist_len, *frame_shape), frame_dtype)  # [N, hist, ...] oldest first
        self.actions = np.zeros((n_envs, env.act_buf_len, 3), np.float32)  # [N, act_buf_len, 3] oldest first

    def sense(self, world: CarSource, rows: np.ndarray | None = None) -> None:
        """Read speed, progress / gearbox and the LIDAR or camera of every car (sensors: of ``rows`` only)."""
        s = self.scalars
        s[:, 0] = np.clip(world.speed() * 3.6, 0.0, MAX_SPEED_KMH)
        if self.flavour == "lidar_progress":
            s[:, 1] = np.clip((world.progress_s - self.start_s) / self.length, 0.0, 1.0)
        if self.flavour == "full":
            s[:, 1] = np.clip(world.gear, 0, MAX_GEAR)
            s[:, 2] = np.clip(world.rpm, 0.0, self.max_rpm)
            world.images(out=self.frame, rows=rows)
        else:
            world.lidar(out=self.frame, rows=rows)

    def push(self, action: np.ndarray) -> None:
        """Append the sensed frame and ``action`` [N, 3] to every car's buffers."""
        if self.history.shape[1] > 1:
            self.history[:, :-1] = self.history[:, 1:]
        self.history[:, -1] = self.frame
        if self.actions.shape[1] > 0:
            if self.actions.shape[1] > 1:
                self.actions[:, :-1] = self.actions[:, 1:]
            self.actions[:, -1] = action

    def restart(self, mask: np.ndarray) -> None:
        """Start new episodes for ``mask`` [N] bool: history = first frame, actions = 0."""
        self.history[mask] = self.frame[mask][:, None]
        self.actions[mask] = 0.0

    def build(self) -> Observation:
        """The observations of all cars (fresh arrays, batched on axis 0)."""
        n = self.n_envs
        if self.flat:
            parts: list[np.ndarray] = [self.scalars, self.history.reshape(n, -1), self.actions.reshape(n, -1)]
            return np.concatenate(parts, axis=1, dtype=np.float32)  # [N, D]
        scalars = tuple(self.scalars[:, i : i + 1].copy() for i in range(self.scalars.shape[1]))  # [N, 1] each
        actions = tuple(self.actions[:, i].copy() for i in range(self.actions.shape[1]))  # [N, 3] each
        return (*scalars, self.history.copy(), *actions)
