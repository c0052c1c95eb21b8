"""The virtual TMNF: the simulator speaking exactly the TMInterface plugin's lock-step protocol.

:class:`VirtualTMNF` serves one car of :class:`~evo_rl.sim.world.World` on 127.0.0.1, one client at a
time, on a background thread. Each ``STEP`` request advances the car one control step (``sim.dt``)
and answers with the state after it; the race waits in between, as TMInterface's "waitforstep". The
game speed (``SET_SPEED``, 1..100) paces the steps to ``dt / speed`` real seconds at least; a client
silent for longer than the response timeout (``SET_TIMEOUT``, default 10 s) is dropped and the game
listens again. ``RESTART`` rewinds to the race start (the simulator's start state, exactly);
``GIVE_UP`` does the same. ``LOAD_MAP`` switches to another built-in track or ``.track`` file. Same
map, same actions: the same trajectory.
"""

from __future__ import annotations

import math
import socket
import threading
import time
from typing import Any

import numpy as np

from evo_rl.config import SimConfig
from evo_rl.errors import EvoError
from evo_rl.games.errors import ProtocolError
from evo_rl.games.net import LOOPBACK, listen, recv_exact
from evo_rl.games.tmnf import protocol as p
from evo_rl.sim.catalog import get_track
from evo_rl.sim.world import World

ACCEPT_POLL = 0.2  # s between checks of the stop flag while waiting for a client


class VirtualTMNF:
    """One virtual TMNF instance; ``port=0`` picks a free port (read :attr:`port`)."""

    def __init__(
        self, track: str = "evo-test", port: int | None = None, speed: float = 1.0, dt: float = 0.05, paced: bool = True
    ) -> None:
        """``paced=False``: no game-speed pacing at all, every step as fast as the simulator allows (benchmarks
        of the protocol alone; a real game cannot do that)."""
        if not (math.isfinite(speed) and 1.0 <= speed <= p.MAX_SPEED):
            raise EvoError(f"game speed must be between 1 and {p.MAX_SPEED:g}, got {speed}")
        self.track = get_track(track)
        self.world = World(self.track, 1, sim=SimConfig(dt=dt, threads=1), controls="analog")
        self.world.step(np.zeros((1, 3), np.float32))  # compile (or load) the kernels before the first client
        self.world.reset()
        self.speed = float(speed)
        self.paced = paced
        self.timeout = 10.0  # s the game waits for the next request
        self.steps = 0
        self.served = 0  # requests answered, all clients
        self._server = listen(LOOPBACK, p.DEFAULT_PORT if port is None else port, "the virtual TMNF")
        self.port = self._server.getsockname()[1]
        self._server.settimeout(ACCEPT_POLL)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_step = 0.0

    def start(self) -> VirtualTMNF:
        self._thread = threading.Thread(target=self._run, name=f"virtual-tmnf-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self._server.close()

    def __enter__(self) -> VirtualTMNF:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ serving

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except (TimeoutError, OSError):
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                self._serve(conn)
            finally:
                conn.close()

    def _serve(self, conn: socket.socket) -> None:
        """Answer requests until the client leaves, stalls past the timeout or sends something invalid."""
        while not self._stop.is_set():
            conn.settimeout(min(self.timeout, ACCEPT_POLL))
            waited = 0.0
            data = None
            while data is None:
                try:
                    data = recv_exact(conn, p.REQUEST_SIZE)
                    if data is None:
                        return  # the client left
                except TimeoutError:
                    waited += ACCEPT_POLL
                    if waited >= self.timeout or self._stop.is_set():
                        return  # a stalled client frees the game
            try:
                req = p.decode_request(data)
                if req.request == p.Request.LOAD_MAP:
                    conn.settimeout(self.timeout)
                    name = recv_exact(conn, req.flags)
                    if name is None or not self._load(p.decode_map_name(name)):
                        return  # the client's load_map reports it
            except (ProtocolError, TimeoutError):
                return  # as the plugin: an invalid request closes the connection
            try:
                conn.sendall(self._answer(req))
            except OSError:
                return
            self.served += 1

    def _load(self, name: str) -> bool:
        """Switch to map ``name`` (a built-in track or a .track file); False when there is none."""
        try:
            track = get_track(name)
        except (EvoError, OSError):
            return False
        self.track = track
        self.world = World(track, 1, sim=SimConfig(dt=self.world.dt, threads=1), controls="analog")
        self.world.reset()
        self.steps = 0
        return True

    def _answer(self, req: Any) -> bytes:
        w = self.world
        kind = p.Request(req.request)
        if kind is p.Request.STEP:
            self._pace()
            w.step(np.array([[req.a, req.b, req.c]], np.float32))
            self.steps += 1
        elif kind in (p.Request.RESTART, p.Request.GIVE_UP, p.Request.LOAD_MAP):
            w.reset()
            self.steps = 0
        elif kind is p.Request.SET_SPEED:
            self.speed = min(max(float(req.a), 1.0), p.MAX_SPEED)
        elif kind is p.Request.SET_TIMEOUT:
            self.timeout = max(float(req.a), 0.05)
        frame = b""
        h = w_px = 0
        if req.flags & p.FLAG_FRAME and kind is not p.Request.LOAD_MAP:
            h, w_px = req.frame_height, req.frame_width
            frame = _grey_frame(w, h, w_px)
        return p.encode_state(self.state(req.seq, h, w_px)) + frame

    def _pace(self) -> None:
        """At game speed s, a control step takes at least dt / s real seconds."""
        if not self.paced:
            return
        period = self.world.dt / self.speed
        now = time.monotonic()
        if now < self._next_step:
            time.sleep(self._next_step - now)
        self._next_step = max(now, self._next_step) + period

    def state(self, seq: int = 0, frame_height: int = 0, frame_width: int = 0) -> Any:
        w = self.world
        yaw = float(w.yaw[0])
        vx, vz = float(w.vel[0, 0]), float(w.vel[0, 1])
        x, y, z = (float(v) for v in w.position3()[0])
        return p.State(
            seq=seq, step=self.steps, race_time_ms=int(w.race_time_ms[0]),
            pos_x=x, pos_y=y, pos_z=z, yaw=yaw, vel_x=vx, vel_y=0.0, vel_z=vz,
            speed_kmh=(vx * math.cos(yaw) + vz * math.sin(yaw)) * 3.6, gear=int(w.gear[0]), rpm=float(w.rpm[0]),
            checkpoints=int(w.checkpoints[0]), checkpoints_total=len(self.track.checkpoints),
            finished=int(bool(w.finished[0])), wall_contact=int(bool(w.wall_contact[0])),
            wheels_ground=15, wheels_sliding=0, frame_height=frame_height, frame_width=frame_width,
        )  # fmt: skip


def _grey_frame(world: World, height: int, width: int) -> bytes:
    """The car's camera at ``height`` x ``width`` grey (the simulator's camera model)."""
    from evo_rl.sim.cockpit import cockpit_view

    return cockpit_view(world, width=width, height=height, grey=True)[0].tobytes()
