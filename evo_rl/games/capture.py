"""Screen backends: how the capture layer sees a game.

A :class:`ScreenBackend` returns the current picture as ``[H, W, 3]`` uint8 RGB. Two backends:

- :class:`VirtualScreen`: a virtual game's cockpit view (the simulator's camera), read from its
  input port on 127.0.0.1 (:mod:`evo_rl.games.virtual_link`);
- :class:`MssScreen`: a screenshot of a screen region with mss (the ``game`` extra), as TMRL captures
  the TrackMania window.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from evo_rl.games import virtual_link as link
from evo_rl.games.errors import GameConnectionError, GameError, import_game_package
from evo_rl.games.net import LOOPBACK, connect, recv_exact


@runtime_checkable
class ScreenBackend(Protocol):
    """Where pictures of the game come from."""

    def grab(self) -> np.ndarray:
        """The current picture, ``[H, W, 3]`` uint8 RGB."""

    def close(self) -> None: ...


class VirtualScreen:
    """The cockpit view of a virtual game, through its input port (``evo-rl virtual-game tm2020`` prints it)."""

    def __init__(self, port: int, host: str = LOOPBACK, timeout: float = 2.0) -> None:
        self.address = (host, port)
        self.frame = -1  # the game frame of the last picture
        self._sock = connect(
            host, port, timeout, "the virtual game's input port", "start one with `evo-rl virtual-game tm2020`"
        )

    def grab(self) -> np.ndarray:
        where = f"{self.address[0]}:{self.address[1]}"
        try:
            self._sock.sendall(link.encode_request(link.Request.SCREEN))
            header = recv_exact(self._sock, link.SCREEN_HEADER_SIZE)
            if header is None:
                raise GameConnectionError(f"the virtual game on {where} closed the screen connection")
            frame, height, width, channels = link.decode_screen_header(header)
            pixels = recv_exact(self._sock, height * width * channels)
        except OSError as e:
            raise GameConnectionError(f"no picture from the virtual game on {where} ({e}); did it stop?") from e
        if pixels is None:
            raise GameConnectionError(f"the virtual game on {where} closed the screen connection mid-picture")
        self.frame = frame
        img = np.frombuffer(pixels, np.uint8).reshape(height, width, channels)
        if channels == 1:
            return np.repeat(img, 3, axis=2)
        return np.ascontiguousarray(img[:, :, :3])

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> VirtualScreen:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MssScreen:
    """Screenshots of ``region`` (``{"left", "top", "width", "height"}`` in pixels; None: the first monitor)."""

    def __init__(self, region: dict[str, int] | None = None) -> None:
        mss = import_game_package("mss", "screen capture (MssScreen)")
        self._mss: Any = mss.mss()
        if region is None:
            region = dict(self._mss.monitors[1])
        missing = {"left", "top", "width", "height"} - set(region)
        if missing or region["width"] <= 0 or region["height"] <= 0:
            raise GameError(f"a capture region needs left, top and positive width and height, got {region}")
        self.region = {k: int(region[k]) for k in ("left", "top", "width", "height")}

    def grab(self) -> np.ndarray:
        shot = np.asarray(self._mss.grab(self.region))  # [H, W, 4] BGRA
        return np.ascontiguousarray(shot[:, :, 2::-1])

    def close(self) -> None:
        self._mss.close()


def grey_resized(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """``[height, width]`` uint8 grey of an ``[H, W, 3]`` picture, sampling the nearest rows and columns."""
    grey = rgb[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)  # [H, W]
    rows = (np.arange(height) * grey.shape[0] / height).astype(np.intp)
    cols = (np.arange(width) * grey.shape[1] / width).astype(np.intp)
    return np.clip(grey[rows][:, cols], 0, 255).astype(np.uint8)
