"""Batched observations: sensor histories and previous actions in preallocated buffers.

One :class:`ObservationBuilder` serves N cars. Each step it reads the world's
sensors once for all cars, shifts the history and action buffers by one frame
(oldest first) and assembles TMRL's tuple (or one flat float32 array); with
``env.lookahead_points`` the course preview (:mod:`evo_rl.envs.lookahead`) comes just before the actions. At an
episode start the history is filled with the first frame and the actions with zeros.
"""

from __future__ import annotations

import numpy as np

from evo_rl.config import EvoConfig
from evo_rl.envs.lookahead import CoursePreview
from evo_rl.envs.source import CarSource
from evo_rl.envs.spaces import MAX_GEAR, MAX_SPEED_KMH, lidar_beams

Observation = tuple[np.ndarray, ...] | np.ndarray


def flavour_needs(cfg: EvoConfig) -> frozenset[str]:
    """The car-source fields (:data:`evo_rl.envs.source.FIELDS`) the observations of ``cfg.env.flavour`` read."""
    return {
        "lidar": frozenset({"speed", "lidar"}),
        "lidar_progress": frozenset({"speed", "lidar", "track"}),
        "full": frozenset({"speed", "gear", "rpm", "frames"}),
    }[cfg.env.flavour] | (frozenset({"track", "heading"}) if cfg.env.lookahead_points else frozenset())


class ObservationBuilder:
    """Observation buffers of ``n_envs`` cars for ``cfg.env.flavour``."""

    def __init__(self, cfg: EvoConfig, n_envs: int) -> None:
        env = cfg.env
        self.n_envs = n_envs
        self.flavour = env.flavour
        self.flat = env.flat
        self.max_rpm = cfg.car.max_rpm
        # the environment sets these at each car's episode start, from its track
        self.start_s = np.zeros(n_envs)  # [N] arc length of each car's start line, m
        self.length = np.ones(n_envs)  # [N] its track's start-to-finish length, m
        rnd = cfg.randomise
        self.lidar_noise, self.speed_noise, self.drop_obs = rnd.lidar_noise, rnd.speed_noise, rnd.drop_obs
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
        self.preview: CoursePreview | None = None  # set by the environment when env.lookahead_points > 0
        self.lookahead = np.zeros((n_envs, 2 * env.lookahead_points), np.float32)  # [N, 2P] headings, curvatures

    def sense(self, world: CarSource, rows: np.ndarray | None = None, rng: np.random.Generator | None = None) -> None:
        """Read speed, progress / gearbox and the LIDAR or camera of every car (sensors: of ``rows`` only).

        With ``randomise`` noise (and ``rng``), Gaussian noise is added to the speed and LIDAR, and on a
        step (``rows`` None) each car misses its reading with chance ``drop_obs``: its last one repeats.
        """
        noisy = rng is not None and (self.lidar_noise > 0 or self.speed_noise > 0 or self.drop_obs > 0)
        if noisy and rows is None and self.drop_obs > 0:
            assert rng is not None
            dropped = rng.random(self.n_envs) < self.drop_obs  # [N]
            kept_scalars, kept_frame = self.scalars[dropped].copy(), self.frame[dropped].copy()
        s = self.scalars
        s[:, 0] = np.clip(world.speed() * 3.6, 0.0, MAX_SPEED_KMH)
        if self.preview is not None:
            self.preview(world.progress_s, world.yaw, self.lookahead)
        if self.flavour == "lidar_progress":
            s[:, 1] = np.clip((world.progress_s - self.start_s) / self.length, 0.0, 1.0)
        if self.flavour == "full":
            s[:, 1] = np.clip(world.gear, 0, MAX_GEAR)
            s[:, 2] = np.clip(world.rpm, 0.0, self.max_rpm)
            world.images(out=self.frame, rows=rows)
        else:
            world.lidar(out=self.frame, rows=rows)
        if not noisy:
            return
        assert rng is not None
        sel = slice(None) if rows is None else rows
        if self.speed_noise > 0:
            s[:, 0] = np.clip(s[:, 0] + rng.normal(0.0, self.speed_noise, self.n_envs), 0.0, MAX_SPEED_KMH)
        if self.lidar_noise > 0 and self.flavour != "full":
            sub = self.frame[sel]
            self.frame[sel] = np.maximum(sub + rng.normal(0.0, self.lidar_noise, sub.shape), 0.0)
        if rows is None and self.drop_obs > 0:
            self.scalars[dropped], self.frame[dropped] = kept_scalars, kept_frame

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
        preview = (self.lookahead,) if self.lookahead.shape[1] else ()
        if self.flat:
            parts: list[np.ndarray] = [self.scalars, self.history.reshape(n, -1), *preview, self.actions.reshape(n, -1)]
            return np.concatenate(parts, axis=1, dtype=np.float32)  # [N, D]
        scalars = tuple(self.scalars[:, i : i + 1].copy() for i in range(self.scalars.shape[1]))  # [N, 1] each
        actions = tuple(self.actions[:, i].copy() for i in range(self.actions.shape[1]))  # [N, 3] each
        return (*scalars, self.history.copy(), *(p.copy() for p in preview), *actions)
