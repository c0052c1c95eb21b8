"""EVO RL's lock-step protocol for TrackMania Nations Forever (TMInterface), version 1.

The game (the TMInterface plugin, or :class:`~evo_rl.games.tmnf.virtual.VirtualTMNF`) listens on
127.0.0.1; one client at a time. Every exchange is one *request* from the client and one *state*
reply from the game; the game holds the race between them ("waitforstep"), so the game time between
two actions is exactly one control step whatever the learner does. All fields little-endian; both
layouts are defined once here, in :data:`REQUEST_FIELDS` and :data:`STATE_FIELDS`.

- ``STEP`` (gas, brake, steer): apply the inputs for one control step, reply with the state after it
  (and a ``frame_height`` x ``frame_width`` grey frame after the state when ``flags`` asks for one).
- ``RESTART``: rewind to the state saved at the race start (instant), reply with it.
- ``GIVE_UP``: the game's give-up (a restart that counts as a new run), reply with the state.
- ``SET_SPEED`` (``a`` = game speed 1..100), ``SET_TIMEOUT`` (``a`` = seconds the game waits for the
  next request before it frees itself and listens again), ``PING``: reply with the current state.
- ``LOAD_MAP``: the request is followed by ``flags`` bytes (1..255) of UTF-8, the map's name
  (TMInterface's ``map`` command: a file in the game's Tracks folder); the game loads it and replies
  with the state at its race start. The virtual TMNF takes a built-in track name or ``.track`` path,
  and closes the connection on a map it cannot load; the plugin cannot tell, so the client's timeout
  (the map never starts) says so.

Nothing received is unpickled: a bad magic number, another version, a wrong size or garbled values
raise :class:`~evo_rl.games.errors.ProtocolError`.
"""

from __future__ import annotations

import math
import struct
from enum import IntEnum
from typing import Any

from evo_rl.envs.source import CarState
from evo_rl.games.errors import ProtocolError
from evo_rl.games.tm2020.protocol import FieldSpec, _dataclass, pack_fields

PROTOCOL_VERSION = 1
DEFAULT_PORT = 9200  # the first instance; instance k listens on DEFAULT_PORT + k
REQUEST_MAGIC = 0x4E545645  # "EVTN" little-endian
STATE_MAGIC = 0x53545645  # "EVTS"
MAX_FRAME_SIDE = 512  # px: frames are at most 512 x 512 grey
MAX_SPEED = 100.0  # game speed-up
MAX_MAP_NAME = 255  # bytes of a LOAD_MAP request's map name
FLAG_FRAME = 1  # request flag: send a frame after the state


class Request(IntEnum):
    STEP = 1
    RESTART = 2
    GIVE_UP = 3
    SET_SPEED = 4
    SET_TIMEOUT = 5
    PING = 6
    LOAD_MAP = 7


REQUEST_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("magic", "I", "0x4E545645, 'EVTN'", REQUEST_MAGIC),
    FieldSpec("version", "H", "protocol version", PROTOCOL_VERSION),
    FieldSpec("request", "H", "Request: 1 step, 2 restart, 3 give up, 4 set speed, 5 set timeout, 6 ping, 7 load map"),
    FieldSpec("seq", "I", "client sequence number, echoed by the state that answers it"),
    FieldSpec("flags", "I", "bit 0: send a frame after the state; LOAD_MAP: bytes of the map name that follow"),
    FieldSpec("frame_height", "H", "rows of the requested frame (with bit 0)"),
    FieldSpec("frame_width", "H", "columns of the requested frame (with bit 0)"),
    FieldSpec("a", "f", "STEP: gas 0..1; SET_SPEED: game speed; SET_TIMEOUT: seconds"),
    FieldSpec("b", "f", "STEP: brake 0..1"),
    FieldSpec("c", "f", "STEP: steer -1 (left) .. 1 (right)"),
)

