"""TMNF instances as one car source (:class:`evo_rl.envs.source.CarSource`): one car per instance.

Lock-step: :meth:`TMNFSource.step` sends every instance its inputs, :meth:`TMNFSource.observe` reads
every answer, so N instances compute their steps at the same time and the game time between two
actions is exactly ``sim.dt`` in each. It is not real-time: the simulator's environments
(:class:`~evo_rl.envs.vector.VecTrackEnv`) and the trainer drive it as they drive the simulator.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from evo_rl.config import EvoConfig
from evo_rl.errors import ConfigError
from evo_rl.games.control import action_to_inputs
from evo_rl.games.errors import GameConnectionError, GameTimeoutError, ProtocolError
from evo_rl.games.tmnf import protocol as p
from evo_rl.games.tmnf.client import TMNFClient
from evo_rl.games.tmnf.launch import report_hung
from evo_rl.games.track_model import TrackModel
from evo_rl.sim.track import Track


def provides(cfg: EvoConfig, has_track: bool, virtual: bool) -> frozenset[str]:
    """What TMNF instances report under ``cfg``, without connecting."""
    out = set(p.PROVIDES) | {"frames"}
    if virtual:
        out.add("wall_contact")
    if has_track:
        out.add("track")
        if cfg.lidar.kind == "geometric":
            out.add("lidar")
    return frozenset(out)


class TMNFSource:
    """``len(clients)`` TMNF instances, car ``i`` in instance ``i``."""

    name = "tmnf"
    realtime = False

    def __init__(self, cfg: EvoConfig, clients: list[TMNFClient], track: Track | None, virtual: bool = False) -> None:
        if cfg.lidar.kind == "tmrl":
            raise ConfigError("lidar.kind: tmrl is TMRL's TrackMania 2020 screen LIDAR; use geometric with TMNF")
        self.cfg = cfg
        self.clients = clients
        self.n_envs = n = len(clients)
        self.track = track
        self.provides = provides(cfg, track is not None, virtual)
        self.dt = cfg.sim.dt
        self.controls = cfg.env.controls
        cam = cfg.camera
        self._frame = (cam.height, cam.width) if cfg.env.flavour == "full" else None
        self._model = TrackModel(track, cfg) if track is not None else None
        self.pos3 = np.zeros((n, 3))
        self.vel = np.zeros((n, 2))
        self.yaw = np.zeros(n)
        self.forward_speed = np.zeros(n)
        self.gear = np.zeros(n, np.int32)
        self.rpm = np.zeros(n)
        self.checkpoints = np.zeros(n, np.int32)
        self.cp_forward = np.zeros(n, np.int32)
        self.cp_backward = np.zeros(n, np.int32)
        self.finished = np.zeros(n, bool)
        self.wall_contact = np.zeros(n, bool)
        self.airborne = np.zeros(n, bool)
        self.race_time_ms = np.zeros(n, np.int64)
        self.quad = np.zeros(n, np.int32)
        self.progress_s = np.zeros(n)
        self.lateral = np.zeros(n)
        self.frames = np.zeros((n, *(self._frame or (1, 1))), np.uint8)
        self.lost = np.zeros(n, bool)  # [N] instances that stopped answering; their episodes are cut
        self.errors: list[str] = ["" for _ in range(n)]  # why, per instance
        self.ports = [c.address[1] for c in clients]
        self.reconnect_timeout = cfg.game.reconnect_timeout

    def set_speed(self, speed: float) -> None:
        for c in self.clients:
            c.request(p.Request.SET_SPEED, speed)

    def reset(
        self, mask: np.ndarray | None = None, lateral: np.ndarray | None = None, yaw: np.ndarray | None = None
    ) -> None:
        """Rewind the instances of ``mask`` to their race start (instant); ``lateral``/``yaw`` are ignored.

        A lost instance is connected again first (its launcher restarts it), for up to
        ``game.reconnect_timeout`` seconds; then :class:`GameConnectionError` names it.
        """
        rows = [int(i) for i in (range(self.n_envs) if mask is None else np.flatnonzero(np.asarray(mask, bool)))]
        for i in rows:
            if self.lost[i]:
                self._reconnect(i)
            self.clients[i].send(p.Request.RESTART, frame=self._frame)
        for i in rows:
            self._update(i, *self.clients[i].receive(), first=True)

    def _reconnect(self, i: int) -> None:
        """Connect to instance ``i`` again once it answers a ping (a restarting game may accept and stay silent)."""
        old = self.clients[i]
        old.close()
        deadline = time.monotonic() + self.reconnect_timeout
        while True:
            left = deadline - time.monotonic()
            try:
                client = TMNFClient(
                    self.ports[i], timeout=min(old.timeout, max(left, 0.1)), connect_timeout=max(left, 0.1)
                )
                try:
                    client.request(p.Request.PING)
                except GameConnectionError:
                    client.close()
                    raise
                client.set_timeout(old.timeout)
                break
            except GameConnectionError as e:
                if time.monotonic() >= deadline:
                    raise GameConnectionError(f"TMNF instance {i} did not come back ({self.errors[i]}): {e}") from e
                time.sleep(0.1)
        self.clients[i] = client
        self.lost[i] = False
        self.errors[i] = ""

    def step(self, actions: np.ndarray) -> None:
        for i, c in enumerate(self.clients):
            if self.lost[i]:
                continue
            try:
                c.send(p.Request.STEP, *action_to_inputs(actions[i], self.controls), frame=self._frame)
            except GameConnectionError as e:
                self._lose(i, e)

    def observe(self) -> None:
        """Every answer; an instance that fails is marked lost (its episode is cut), the others go on."""
        for i, c in enumerate(self.clients):
            if not c.pending:
                continue
            try:
                self._update(i, *c.receive())
            except (GameConnectionError, ProtocolError) as e:
                self._lose(i, e)

    def _lose(self, i: int, error: Exception) -> None:
        if isinstance(error, GameTimeoutError):
            report_hung(self.ports[i], self.cfg.game.launcher_dir)
        self.lost[i] = True
        self.errors[i] = str(error)
        self.clients[i].drop_pending()

    def speed(self) -> np.ndarray:
        return np.abs(self.forward_speed)

    def position3(self) -> np.ndarray:
        return self.pos3.copy()

    def lidar(self, out: np.ndarray | None = None, rows: np.ndarray | None = None) -> np.ndarray:
        assert self._model is not None  # "lidar" is provided only with a track model
        if out is None:
            out = np.empty((self.n_envs, len(self._model.angles)), np.float32)
        return self._model.lidar(self.pos3[:, [0, 2]], self.yaw, self.quad, out)

    def images(self, out: np.ndarray | None = None, rows: np.ndarray | None = None) -> np.ndarray:
        if out is None:
            return self.frames.copy()
        out[...] = self.frames
        return out

    def close(self) -> None:
        for c in self.clients:
            c.close()

    def _update(self, i: int, s: Any, frame: np.ndarray | None, first: bool = False) -> None:
        self.pos3[i] = (s.pos_x, s.pos_y, s.pos_z)
        self.vel[i] = (s.vel_x, s.vel_z)
        self.yaw[i] = s.yaw
        self.forward_speed[i] = s.speed_kmh / 3.6
        self.gear[i] = s.gear
        self.rpm[i] = s.rpm
        before = int(self.checkpoints[i])
        self.checkpoints[i] = s.checkpoints
        self.cp_forward[i] = 0 if first else max(s.checkpoints - before, 0)
        self.finished[i] = bool(s.finished)
        self.wall_contact[i] = s.wall_contact == 1
        self.airborne[i] = s.wheels_ground == 0
        self.race_time_ms[i] = s.race_time_ms
        if frame is not None:
            self.frames[i] = frame
        if self._model is not None:
            q = self.quad[i : i + 1]
            prog, lat = self._model.place(self.pos3[i : i + 1, [0, 2]], q, np.array([first]))
            self.progress_s[i], self.lateral[i] = prog[0], lat[0]


def open_source(cfg: EvoConfig, ports: list[int], virtual: bool = False, speed: float | None = None) -> TMNFSource:
    """A :class:`TMNFSource` over the instances listening on ``ports`` (127.0.0.1), at game ``speed``."""
    from evo_rl.sim.catalog import get_track

    clients: list[TMNFClient] = []
    try:
        for port in ports:
            clients.append(TMNFClient(port, timeout=cfg.game.record_timeout))
        track = get_track(cfg.env.track) if cfg.env.track is not None else None
        source = TMNFSource(cfg, clients, track, virtual=virtual)
        if speed is not None and not math.isclose(speed, 1.0):
            source.set_speed(speed)
        return source
    except BaseException:
        for c in clients:
            c.close()
        raise
