"""The virtual TrackMania 2020: the simulator in real time, serving exactly the plugin's protocol.

:class:`VirtualTM2020` runs one car of :class:`~evo_rl.sim.world.World` at the game's frame rate
(100 physics frames per second by default, times ``time_scale``) and plays the game's part for
every live layer:

- **telemetry** on ``127.0.0.1:port``: one record per frame in the EVO RL protocol (``"evo"``) or
  TMRL's 11 floats (``"tmrl"``), to one client at a time (others are refused until it leaves);
  in the EVO RL protocol it runs the commands (ping, respawn, restart the map) as the plugin does;
- **input and screen** on ``127.0.0.1:input_port`` (:mod:`evo_rl.games.virtual_link`): the inputs a
  :class:`~evo_rl.games.control.VirtualInput` sets drive the car from the next frame on, and a
  :class:`~evo_rl.games.capture.VirtualScreen` gets the game window's picture: the cockpit view at
  TMRL's window size with the road borders black (``screen="cockpit"``, :mod:`evo_rl.sim.cockpit`, what
  TMRL's screen LIDAR reads), or the simulator's own camera (``screen="camera"``, ``World.images()``).

Everything runs on one thread that waits in ``select`` between frames. A respawn (command or
button) starts a new run from the start line; restarting the map does the same in the virtual game.
"""

from __future__ import annotations

import math
import select
import socket
import threading
import time
from collections import deque
from typing import Any, Literal

import numpy as np

from evo_rl.config import CameraConfig, CarConfig, SimConfig
from evo_rl.errors import EvoError
from evo_rl.games import virtual_link as link
from evo_rl.games.errors import ProtocolError
from evo_rl.games.net import LOOPBACK, listen
from evo_rl.games.tm2020 import protocol as p
from evo_rl.sim.catalog import get_track
from evo_rl.sim.world import World

SEND_TIMEOUT = 0.5  # s a client may keep a send blocked before it is dropped
MAX_LAG = 0.25  # s behind schedule after which the frame clock restarts instead of catching up in a burst


