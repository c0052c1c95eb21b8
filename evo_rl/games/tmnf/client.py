"""The TMNF client: one lock-step connection to one game instance (the plugin or a virtual TMNF).

``request`` sends one request and returns the state that answers it (plus its frame); ``send`` and
``receive`` split the two so that a source can step several instances at once. A game that does
not answer within ``timeout`` seconds raises :class:`GameConnectionError` saying what to check.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import numpy as np

from evo_rl.games.errors import GameConnectionError, GameTimeoutError, ProtocolError
from evo_rl.games.net import LOOPBACK, recv_exact
from evo_rl.games.tmnf import protocol as p


class TMNFClient:
    """A connection to the TMNF instance on ``host:port``; connects within ``connect_timeout`` seconds."""

    def __init__(
        self, port: int = p.DEFAULT_PORT, host: str = LOOPBACK, timeout: float = 5.0, connect_timeout: float = 10.0
    ) -> None:
        self.address = (host, port)
        self.timeout = timeout
        self._seq = 0
        self._pending: int | None = None
        deadline = time.monotonic() + connect_timeout
        while True:
            try:
                self._sock = socket.create_connection(self.address, timeout=min(1.0, connect_timeout))
                break
            except OSError as e:
                if time.monotonic() > deadline:
                    raise GameConnectionError(
                        f"no TMNF instance on {host}:{port} ({e}): check that TrackMania Nations Forever runs with "
                        "TMInterface and the EVO RL plugin on this port (`evo-rl game tmnf launch` sets it), or that "
                        "`evo-rl virtual-game tmnf` runs"
                    ) from e
                time.sleep(0.05)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock.settimeout(timeout)

    @property
    def where(self) -> str:
        return f"{self.address[0]}:{self.address[1]}"

    def send(
        self, request: p.Request, a: float = 0.0, b: float = 0.0, c: float = 0.0, frame: tuple[int, int] | None = None
    ) -> None:
        if self._pending is not None:
            raise ProtocolError("a TMNF request is still unanswered: receive() it first")
        self._seq = self._seq % (2**32 - 1) + 1
        h, w = frame or (0, 0)
        data = p.encode_request(
            p.RequestFrame(
                request=int(request), seq=self._seq, flags=p.FLAG_FRAME if frame else 0, frame_height=h,
                frame_width=w, a=float(a), b=float(b), c=float(c),
            )
        )  # fmt: skip
        try:
            self._sock.sendall(data)
        except OSError as e:
            raise GameConnectionError(f"the TMNF instance on {self.where} closed the connection ({e})") from e
        self._pending = self._seq

    def receive(self) -> tuple[Any, np.ndarray | None]:
        """The state answering the last request, and its ``[H, W]`` uint8 frame when one was asked for."""
        if self._pending is None:
            raise ProtocolError("receive() without a request")
        seq, self._pending = self._pending, None
        try:
            data = recv_exact(self._sock, p.STATE_SIZE)
            if data is None:
                raise GameConnectionError(
                    f"the TMNF instance on {self.where} closed the connection (did the game crash?)"
                )
            state = p.decode_state(data)
            frame = None
            if state.frame_height:
                pixels = recv_exact(self._sock, state.frame_height * state.frame_width)
                if pixels is None:
                    raise GameConnectionError(f"the TMNF instance on {self.where} closed the connection mid-frame")
                frame = np.frombuffer(pixels, np.uint8).reshape(state.frame_height, state.frame_width)
        except TimeoutError as e:
            raise GameTimeoutError(
                f"the TMNF instance on {self.where} did not answer within {self.timeout:g} s: is the game paused, in "
                "a menu, or frozen? (`evo-rl game tmnf launch` restarts an instance its clients report hung)"
            ) from e
        except OSError as e:
            raise GameConnectionError(f"the connection to the TMNF instance on {self.where} failed ({e})") from e
        if state.seq != seq:
            raise ProtocolError(f"the TMNF instance on {self.where} answered request {state.seq}, expected {seq}")
        return state, frame

    def request(
        self, request: p.Request, a: float = 0.0, b: float = 0.0, c: float = 0.0, frame: tuple[int, int] | None = None
    ) -> tuple[Any, np.ndarray | None]:
        self.send(request, a, b, c, frame)
        return self.receive()

    def load_map(self, name: str, timeout: float = 60.0) -> Any:
        """Load map ``name`` (a file in the game's Tracks folder); returns the state at its race start."""
        if self._pending is not None:
            raise ProtocolError("a TMNF request is still unanswered: receive() it first")
        data = p.encode_map_name(name)
        self._seq = self._seq % (2**32 - 1) + 1
        frame = p.RequestFrame(
            request=int(p.Request.LOAD_MAP), seq=self._seq, flags=len(data), frame_height=0, frame_width=0,
            a=0.0, b=0.0, c=0.0,
        )  # fmt: skip
        before = self.timeout
        self.set_timeout(timeout)
        try:
            try:
                self._sock.sendall(p.encode_request(frame) + data)
            except OSError as e:
                raise GameConnectionError(f"the TMNF instance on {self.where} closed the connection ({e})") from e
            self._pending = self._seq
            state, _ = self.receive()
        except (GameTimeoutError, GameConnectionError) as e:
            raise GameConnectionError(
                f"the TMNF instance on {self.where} did not start a race on map {name!r} within {timeout:g} s: is it "
                "a file in the game's Tracks folder (the virtual TMNF: a built-in track name or a .track file)? "
                f"({e})"
            ) from e
        finally:
            if self._pending is None:
                self.set_timeout(before)
        return state

    def set_timeout(self, seconds: float) -> None:
        """Seconds to wait for an answer from now on."""
        self.timeout = seconds
        self._sock.settimeout(seconds)

    @property
    def pending(self) -> bool:
        """A request is waiting for its answer."""
        return self._pending is not None

    def drop_pending(self) -> None:
        """Forget the unanswered request (the connection is being given up)."""
        self._pending = None

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> TMNFClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
