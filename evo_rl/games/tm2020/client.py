"""The TrackMania 2020 telemetry client: records in, commands out, reconnecting on its own.

A background thread connects to the plugin (or a virtual game), reads records and keeps the
newest; when the connection drops (the game or the plugin restarted) or the stream is invalid,
it connects again. Each record gets a client-side sequence number :attr:`Telemetry.seq` that only
grows, across reconnects too, so a real-time step can ask for a record newer than its action::

    with TM2020Client(port=9100) as client:
        before = client.seq              # the newest record so far (-1: none)
        gamepad.apply(1.0, 0.0, 0.0)     # act
        t = client.wait_newer(before, timeout=1.0)   # the first record after the action
        state = t.car_state()

When no record comes within the timeout, :class:`GameConnectionError` says what to check.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

from evo_rl.envs.source import CarState
from evo_rl.errors import EvoError
from evo_rl.games.errors import GameConnectionError, ProtocolError
from evo_rl.games.net import LOOPBACK
from evo_rl.games.tm2020 import protocol as p

ProtocolName = Literal["evo", "tmrl"]
READ_TIMEOUT = 0.2  # s a blocked read waits before checking whether the client is closing


@dataclass(frozen=True)
class Telemetry:
    """One record as the client received it."""

    seq: int  # client-side sequence number: +1 per record received, never reset (reconnects included)
    connection: int  # which connection brought it: 1 for the first, +1 per reconnect
    received_at: float  # time.monotonic() when it arrived
    record: Any  # protocol.Record (evo) or protocol.TmrlRecord (tmrl)

    def car_state(self) -> CarState:
        if isinstance(self.record, p.TmrlRecord):
            return p.tmrl_to_car_state(self.record)
        return p.record_to_car_state(self.record)


class TM2020Client:
    """Telemetry from the EVO RL plugin (``protocol="evo"``) or TMRL's ``TMRL_GrabData`` (``"tmrl"``).

    ``port`` defaults to the protocol's port (9100 for evo, 9000 for tmrl). The client starts
    connecting at once; :meth:`close` (or leaving a ``with`` block) stops it.
    """

    def __init__(
        self, port: int | None = None, protocol: ProtocolName = "evo", host: str = LOOPBACK, retry_seconds: float = 0.2
    ) -> None:
        if protocol not in ("evo", "tmrl"):
            raise EvoError(f"game.protocol must be 'evo' or 'tmrl', got {protocol!r}")
        self.protocol = protocol
        self.host = host
        self.port = int(port if port is not None else (p.DEFAULT_PORT if protocol == "evo" else p.TMRL_PORT))
        self.provides = p.EVO_PROVIDES if protocol == "evo" else p.TMRL_PROVIDES
        self.retry_seconds = retry_seconds
        self.connections = 0  # connections made so far
        self.last_error: str | None = None  # why the last connection attempt or stream failed
        self._latest: Telemetry | None = None
        self._seq = -1
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._send_lock = threading.Lock()
        self._command_seq = 0
        self._thread = threading.Thread(target=self._run, name=f"tm2020-client-{self.port}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ reading

    @property
    def connected(self) -> bool:
        return self._sock is not None

    @property
    def seq(self) -> int:
        """Sequence number of the newest record (-1 before the first)."""
        return self._seq

    @property
    def latest(self) -> Telemetry | None:
        return self._latest

    def wait_newer(self, than: int = -1, timeout: float = 1.0) -> Telemetry:
        """The newest record once one with ``seq > than`` has arrived; :class:`GameConnectionError` after ``timeout`` s."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._seq > than or self._stop.is_set(), timeout):
                raise GameConnectionError(self._stalled_message(timeout))
            if self._stop.is_set() and self._seq <= than:
                raise GameConnectionError("the TrackMania 2020 client is closed")
            assert self._latest is not None
            return self._latest

    def wait_connected(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.connected:
            if time.monotonic() > deadline:
                raise GameConnectionError(self._stalled_message(timeout))
            self._stop.wait(0.01)

    # ------------------------------------------------------------------ commands

    def command(self, command: p.Command, timeout: float = 1.0) -> Telemetry:
        """Send ``command``; return the first record that acknowledges it (``command_ack``)."""
        if self.protocol != "evo":
            raise ProtocolError(
                "TMRL's plugin takes no commands: respawn with the game's respawn button "
                "(the input backend's respawn()), or use the EVO RL plugin (game.protocol: evo)"
            )
        with self._send_lock:
            sock = self._sock
            if sock is None:
                raise GameConnectionError(self._stalled_message(0.0))
            self._command_seq += 1
            seq = self._command_seq
            connection = self.connections
            try:
                sock.sendall(p.encode_command(command, seq))
            except OSError as e:
                raise GameConnectionError(f"cannot send {command.name} to {self.host}:{self.port}: {e}") from e
        with self._cond:
            if not self._cond.wait_for(lambda: self._acked(seq, connection), timeout):
                raise GameConnectionError(
                    f"{command.name} was not acknowledged within {timeout:g} s; "
                    + self._stalled_message(timeout, brief=True)
                )
            assert self._latest is not None
            return self._latest

    def _acked(self, seq: int, connection: int) -> bool:
        t = self._latest
        if self._stop.is_set():
            return True
        return t is not None and t.connection == connection and t.record.command_ack >= seq

    def ping(self, timeout: float = 1.0) -> Telemetry:
        return self.command(p.Command.PING, timeout)

    def respawn(self, timeout: float = 1.0) -> Telemetry:
        """A new run from the start line; returns the first record after it (race time back near 0)."""
        return self.command(p.Command.RESPAWN, timeout)

    def restart_map(self, timeout: float = 10.0) -> Telemetry:
        return self.command(p.Command.RESTART_MAP, timeout)

    # ------------------------------------------------------------------ life cycle

    def close(self) -> None:
        self._stop.set()
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout=2.0)

    def __enter__(self) -> TM2020Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the reader thread

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                sock = socket.create_connection((self.host, self.port), timeout=1.0)
            except OSError as e:
                self.last_error = f"nothing listens on {self.host}:{self.port} ({e})"
                self._stop.wait(self.retry_seconds)
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(READ_TIMEOUT)
            self.connections += 1
            self._sock = sock
            try:
                self._read_records(sock, self.connections)
            except ProtocolError as e:
                self.last_error = f"invalid data from {self.host}:{self.port}: {e}"
            except OSError as e:
                self.last_error = f"the connection to {self.host}:{self.port} failed ({e})"
            finally:
                with self._send_lock:
                    self._sock = None
                sock.close()
            self._stop.wait(self.retry_seconds)

    def _read_records(self, sock: socket.socket, connection: int) -> None:
        """Read records until the peer closes (return) or the stream is invalid (ProtocolError)."""
        evo = self.protocol == "evo"
        buf = bytearray()
        while not self._stop.is_set():
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue  # nothing this instant
            if not chunk:
                self.last_error = f"{self.host}:{self.port} closed the connection"
                return
            buf += chunk
            records = []
            while len(buf) >= 8:
                size = p.check_header(bytes(buf[:8])) if evo else p.TMRL_SIZE
                if len(buf) < size:
                    break
                data = bytes(buf[:size])
                del buf[:size]
                records.append(p.decode_record(data) if evo else p.decode_tmrl(data))
            if records:
                now = time.monotonic()
                with self._cond:
                    self._seq += len(records)
                    self._latest = Telemetry(self._seq, connection, now, records[-1])
                    self._cond.notify_all()

    def _stalled_message(self, timeout: float, brief: bool = False) -> str:
        where = f"{self.host}:{self.port}"
        plugin = (
            "the EVO RL plugin is installed (`evo-rl game tm2020 install-plugin`) and loaded: OpenPlanet loads "
            "unsigned plugins only in Developer mode (F3, Developer, Signature Mode: Developer; then reload it)"
            if self.protocol == "evo"
            else "TMRL's TMRL_GrabData plugin is installed and loaded in OpenPlanet (F3, Developer, reload)"
        )
        if not self.connected and self._seq < 0:
            state = f"no record from {where} within {timeout:g} s: nothing is connected"
        elif not self.connected:
            state = f"no record from {where} within {timeout:g} s: the connection dropped"
        else:
            state = f"connected to {where}, but no record came within {timeout:g} s"
        why = f" (last error: {self.last_error})" if self.last_error else ""
        if brief:
            return state + why
        return (
            f"{state}{why}. Check that TrackMania 2020 runs with OpenPlanet; that {plugin}; that the plugin's port "
            f"is {self.port} (game.port); that the game is in a race (a map loaded, the car on the track, not in a "
            "menu or paused); or, without the game, that `evo-rl virtual-game tm2020` runs"
        )