STATE_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("magic", "I", "0x53545645, 'EVTS'", STATE_MAGIC),
    FieldSpec("version", "H", "protocol version", PROTOCOL_VERSION),
    FieldSpec("size", "H", "bytes of this state (the frame not counted)", 0),
    FieldSpec("seq", "I", "the seq of the request it answers"),
    FieldSpec("step", "I", "control steps since the race start"),
    FieldSpec("race_time_ms", "i", "race time, ms"),
    FieldSpec("pos_x", "f", "position x, m"),
    FieldSpec("pos_y", "f", "position y (up), m"),
    FieldSpec("pos_z", "f", "position z, m"),
    FieldSpec("yaw", "f", "heading in the (x, z) plane, rad, atan2(dir_z, dir_x)"),
    FieldSpec("vel_x", "f", "velocity x, m/s"),
    FieldSpec("vel_y", "f", "velocity y (up), m/s"),
    FieldSpec("vel_z", "f", "velocity z, m/s"),
    FieldSpec("speed_kmh", "f", "forward speed, km/h"),
    FieldSpec("gear", "B", "engaged gear"),
    FieldSpec("rpm", "f", "engine speed, rpm"),
    FieldSpec("checkpoints", "H", "checkpoints passed this run"),
    FieldSpec("checkpoints_total", "H", "checkpoints of the map"),
    FieldSpec("finished", "B", "1 once the finish line is crossed"),
    FieldSpec("wall_contact", "B", "1 when the car touched a wall during the step, 255 unknown"),
    FieldSpec("wheels_ground", "B", "bit k: wheel k (FL, FR, RL, RR) on the ground"),
    FieldSpec("wheels_sliding", "B", "bit k: wheel k sliding"),
    FieldSpec("frame_height", "H", "rows of the frame after this state (0: none)"),
    FieldSpec("frame_width", "H", "columns of the frame after this state"),
)

_REQUEST = struct.Struct("<" + "".join(f.code for f in REQUEST_FIELDS))
_STATE = struct.Struct("<" + "".join(f.code for f in STATE_FIELDS))
REQUEST_SIZE = _REQUEST.size
STATE_SIZE = _STATE.size
STATE_FIELDS = tuple(FieldSpec(f.name, f.code, f.doc, STATE_SIZE) if f.name == "size" else f for f in STATE_FIELDS)

RequestFrame = _dataclass("RequestFrame", REQUEST_FIELDS, "One request: the fields of REQUEST_FIELDS.")
State = _dataclass("State", STATE_FIELDS, "One state reply: the fields of STATE_FIELDS.")

PROVIDES = frozenset(
    {"position", "heading", "velocity", "speed", "gear", "rpm", "race_time", "checkpoints", "finish", "air"}
)  # plus wall_contact where the game knows it (the virtual TMNF)


def encode_request(frame: Any) -> bytes:
    return pack_fields(_REQUEST, REQUEST_FIELDS, frame, "request")


def decode_request(data: bytes | bytearray | memoryview) -> Any:
    data = bytes(data)
    if len(data) != REQUEST_SIZE:
        raise ProtocolError(f"request of {len(data)} bytes, protocol version {PROTOCOL_VERSION} has {REQUEST_SIZE}")
    values = dict(zip((f.name for f in REQUEST_FIELDS), _REQUEST.unpack(data), strict=True))
    if values["magic"] != REQUEST_MAGIC:
        raise ProtocolError(f"bad request magic 0x{values['magic']:08X} (expected 0x{REQUEST_MAGIC:08X}, 'EVTN')")
    if values["version"] != PROTOCOL_VERSION:
        raise ProtocolError(f"request of protocol version {values['version']}; this side speaks {PROTOCOL_VERSION}")
    try:
        Request(values["request"])
    except ValueError:
        raise ProtocolError(f"unknown request {values['request']} (known: {[r.name for r in Request]})") from None
    if not all(math.isfinite(values[k]) for k in ("a", "b", "c")):
        raise ProtocolError("garbled request: non-finite values")
    if values["request"] == Request.LOAD_MAP:
        if not 1 <= values["flags"] <= MAX_MAP_NAME:
            raise ProtocolError(f"a map name is 1..{MAX_MAP_NAME} bytes, the request announces {values['flags']}")
    elif values["flags"] & FLAG_FRAME and not (
        0 < values["frame_height"] <= MAX_FRAME_SIDE and 0 < values["frame_width"] <= MAX_FRAME_SIDE
    ):
        raise ProtocolError(
            f"a frame is 1..{MAX_FRAME_SIDE} px a side, got {values['frame_height']} x {values['frame_width']}"
        )
    return RequestFrame(**{k: v for k, v in values.items() if k not in ("magic", "version")})


def encode_map_name(name: str) -> bytes:
    """The bytes that follow a LOAD_MAP request; its ``flags`` is their length."""
    data = name.encode("utf-8")
    if not 1 <= len(data) <= MAX_MAP_NAME or "\x00" in name:
        raise ProtocolError(f"map name {name!r}: 1..{MAX_MAP_NAME} bytes of UTF-8, no NUL")
    return data


