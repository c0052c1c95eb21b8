"""The loopback channel of a virtual game's input and screen (its "input port", 127.0.0.1 only).

A virtual game plays the game's part for the control and capture layers too: :class:`VirtualInput`
(:mod:`evo_rl.games.control`) writes input frames to it as a gamepad would move its triggers and
stick, and :class:`VirtualScreen` (:mod:`evo_rl.games.capture`) asks it for its cockpit view as a
screenshot would. Any number of such clients may be connected at once; each frame is fixed-size,
little-endian, laid out by the tables below.
"""

from __future__ import annotations

import struct
from enum import IntEnum

from evo_rl.games.errors import ProtocolError

LINK_VERSION = 1
LINK_MAGIC = int.from_bytes(b"EVRI", "little")  # client -> game frames
SCREEN_MAGIC = int.from_bytes(b"EVRS", "little")  # game -> client screen replies


class Request(IntEnum):
    INPUT = 1  # set gas (0..1), brake (0..1) and steer (-1..1) until the next input frame
    RESPAWN = 2  # press the game's respawn button (a new run from the start line)
    SCREEN = 3  # ask for the current screen; the game answers one screen reply


# (name, struct code): one client -> game frame
REQUEST_FIELDS = (("magic", "I"), ("version", "H"), ("request", "H"), ("gas", "f"), ("brake", "f"), ("steer", "f"))
# (name, struct code): the header of a screen reply, followed by height * width * channels uint8 pixels
SCREEN_FIELDS = (("magic", "I"), ("frame", "I"), ("height", "H"), ("width", "H"), ("channels", "H"), ("version", "H"))

_REQUEST = struct.Struct("<" + "".join(code for _, code in REQUEST_FIELDS))
_SCREEN = struct.Struct("<" + "".join(code for _, code in SCREEN_FIELDS))
REQUEST_SIZE = _REQUEST.size
SCREEN_HEADER_SIZE = _SCREEN.size
MAX_SCREEN_BYTES = 4096 * 4096 * 4


def encode_request(request: Request, gas: float = 0.0, brake: float = 0.0, steer: float = 0.0) -> bytes:
    return _REQUEST.pack(LINK_MAGIC, LINK_VERSION, int(request), gas, brake, steer)


def decode_request(data: bytes) -> tuple[Request, float, float, float]:
    """``(request, gas, brake, steer)`` of one frame; :class:`ProtocolError` when it is not one."""
    if len(data) != REQUEST_SIZE:
        raise ProtocolError(f"input frame of {len(data)} bytes, expected {REQUEST_SIZE}")
    magic, version, request, gas, brake, steer = _REQUEST.unpack(data)
    if magic != LINK_MAGIC or version != LINK_VERSION:
        raise ProtocolError(
            f"not a version-{LINK_VERSION} input frame (magic 0x{magic:08X}, version {version}); "
            "only EVO RL's VirtualInput and VirtualScreen talk to a virtual game's input port"
        )
    try:
        return Request(request), gas, brake, steer
    except ValueError:
        raise ProtocolError(f"unknown input request {request}") from None


def encode_screen_header(frame: int, height: int, width: int, channels: int) -> bytes:
    return _SCREEN.pack(SCREEN_MAGIC, frame, height, width, channels, LINK_VERSION)


def decode_screen_header(data: bytes) -> tuple[int, int, int, int]:
    """``(frame, height, width, channels)`` of a screen reply header."""
    if len(data) != SCREEN_HEADER_SIZE:
        raise ProtocolError(f"screen header of {len(data)} bytes, expected {SCREEN_HEADER_SIZE}")
    magic, frame, height, width, channels, version = _SCREEN.unpack(data)
    if magic != SCREEN_MAGIC or version != LINK_VERSION:
        raise ProtocolError(f"not a version-{LINK_VERSION} screen reply (magic 0x{magic:08X}, version {version})")
    if height * width * channels > MAX_SCREEN_BYTES or channels not in (1, 3, 4):
        raise ProtocolError(f"implausible screen {height}x{width}x{channels}")
    return frame, height, width, channels