class VirtualTM2020:
    """A virtual TrackMania 2020 on 127.0.0.1; ``port=0`` / ``input_port=0`` pick free ports (see the attributes).

    ``input_port=None`` means ``port + 1`` (or a free port when ``port`` is 0).
    """

    def __init__(
        self,
        track: str = "evo-test",
        port: int | None = None,
        protocol: Literal["evo", "tmrl"] = "evo",
        time_scale: float = 1.0,
        frame_rate: int = 100,
        input_port: int | None = None,
        car: CarConfig | None = None,
        camera: CameraConfig | None = None,
        screen: Literal["cockpit", "camera"] = "cockpit",
    ) -> None:
        if screen not in ("cockpit", "camera"):
            raise EvoError(f"screen must be 'cockpit' or 'camera', got {screen!r}")
        self.screen = screen
        if protocol not in ("evo", "tmrl"):
            raise EvoError(f"protocol must be 'evo' or 'tmrl', got {protocol!r}")
        if not (math.isfinite(time_scale) and 0.01 <= time_scale <= 100):
            raise EvoError(f"time scale must be between 0.01 and 100, got {time_scale}")
        if frame_rate < 10 or 1000 % frame_rate:
            raise EvoError(f"frame rate must divide 1000 (whole milliseconds per frame) and be >= 10, got {frame_rate}")
        self.protocol = protocol
        self.time_scale = float(time_scale)
        self.frame_ms = 1000 // frame_rate
        self.track = get_track(track)
        self.world = World(
            self.track,
            1,
            car=car,
            camera=camera,
            sim=SimConfig(dt=self.frame_ms / 1000.0, substeps=1, threads=1),
            controls="analog",
        )
        # compile (or load) the simulator's kernels now, not in the first frame under a client's timeout
        self.world.step(np.zeros((1, 3), np.float32))
        self._picture()
        self.world.reset()
        port = (p.DEFAULT_PORT if protocol == "evo" else p.TMRL_PORT) if port is None else port
        if input_port is None:
            input_port = port + 1 if port else 0
        self._server = listen(LOOPBACK, port, "the virtual TrackMania 2020")
        try:
            self._input_server = listen(LOOPBACK, input_port, "the virtual TrackMania 2020's input port")
        except Exception:
            self._server.close()
            raise
        self.port = self._server.getsockname()[1]
        self.input_port = self._input_server.getsockname()[1]
        self.frame = 0  # frames simulated so far
        self.race_time_ms = 0
        self.distance = 0.0  # m driven this run (TMRL's "distance")
        self.inputs = (0.0, 0.0, 0.0)  # gas, brake, steer applied from the next frame on
        self._client: socket.socket | None = None
        self._commands = bytearray()
        self._ack = 0
        self._respawn = False
        self._links: dict[socket.socket, bytearray] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sent_at: deque[tuple[int, float]] = deque(maxlen=4096)  # (record frame, time.monotonic() when sent)

    # ------------------------------------------------------------------ life cycle

    def start(self) -> VirtualTM2020:
        self._thread = threading.Thread(target=self._run, name=f"virtual-tm2020-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the game: every connection closes and both ports are released."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        for sock in [self._client, *self._links, self._server, self._input_server]:
            if sock is not None:
                sock.close()
        self._client = None
        self._links.clear()

    def run_forever(self) -> None:
        """Run on the calling thread until :meth:`stop` (or Ctrl-C)."""
        try:
            self._run()
        finally:
            self.stop()

    def __enter__(self) -> VirtualTM2020:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ the game loop

    def _run(self) -> None:
        period = self.frame_ms / 1000.0 / self.time_scale
        next_frame = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_frame:
                self._frame()
                next_frame += period
                if time.monotonic() - next_frame > MAX_LAG:
                    next_frame = time.monotonic()
                continue
            readable = [self._server, self._input_server, *self._links]
            if self._client is not None:
                readable.append(self._client)
            ready, _, _ = select.select(readable, [], [], min(next_frame - now, 0.05))
            for sock in ready:
                self._readable(sock)

    def _readable(self, sock: socket.socket) -> None:
        if sock is self._server:
            conn, _ = sock.accept()
            if self._client is not None:  # one client at a time, as the plugin
                conn.close()
                return
            self._client = self._prepare(conn)
            self._commands.clear()
            self._ack = 0
        elif sock is self._input_server:
            conn, _ = sock.accept()
            self._links[self._prepare(conn)] = bytearray()
        elif sock is self._client:
            data = self._recv(sock)
            if data is None:
                self._drop_client()
            else:
                self._commands += data
        else:
            data = self._recv(sock)
            if data is None:
                self._drop_link(sock)
            else:
                self._links[sock] += data
                self._serve_link(sock)

    @staticmethod
    def _prepare(conn: socket.socket) -> socket.socket:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.settimeout(SEND_TIMEOUT)
        return conn

    @staticmethod
    def _recv(sock: socket.socket) -> bytes | None:
        try:
            return sock.recv(65536) or None
        except OSError:
            return None

    def _drop_client(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = None

    def _drop_link(self, sock: socket.socket) -> None:
        sock.close()
        self._links.pop(sock, None)

    def _serve_link(self, sock: socket.socket) -> None:
        buf = self._links[sock]
        while len(buf) >= link.REQUEST_SIZE:
            frame = bytes(buf[: link.REQUEST_SIZE])
            del buf[: link.REQUEST_SIZE]
            try:
                request, gas, brake, steer = link.decode_request(frame)
            except ProtocolError:
                self._drop_link(sock)
                return
            if request is link.Request.INPUT:
                self.inputs = (gas, brake, steer)
            elif request is link.Request.RESPAWN:
                self._respawn = True
            else:
                img = self._picture()
                channels = img.shape[2] if img.ndim == 3 else 1
                header = link.encode_screen_header(self.frame, img.shape[0], img.shape[1], channels)
                try:
                    sock.sendall(header + img.tobytes())
                except OSError:
                    self._drop_link(sock)
                    return

    def _run_commands(self) -> None:
        while len(self._commands) >= p.COMMAND_SIZE:
            frame = bytes(self._commands[: p.COMMAND_SIZE])
            del self._commands[: p.COMMAND_SIZE]
            if self.protocol != "evo":
                continue  # TMRL's plugin reads nothing
            try:
                command, seq = p.decode_command(frame)
            except ProtocolError:
                self._drop_client()  # as the plugin: an invalid command frame closes the connection
                return
            if command in (p.Command.RESPAWN, p.Command.RESTART_MAP):
                self._respawn = True
            self._ack = seq

    def _frame(self) -> None:
        """One game frame: commands, physics, one record to the client."""
        self._run_commands()
        w = self.world
        if self._respawn:
            self._respawn = False
            w.reset()
            self.race_time_ms = 0
            self.distance = 0.0
        finished_before = bool(w.finished[0])
        gas, brake, steer = self.inputs
        w.step(np.array([[gas, brake, steer]], np.float32))
        self.frame += 1
        if not finished_before:
            self.race_time_ms += self.frame_ms
        self.distance += float(w.speed()[0]) * self.frame_ms / 1000.0
        if self._client is None:
            return
        data = self._tmrl_bytes() if self.protocol == "tmrl" else p.encode_record(self.record())
        sending = time.monotonic()  # before the send: the client may read the record before sendall returns
        try:
            self._client.sendall(data)
        except OSError:
            self._drop_client()
            return
        self.sent_at.append((self.frame - 1, sending))

    def _picture(self) -> np.ndarray:
        """The game window: ``[488, 958, 3]`` RGB cockpit view, or the ``[H, W]`` grey camera."""
        if self.screen == "camera":
            return self.world.images()[0]
        from evo_rl.sim.cockpit import cockpit_view

        return cockpit_view(self.world)[0]

    # ------------------------------------------------------------------ records

    def record(self) -> Any:
        """The EVO RL record of the current frame."""
        w = self.world
        yaw = float(w.yaw[0])
        vx, vy = float(w.vel[0, 0]), float(w.vel[0, 1])
        x, y, z = (float(v) for v in w.position3()[0])
        gas, brake, steer = self.inputs
        return p.Record(
            frame=self.frame - 1,
            race_time_ms=self.race_time_ms,
            pos_x=x, pos_y=y, pos_z=z,
            dir_x=math.cos(yaw), dir_y=0.0, dir_z=math.sin(yaw),
            vel_x=vx, vel_y=0.0, vel_z=vy,
            speed_kmh=(vx * math.cos(yaw) + vy * math.sin(yaw)) * 3.6,
            gear=int(w.gear[0]),
            rpm=float(w.rpm[0]),
            gas=gas, brake=brake, steer=steer,
            checkpoints=int(w.checkpoints[0]),
            checkpoints_total=len(self.track.checkpoints),
            finished=int(bool(w.finished[0])),
            wall_contact=int(bool(w.wall_contact[0])),
            wheel_fl=1, wheel_fr=1, wheel_rl=1, wheel_rr=1,
            command_ack=self._ack,
        )  # fmt: skip

    def _tmrl_bytes(self) -> bytes:
        w = self.world
        x, y, z = (float(v) for v in w.position3()[0])
        gas, brake, steer = self.inputs
        rec = p.TmrlRecord(
            speed=float(w.speed()[0]), distance=self.distance, x=x, y=y, z=z, steer=steer, gas=gas,
            brake=1.0 if brake > 0 else 0.0, finished=1.0 if w.finished[0] else 0.0,
            gear=float(w.gear[0]), rpm=float(w.rpm[0]),
        )  # fmt: skip
        return p.encode_tmrl(rec)