def decode_map_name(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("garbled LOAD_MAP request: the map name is not UTF-8") from None


def encode_state(state: Any) -> bytes:
    return pack_fields(_STATE, STATE_FIELDS, state, "state")


def decode_state(data: bytes | bytearray | memoryview) -> Any:
    data = bytes(data)
    if len(data) != STATE_SIZE:
        raise ProtocolError(f"state of {len(data)} bytes, protocol version {PROTOCOL_VERSION} has {STATE_SIZE}")
    values = dict(zip((f.name for f in STATE_FIELDS), _STATE.unpack(data), strict=True))
    if values["magic"] != STATE_MAGIC:
        raise ProtocolError(
            f"bad state magic 0x{values['magic']:08X} (expected 0x{STATE_MAGIC:08X}, 'EVTS'): is this port a TMNF "
            "instance running the EVO RL TMInterface plugin?"
        )
    if values["version"] != PROTOCOL_VERSION:
        raise ProtocolError(
            f"the game speaks protocol version {values['version']}, this EVO RL {PROTOCOL_VERSION}: install the "
            "matching plugin"
        )
    if values["size"] != STATE_SIZE:
        raise ProtocolError(f"state size field {values['size']}, protocol version {PROTOCOL_VERSION} has {STATE_SIZE}")
    floats = [f.name for f in STATE_FIELDS if f.code == "f" and not math.isfinite(values[f.name])]
    if floats or values["finished"] > 1 or values["wall_contact"] not in (0, 1, 255):
        raise ProtocolError(f"garbled state (step {values['step']}): non-finite {floats}")
    if values["frame_height"] > MAX_FRAME_SIDE or values["frame_width"] > MAX_FRAME_SIDE:
        raise ProtocolError(f"garbled state: a {values['frame_height']} x {values['frame_width']} frame")
    return State(**{k: v for k, v in values.items() if k not in ("magic", "version", "size")})


def state_to_car_state(s: Any) -> CarState:
    ground = tuple(bool(s.wheels_ground >> k & 1) for k in range(4))
    return CarState(
        position=(s.pos_x, s.pos_y, s.pos_z),
        heading=s.yaw,
        velocity=(s.vel_x, s.vel_y, s.vel_z),
        speed_kmh=s.speed_kmh,
        gear=s.gear,
        rpm=s.rpm,
        race_time_ms=s.race_time_ms,
        checkpoints=s.checkpoints,
        checkpoints_total=s.checkpoints_total,
        finished=bool(s.finished),
        wall_contact=s.wall_contact == 1,
        wheel_contact=ground,  # type: ignore[arg-type]
    )


# --------------------------------------------------------------------------- the plugin's protocol code

AS_TYPES = {"I": ("uint", "ReadUint32", "WriteUint32"), "i": ("int", "ReadInt32", "WriteInt32"),
            "H": ("uint16", "ReadUint16", "WriteUint16"), "B": ("uint8", "ReadUint8", "WriteUint8"),
            "f": ("float", "ReadFloat", "WriteFloat")}  # fmt: skip
GENERATED_MARK = "// @@EVO_RL_PROTOCOL@@"  # where the installer puts angelscript_source() in the plugin


def angelscript_source() -> str:
    """The plugin's request reader and state writer, written from :data:`REQUEST_FIELDS` and :data:`STATE_FIELDS`."""
    lines = [
        f"// EVO RL TMNF protocol version {PROTOCOL_VERSION}, generated from evo_rl/games/tmnf/protocol.py; do not edit.",
        "namespace Evo",
        "{",
        f"    const uint REQUEST_MAGIC = 0x{REQUEST_MAGIC:08X};",
        f"    const uint STATE_MAGIC = 0x{STATE_MAGIC:08X};",
        f"    const uint16 VERSION = {PROTOCOL_VERSION};",
        f"    const uint REQUEST_SIZE = {REQUEST_SIZE};",
        f"    const uint16 STATE_SIZE = {STATE_SIZE};",
    ]
    lines += [f"    const uint16 {r.name} = {r.value};" for r in Request]
    for cls, fields in (("Request", REQUEST_FIELDS), ("State", STATE_FIELDS)):
        lines += ["", f"    class {cls}", "    {"]
        lines += [f"        {AS_TYPES[f.code][0]} {f.name};  // {f.doc}" for f in fields if f.const is None]
        lines += ["    }"]
    lines += ["", "    // Reads one request (REQUEST_SIZE bytes available); false when its magic or version is wrong.",
              "    bool ReadRequest(Net::Socket@ sock, Request@ r)", "    {"]  # fmt: skip
    for f in REQUEST_FIELDS:
        reader = AS_TYPES[f.code][1]
        if f.const is not None:
            lines.append(f"        if (sock.{reader}() != {f.const}) return false;  // {f.name}")
        else:
            lines.append(f"        r.{f.name} = sock.{reader}();")
    lines += ["        return true;", "    }", "", "    void WriteState(Net::Socket@ sock, State@ s)", "    {"]
    for f in STATE_FIELDS:
        writer = AS_TYPES[f.code][2]
        value = str(f.const) if f.const is not None else f"s.{f.name}"
        lines.append(f"        sock.{writer}({value});")
    lines += ["    }", "}"]
    return "\n".join(lines) + "\n"
