"""`World`: N cars on one track, stepped together by numba kernels.

State lives in NumPy arrays with one row per car (docs/architecture.md, "The
simulator"); :meth:`World.step` advances every car by one control step of
``sim.dt`` seconds in ``sim.substeps`` physics sub-steps.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np

from evo_rl.config import CameraConfig, CarConfig, LidarConfig, SimConfig
from evo_rl.errors import ConfigError, EvoError, TrackError
from evo_rl.sim.geometry import inset_walls, locate, strip_edges, track_coords
from evo_rl.sim.physics import STATE, car_params, step_cars
from evo_rl.sim.sensors import (
    beam_layout,
    camera_tables,
    gate_marks,
    images_cars,
    lidar_cars,
)
from evo_rl.sim.track import Track

START_AHEAD = 2.0  # m between the start line and a car's centre at a reset (at most half the start quad)


def check_actions(actions: Any, n_envs: int, dtype: type = np.float32) -> np.ndarray:
    """The one rule for actions, used by :meth:`World.step` and the environments.

    ``actions`` must be ``[n_envs, 3]`` = [gas, brake, steer] and finite (NaN or inf raise
    :class:`EvoError` naming the cars); values outside [-1, 1] are clipped. Returns a fresh ``dtype`` array.
    """
    a = np.asarray(actions)
    if a.shape != (n_envs, 3):
        raise EvoError(f"actions must have shape ({n_envs}, 3) as [gas, brake, steer] per car, got {a.shape}")
    bad = ~np.isfinite(a).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)[:8].tolist()
        raise EvoError(f"actions hold NaN or infinite values (cars {rows}); every action must be finite")
    return np.clip(a.astype(dtype, copy=False), -1.0, 1.0)  # [N, 3]


class World:
    """``n_envs`` cars on ``track``; every array attribute has one row per car.

    A :class:`~evo_rl.envs.source.CarSource`: it provides every field but ``air`` (cars stay on the road)
    and ``inputs``.
    """

    name = "sim"
    provides = frozenset(
        {"position", "heading", "velocity", "speed", "gear", "rpm", "race_time", "checkpoints", "finish",
         "wall_contact", "track", "lidar", "frames"}
    )  # fmt: skip
    realtime = False

    def __init__(
        self,
        track: Track,
        n_envs: int,
        car: CarConfig | None = None,
        lidar: LidarConfig | None = None,
        camera: CameraConfig | None = None,
        sim: SimConfig | None = None,
        controls: Literal["binary", "analog"] = "binary",
    ) -> None:
        if n_envs < 1:
            raise EvoError(f"n_envs must be at least 1, got {n_envs}")
        if controls not in ("binary", "analog"):
            raise EvoError(f"controls must be 'binary' or 'analog', got {controls!r}")
        self.track = track
        self.n_envs = int(n_envs)
        self.car = car or CarConfig()
        self.lidar_cfg = lidar or LidarConfig()
        self.camera_cfg = camera or CameraConfig()
        self.sim = sim or SimConfig()
        self.analog = controls == "analog"
        self.dt = self.sim.dt
        _check_car(self.car)
        m = track.n_quads
        if not (0 <= track.start < track.finish < m):
            raise TrackError(
                f"track {track.name!r}: need 0 <= start < finish < {m} quads, got {track.start}, {track.finish}"
            )

        self.edges = strip_edges(track.left, track.right)  # [M, 4, 3] walls of the road
        self.inset = strip_edges(*inset_walls(track.left, track.right, self.car.half_width))  # [M, 4, 3] car centre
        self._params, self._ratios, self._top = car_params(self.car)
        cps = np.sort(np.asarray(track.checkpoints, np.int64))
        self._cp_count = np.searchsorted(cps, np.arange(m), side="right").astype(np.int64)  # [M] gates at/behind q
        self._gate = gate_marks(m + 1, track.start, cps, track.finish)  # [M+1]
        self.beam_angles, self.beam_origins = beam_layout(self.lidar_cfg, self.car)  # [B], [B, 2]
        self._camera = camera_tables(self.camera_cfg)
        self._actions = np.zeros((self.n_envs, 3), np.float64)  # [N, 3] clipped actions of the current step

        n = self.n_envs
        self.pos = np.zeros((n, 2), np.float64)  # [N, 2] m
        self.yaw = np.zeros(n, np.float64)  # [N] rad
        self.vel = np.zeros((n, 2), np.float64)  # [N, 2] m/s
        self.yaw_rate = np.zeros(n, np.float64)  # [N] rad/s
        self.steer = np.zeros(n, np.float64)  # [N] in [-1, 1]
        self.gear = np.zeros(n, np.int32)  # [N]
        self.rpm = np.zeros(n, np.float64)  # [N]
        self.quad = np.zeros(n, np.int32)  # [N]
        self.progress_s = np.zeros(n, np.float64)  # [N] m
        self.lateral = np.zeros(n, np.float64)  # [N] m, left positive
        self.wall_contact = np.zeros(n, bool)  # [N]
        self.checkpoints = np.zeros(n, np.int32)  # [N]
        self.cp_forward = np.zeros(n, np.int32)  # [N]
        self.cp_backward = np.zeros(n, np.int32)  # [N]
        self.finished = np.zeros(n, bool)  # [N]
        self.race_ticks = np.zeros(n, np.int64)  # [N] physics sub-steps of the run before the finish
        self.airborne = np.zeros(n, bool)  # [N] the simulator's cars never leave the road
        self.reset()

    @property
    def race_time_ms(self) -> np.ndarray:
        """Race time of every car ``[N]`` int64, whole milliseconds (frozen at the finish), as the games count it."""
        return np.rint(self.race_ticks * (1000.0 * self.dt / self.sim.substeps)).astype(np.int64)

    @property
    def race_time(self) -> np.ndarray:
        """Race time ``[N]`` float64, s: :attr:`race_time_ms` / 1000."""
        return self.race_time_ms / 1000.0

    @property
    def n_beams(self) -> int:
        """LIDAR beams per car (TMRL's screen LIDAR: 19)."""
        if self.lidar_cfg.kind == "tmrl":
            from evo_rl.sim.screen_lidar import BEAMS

            return BEAMS
        return len(self.beam_angles)

    # ------------------------------------------------------------------ episodes

    def start_pose(self, lateral: np.ndarray | float = 0.0) -> tuple[np.ndarray, float]:
        """Start positions ``[K, 2]`` for lateral offsets ``[K]`` (m, left positive, clipped to the road) and heading."""
        t = self.track
        k = t.start
        c0, c1 = t.center[k], t.center[k + 1]
        seg = c1 - c0
        length = float(np.hypot(*seg))
        ahead = min(START_AHEAD, 0.5 * length)
        across = t.left[k] - t.right[k]
        room = 0.5 * float(np.hypot(*across)) - self.car.half_width - 0.05
        lat = np.clip(np.asarray(lateral, np.float64).reshape(-1), -room, room)  # [K]
        pos = c0 + seg * (ahead / length) + lat[:, None] * (across / np.hypot(*across))  # [K, 2]
        return pos, math.atan2(seg[1], seg[0])

    def reset(
        self, mask: np.ndarray | None = None, lateral: np.ndarray | None = None, yaw: np.ndarray | None = None
    ) -> None:
        """Put the cars of ``mask [N]`` (all if None) at rest just after the start line.

        ``lateral [N]`` (m, left positive) and ``yaw [N]`` (rad) are optional
        per-car perturbations of the start pose; only the masked rows are used.
        """
        idx = np.arange(self.n_envs) if mask is None else np.flatnonzero(np.asarray(mask, bool).reshape(self.n_envs))
        if len(idx) == 0:
            return
        lat = np.zeros(len(idx)) if lateral is None else np.asarray(lateral, np.float64).reshape(self.n_envs)[idx]
        pos, heading = self.start_pose(lat)
        lo = max(self.track.start - 2, 0)  # the start pose lies in quad `start`; look only around it
        quads = locate(self.inset[lo : self.track.start + 3], pos) + lo
        quads[quads < lo] = self.track.start
        self.pos[idx] = pos
        self.yaw[idx] = heading if yaw is None else heading + np.asarray(yaw, np.float64).reshape(self.n_envs)[idx]
        self.vel[idx] = 0.0
        self.yaw_rate[idx] = 0.0
        self.steer[idx] = 0.0
        self.gear[idx] = 0
        self.rpm[idx] = self.car.idle_rpm
        self.quad[idx] = quads
        s, lat_now = track_coords(self.edges, self.track.s, self.track.center, quads, pos)
        self.progress_s[idx] = s
        self.lateral[idx] = lat_now
        self.wall_contact[idx] = False
        self.checkpoints[idx] = 0
        self.cp_forward[idx] = 0
        self.cp_backward[idx] = 0
        self.finished[idx] = False
        self.race_ticks[idx] = 0

    # ------------------------------------------------------------------ stepping

    def step(self, actions: np.ndarray) -> None:
        """Advance every car one control step; ``actions [N, 3]`` = [gas, brake, steer] in [-1, 1].

        Out-of-range values are clipped; NaN or infinite values raise EvoError before any state changes.
        """
        self._actions[:] = check_actions(actions, self.n_envs, np.float64)
        t = self.track
        tables = (self._params, self._ratios, self._top, self.inset, self.edges, t.s, t.center, self._cp_count)
        state = tuple(getattr(self, k) for k in STATE)
        step_cars(
            self.n_envs, tables, state, self._actions, t.finish, self.analog, self.dt, self.sim.substeps,
            threads=self.sim.threads,
        )  # fmt: skip

    def observe(self) -> None:
        """Nothing to wait for: :meth:`step` has already brought every array up to date."""

    def close(self) -> None:
        """Nothing to release."""

    # ------------------------------------------------------------------ readings

    def speed(self) -> np.ndarray:
        """Speed of every car ``[N]``, m/s."""
        return np.hypot(self.vel[:, 0], self.vel[:, 1])

    def position3(self) -> np.ndarray:
        """Game-style positions ``[N, 3]``: ``(x, track.height, y)``."""
        out = np.empty((self.n_envs, 3), np.float64)  # [N, 3]
        out[:, 0] = self.pos[:, 0]
        out[:, 1] = self.track.height
        out[:, 2] = self.pos[:, 1]
        return out

    def lidar(self, out: np.ndarray | None = None, rows: np.ndarray | None = None) -> np.ndarray:
        """LIDAR distances ``[N, beams]`` float32: metres (``lidar.kind: geometric``, layouts in
        :mod:`evo_rl.sim.sensors`) or TMRL's screen LIDAR in pixels over the cockpit view (``tmrl``).

        With ``rows`` (car indices or an ``[N]`` bool mask) only those cars' rows of ``out`` are written.
        """
        out = _output(out, (self.n_envs, self.n_beams), np.float32, "lidar")
        idx, sub = self._rows(rows, out)
        if self.lidar_cfg.kind == "tmrl":  # TMRL's screen LIDAR over the cockpit view, px
            from evo_rl.sim.cockpit import cockpit_view
            from evo_rl.sim.screen_lidar import screen_lidar_batch

            views = cockpit_view(self, rows=idx, grey=True)  # [K, 488, 958] uint8
            screen_lidar_batch(views, out=sub, threads=self.sim.threads)
            if idx is not None:
                out[idx] = sub
            return out
        pos, yaw, quad = (
            (self.pos, self.yaw, self.quad) if idx is None else (self.pos[idx], self.yaw[idx], self.quad[idx])
        )
        lidar_cars(
            len(sub), self.edges, pos, yaw, quad, self.beam_angles, self.beam_origins, self.lidar_cfg.range, sub,
            threads=self.sim.threads,
        )  # fmt: skip
        if idx is not None:
            out[idx] = sub
        return out

    def images(self, out: np.ndarray | None = None, rows: np.ndarray | None = None) -> np.ndarray:
        """First-person grayscale frames ``[N, H, W]`` uint8; ``rows`` as in :meth:`lidar`."""
        cam = self.camera_cfg
        out = _output(out, (self.n_envs, cam.height, cam.width), np.uint8, "images")
        idx, sub = self._rows(rows, out)
        pos, yaw, quad = (
            (self.pos, self.yaw, self.quad) if idx is None else (self.pos[idx], self.yaw[idx], self.quad[idx])
        )
        images_cars(
            len(sub), self.edges, self.track.s, self._gate, pos, yaw, quad, self._camera, sub, threads=self.sim.threads
        )
        if idx is not None:
            out[idx] = sub
        return out

    @staticmethod
    def _rows(rows: np.ndarray | None, out: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        """(car indices or None for all, the array a sensor kernel writes into)."""
        if rows is None:
            return None, out
        rows = np.asarray(rows)
        idx = np.flatnonzero(rows) if rows.dtype == bool else rows.astype(np.intp)
        return idx, np.empty((len(idx), *out.shape[1:]), out.dtype)


def _output(out: np.ndarray | None, shape: tuple[int, ...], dtype: type, what: str) -> np.ndarray:
    if out is None:
        return np.empty(shape, dtype)
    if out.shape != shape or out.dtype != dtype or not out.flags.c_contiguous:
        raise EvoError(
            f"{what}(out=...) needs a C-contiguous {np.dtype(dtype).name} array of shape {shape}, "
            f"got {out.dtype} {out.shape}"
        )
    return out


def _check_car(car: CarConfig) -> None:
    if not car.shift_down_rpm < car.shift_up_rpm <= car.max_rpm:
        raise ConfigError(
            f"car: need shift_down_rpm < shift_up_rpm <= max_rpm, got {car.shift_down_rpm}, "
            f"{car.shift_up_rpm}, {car.max_rpm}; lower car.shift_down_rpm or raise car.max_rpm"
        )
    ratios = car.gear_ratios
    if any(r <= 0 for r in ratios) or any(b >= a for a, b in zip(ratios[:-1], ratios[1:], strict=True)):
        raise ConfigError(f"car.gear_ratios must be positive and decreasing (first to top gear), got {ratios}")
