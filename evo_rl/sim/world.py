"""`World`: N cars on one track, stepped together by numba kernels.

State lives in NumPy arrays with one row per car (docs/architecture.md, "The
simulator"); :meth:`World.step` advances every car by one control step of
``sim.dt`` seconds in ``sim.substeps`` physics sub-steps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from evo_rl.config import CameraConfig, CarConfig, LidarConfig, SimConfig
from evo_rl.errors import ConfigError, EvoError, TrackError
from evo_rl.sim.geometry import locate, track_coords
from evo_rl.sim.physics import P_IDLE_RPM, STATE, car_params, step_cars
from evo_rl.sim.sensors import (
    beam_layout,
    camera_tables,
    images_cars,
    lidar_cars,
)
from evo_rl.sim.track import Track
from evo_rl.sim.trackset import PackedTracks

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
    """``n_envs`` cars on ``track`` (or on several tracks); every array attribute has one row per car.

    A :class:`~evo_rl.envs.source.CarSource`: it provides every field but ``air`` (cars stay on the road)
    and ``inputs``. Given a list of tracks, car ``i`` drives ``tracks[track_id[i]]`` (all start on the
    first; :meth:`reset` moves cars to other tracks, :meth:`add_tracks` adds tracks), and all cars still
    step in one kernel call (:class:`~evo_rl.sim.trackset.PackedTracks`). ``params [N, N_PARAMS]`` holds
    each car's physics (:func:`~evo_rl.sim.physics.car_params` of ``car`` unless changed, as domain
    randomisation does).
    """

    name = "sim"
    provides = frozenset(
        {"position", "heading", "velocity", "speed", "gear", "rpm", "race_time", "checkpoints", "finish",
         "wall_contact", "track", "lidar", "frames"}
    )  # fmt: skip
    realtime = False

    def __init__(
        self,
        track: Track | Sequence[Track],
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
        tracks = [track] if isinstance(track, Track) else list(track)
        if not tracks:
            raise EvoError("World needs at least one track")
        self.n_envs = int(n_envs)
        self.car = car or CarConfig()
        self.lidar_cfg = lidar or LidarConfig()
        self.camera_cfg = camera or CameraConfig()
        self.sim = sim or SimConfig()
        self.analog = controls == "analog"
        self.dt = self.sim.dt
        _check_car(self.car)
        for t in tracks:
            _check_ends(t)
        self.pack = PackedTracks(tracks, self.car.half_width)  # every track's kernel arrays, packed
        base, self._ratios, self._top = car_params(self.car)
        self.params = np.tile(base, (self.n_envs, 1))  # [N, N_PARAMS] each car's physics
        self.track_id = np.zeros(self.n_envs, np.int64)  # [N] index in `tracks` of each car's track
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
    def tracks(self) -> list[Track]:
        """The tracks cars may drive (one unless several were given)."""
        return self.pack.tracks

    @property
    def track(self) -> Track:
        """The first track: the one every car drives on a single-track world."""
        return self.pack.tracks[0]

    @property
    def edges(self) -> np.ndarray:
        """Walls of every quad of every track ``[Q, 4, 3]`` (one track: its quads, in order)."""
        return self.pack.edges

    @property
    def inset(self) -> np.ndarray:
        """The walls inset by the car's half width ``[Q, 4, 3]``: where its centre may go."""
        return self.pack.inset

    @property
    def quad_off(self) -> np.ndarray:
        """First quad of each track in :attr:`edges` ``[K+1]`` (then the total)."""
        return self.pack.quad_off

    def add_tracks(self, tracks: Sequence[Track]) -> list[int]:
        """Add ``tracks`` for later episodes; returns their ``track_id`` values. Cars keep their tracks."""
        for t in tracks:
            _check_ends(t)
        return self.pack.add(tracks)

    def car_tracks(self) -> list[Track]:
        """The track of each car, ``[N]``."""
        return [self.pack.tracks[k] for k in self.track_id]

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

    def start_pose(self, lateral: np.ndarray | float = 0.0, track: int = 0) -> tuple[np.ndarray, float]:
        """Start positions ``[K, 2]`` on track ``track`` for lateral offsets ``[K]`` (m, left positive, clipped
        to the road) and the start heading."""
        t = self.pack.tracks[track]
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
        self,
        mask: np.ndarray | None = None,
        lateral: np.ndarray | None = None,
        yaw: np.ndarray | None = None,
        track_id: np.ndarray | None = None,
    ) -> None:
        """Put the cars of ``mask [N]`` (all if None) at rest just after the start line.

        ``lateral [N]`` (m, left positive) and ``yaw [N]`` (rad) are optional
        per-car perturbations of the start pose; ``track_id [N]`` optionally moves cars to other
        tracks of :attr:`tracks`. Only the masked rows are used.
        """
        idx = np.arange(self.n_envs) if mask is None else np.flatnonzero(np.asarray(mask, bool).reshape(self.n_envs))
        if len(idx) == 0:
            return
        if track_id is not None:
            ids = np.asarray(track_id, np.int64).reshape(self.n_envs)[idx]
            if ids.min() < 0 or ids.max() >= len(self.pack):
                raise EvoError(f"track_id must be in 0..{len(self.pack) - 1}, got {sorted(set(ids.tolist()))}")
            self.track_id[idx] = ids
        lat_all = np.zeros(self.n_envs) if lateral is None else np.asarray(lateral, np.float64).reshape(self.n_envs)
        yaw_all = np.zeros(self.n_envs) if yaw is None else np.asarray(yaw, np.float64).reshape(self.n_envs)
        for k in np.unique(self.track_id[idx]):
            rows = idx[self.track_id[idx] == k]
            t, quads_k, sections = self.pack.tracks[k], self.pack.quads(k), self.pack.sections(k)
            pos, heading = self.start_pose(lat_all[rows], int(k))
            inset = self.pack.inset[quads_k]
            lo = max(t.start - 2, 0)  # the start pose lies in quad `start`; look only around it
            quads = locate(inset[lo : t.start + 3], pos) + lo
            quads[quads < lo] = t.start
            self.pos[rows] = pos
            self.yaw[rows] = heading + yaw_all[rows]
            self.quad[rows] = quads
            s, lat_now = track_coords(
                self.pack.edges[quads_k], self.pack.s[sections], self.pack.center[sections], quads, pos
            )
            self.progress_s[rows] = s
            self.lateral[rows] = lat_now
        self.vel[idx] = 0.0
        self.yaw_rate[idx] = 0.0
        self.steer[idx] = 0.0
        self.gear[idx] = 0
        self.rpm[idx] = self.params[idx, P_IDLE_RPM]
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
        pk = self.pack
        tables = (self.params, self._ratios, self._top, pk.inset, pk.edges, pk.s, pk.center, pk.cp_count)
        state = tuple(getattr(self, k) for k in STATE)
        step_cars(
            self.n_envs, tables, state, self._actions, self.track_id, pk.quad_off, pk.finish, self.analog, self.dt,
            self.sim.substeps, threads=self.sim.threads,
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
        out[:, 1] = self.pack.height[self.track_id]
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
        pos, yaw, quad, tid = self._car_rows(idx)
        lidar_cars(
            len(sub), self.pack.edges, tid, self.pack.quad_off, pos, yaw, quad, self.beam_angles, self.beam_origins,
            self.lidar_cfg.range, sub, threads=self.sim.threads,
        )  # fmt: skip
        if idx is not None:
            out[idx] = sub
        return out

    def images(self, out: np.ndarray | None = None, rows: np.ndarray | None = None) -> np.ndarray:
        """First-person grayscale frames ``[N, H, W]`` uint8; ``rows`` as in :meth:`lidar`."""
        cam = self.camera_cfg
        out = _output(out, (self.n_envs, cam.height, cam.width), np.uint8, "images")
        idx, sub = self._rows(rows, out)
        pos, yaw, quad, tid = self._car_rows(idx)
        pk = self.pack
        images_cars(
            len(sub), pk.edges, pk.s, pk.gate, tid, pk.quad_off, pos, yaw, quad, self._camera, sub,
            threads=self.sim.threads,
        )  # fmt: skip
        if idx is not None:
            out[idx] = sub
        return out

    def _car_rows(self, idx: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(pos, yaw, quad, track_id) of the cars ``idx`` (all when None), as the sensor kernels take them."""
        if idx is None:
            return self.pos, self.yaw, self.quad, self.track_id
        return self.pos[idx], self.yaw[idx], self.quad[idx], self.track_id[idx]

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


def _check_ends(track: Track) -> None:
    m = track.n_quads
    if not (0 <= track.start < track.finish < m):
        raise TrackError(
            f"track {track.name!r}: need 0 <= start < finish < {m} quads, got {track.start}, {track.finish}"
        )


def _check_car(car: CarConfig) -> None:
    if not car.shift_down_rpm < car.shift_up_rpm <= car.max_rpm:
        raise ConfigError(
            f"car: need shift_down_rpm < shift_up_rpm <= max_rpm, got {car.shift_down_rpm}, "
            f"{car.shift_up_rpm}, {car.max_rpm}; lower car.shift_down_rpm or raise car.max_rpm"
        )
    ratios = car.gear_ratios
    if any(r <= 0 for r in ratios) or any(b >= a for a, b in zip(ratios[:-1], ratios[1:], strict=True)):
        raise ConfigError(f"car.gear_ratios must be positive and decreasing (first to top gear), got {ratios}")
