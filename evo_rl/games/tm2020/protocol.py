"""The TrackMania 2020 telemetry protocols: EVO RL's versioned record and TMRL's 11 floats.

**EVO RL protocol** (``game.protocol: evo``). The OpenPlanet plugin (``evo_rl/games/tm2020/plugin``) serves TCP on
127.0.0.1 and writes one fixed-size, little-endian record per game frame; the client writes
fixed-size command frames back. Both layouts are the tables :data:`RECORD_FIELDS` and
:data:`COMMAND_FIELDS` below, and only there: the :mod:`struct` codecs here and the plugin's
``Record.as`` (see :func:`angelscript_source`) are generated from them, and a test fails when the
committed ``Record.as`` differs from the generated text.

**TMRL protocol** (``game.protocol: tmrl``). TMRL's ``TMRL_GrabData`` plugin serves TCP on
127.0.0.1:9000 and writes, per frame, 11 little-endian float32 (:data:`TMRL_FIELDS`); it takes no
commands.

Run ``python -m evo_rl.games.tm2020.protocol --write`` after changing a table, and raise
:data:`PROTOCOL_VERSION` when a layout changes.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import struct
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

from evo_rl.envs.source import CarState
from evo_rl.games.errors import ProtocolError

PROTOCOL_VERSION = 1
RECORD_MAGIC = int.from_bytes(b"EVRL", "little")  # the first four bytes of every record read "EVRL"
COMMAND_MAGIC = int.from_bytes(b"EVRC", "little")  # the first four bytes of every command read "EVRC"
DEFAULT_PORT = 9100  # the plugin's default port (its "Port" setting)
TMRL_PORT = 9000  # TMRL_GrabData's fixed port
WALL_UNKNOWN = 255  # ``wall_contact`` of a source that cannot tell (the real game)


@dataclass(frozen=True)
class FieldSpec:
    """One field of a binary layout: its name, :mod:`struct` code, meaning, and fixed value for header fields."""

    name: str
    code: str  # one of STRUCT_TYPES
    doc: str
    const: int | None = None  # header fields (magic, version, size) always hold this value


# struct code -> (Python type, AngelScript type, AngelScript Net::Socket reader)
STRUCT_TYPES: dict[str, tuple[type, str, str]] = {
    "I": (int, "uint", "ReadUint32"),
    "i": (int, "int", "ReadInt32"),
    "H": (int, "uint16", "ReadUint16"),
    "B": (int, "uint8", "ReadUint8"),
    "f": (float, "float", "ReadFloat"),
}


def _size(fields: tuple[FieldSpec, ...]) -> int:
    return struct.calcsize("<" + "".join(f.code for f in fields))


_RECORD_BODY: tuple[FieldSpec, ...] = (
    FieldSpec("frame", "I", "game frame counter, +1 per record, from 0 when the plugin starts"),
    FieldSpec("race_time_ms", "i", "race time, ms (negative during the start countdown)"),
    FieldSpec("pos_x", "f", "position x, m"),
    FieldSpec("pos_y", "f", "position y (up), m"),
    FieldSpec("pos_z", "f", "position z, m"),
    FieldSpec("dir_x", "f", "unit heading vector x"),
    FieldSpec("dir_y", "f", "unit heading vector y (up)"),
    FieldSpec("dir_z", "f", "unit heading vector z"),
    FieldSpec("vel_x", "f", "velocity x, m/s"),
    FieldSpec("vel_y", "f", "velocity y (up), m/s"),
    FieldSpec("vel_z", "f", "velocity z, m/s"),
    FieldSpec("speed_kmh", "f", "forward speed, km/h (negative when reversing)"),
    FieldSpec("gear", "B", "engaged gear"),
    FieldSpec("rpm", "f", "engine speed, rpm"),
    FieldSpec("gas", "f", "gas input the game applied, 0..1"),
    FieldSpec("brake", "f", "brake input the game applied, 0..1"),
    FieldSpec("steer", "f", "steering input the game applied, -1 (left) .. 1 (right)"),
    FieldSpec("checkpoints", "H", "checkpoints passed this run"),
    FieldSpec("checkpoints_total", "H", "checkpoints of the map, the finish not counted"),
    FieldSpec("finished", "B", "1 once the finish line is crossed this run, else 0"),
    FieldSpec("wall_contact", "B", "1 touching a wall, 0 not, 255 unknown"),
    FieldSpec("wheel_fl", "B", "1 when the front left wheel touches the ground"),
    FieldSpec("wheel_fr", "B", "1 when the front right wheel touches the ground"),
    FieldSpec("wheel_rl", "B", "1 when the rear left wheel touches the ground"),
    FieldSpec("wheel_rr", "B", "1 when the rear right wheel touches the ground"),
    FieldSpec("command_ack", "I", "sequence number of the last command handled on this connection, 0 before any"),
)
_RECORD_HEADER_SIZE = 8
RECORD_SIZE = _RECORD_HEADER_SIZE + _size(_RECORD_BODY)

RECORD_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("magic", "I", "0x4C525645, the bytes 'EVRL'", RECORD_MAGIC),
    FieldSpec("version", "H", "protocol version", PROTOCOL_VERSION),
    FieldSpec("size", "H", "record size in bytes, header included", RECORD_SIZE),
    *_RECORD_BODY,
)

COMMAND_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("magic", "I", "0x43525645, the bytes 'EVRC'", COMMAND_MAGIC),
    FieldSpec("version", "H", "protocol version", PROTOCOL_VERSION),
    FieldSpec("command", "H", "1 ping, 2 respawn, 3 restart the map"),
    FieldSpec("seq", "I", "sequence number, > 0; records echo it in command_ack once handled"),
)

TMRL_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("speed", "f", "speed, m/s (CSmScriptPlayer.Speed)"),
    FieldSpec("distance", "f", "distance driven, m"),
    FieldSpec("x", "f", "position x, m"),
    FieldSpec("y", "f", "position y (up), m"),
    FieldSpec("z", "f", "position z, m"),
    FieldSpec("steer", "f", "steering input, -1..1"),
    FieldSpec("gas", "f", "gas input, 0..1"),
    FieldSpec("brake", "f", "1 while braking, else 0"),
    FieldSpec("finished", "f", "1 on the finish screen, else 0"),
    FieldSpec("gear", "f", "engaged gear"),
    FieldSpec("rpm", "f", "engine speed, rpm"),
)


class Command(IntEnum):
    """Commands the client sends to the plugin (or the virtual game)."""

    PING = 1  # do nothing; the next record acknowledges it
    RESPAWN = 2  # start a new run from the start line: race time, checkpoints and finished are reset
    RESTART_MAP = 3  # reload the map, then start a new run


_RECORD_STRUCT = struct.Struct("<" + "".join(f.code for f in RECORD_FIELDS))
_COMMAND_STRUCT = struct.Struct("<" + "".join(f.code for f in COMMAND_FIELDS))
_TMRL_STRUCT = struct.Struct("<" + "".join(f.code for f in TMRL_FIELDS))
_HEADER_STRUCT = struct.Struct("<IHH")
COMMAND_SIZE = _COMMAND_STRUCT.size
TMRL_SIZE = _TMRL_STRUCT.size
assert _RECORD_STRUCT.size == RECORD_SIZE and TMRL_SIZE == 44


def _dataclass(name: str, fields: tuple[FieldSpec, ...], doc: str) -> Any:
    """A frozen dataclass with one field per non-constant entry of ``fields`` (default 0)."""
    spec = [(f.name, STRUCT_TYPES[f.code][0], dataclasses.field(default=STRUCT_TYPES[f.code][0](0))) for f in fields]
    cls = dataclasses.make_dataclass(name, [s for s in spec if _field(fields, s[0]).const is None], frozen=True)
    cls.__doc__ = doc
    cls.__module__ = __name__
    return cls


def _field(fields: tuple[FieldSpec, ...], name: str) -> FieldSpec:
    return next(f for f in fields if f.name == name)


Record = _dataclass("Record", RECORD_FIELDS, "One EVO RL record: the fields of RECORD_FIELDS without the header.")
TmrlRecord = _dataclass("TmrlRecord", TMRL_FIELDS, "One TMRL_GrabData record: the 11 floats of TMRL_FIELDS.")

# what each protocol's records let a car source report (names of evo_rl.envs.source.FIELDS)
EVO_PROVIDES = frozenset(
    {"position", "heading", "velocity", "speed", "gear", "rpm", "race_time", "checkpoints", "finish", "air", "inputs"}
)  # plus wall_contact where the game knows it (the virtual game: a record's wall_contact is 0 or 1, not unknown)
TMRL_PROVIDES = frozenset({"position", "speed", "gear", "rpm", "finish", "inputs"})


# --------------------------------------------------------------------------- EVO RL records


def pack_fields(layout: struct.Struct, fields: tuple[FieldSpec, ...], obj: Any, what: str) -> bytes:
    """The bytes of ``obj`` in the table ``fields``: constant fields (magic, version, size) filled in."""
    values = [f.const if f.const is not None else getattr(obj, f.name) for f in fields]
    try:
        return layout.pack(*values)
    except struct.error as e:
        raise ProtocolError(f"cannot encode {what} {obj}: {e}") from e


def encode_record(record: Any) -> bytes:
    """The bytes of ``record`` (a :data:`Record`), header included."""
    return pack_fields(_RECORD_STRUCT, RECORD_FIELDS, record, "record")


def check_header(header: bytes) -> int:
    """Check the first 8 bytes of a record (magic, version, size); return the record size."""
    if len(header) < _RECORD_HEADER_SIZE:
        raise ProtocolError(f"truncated record: {len(header)} bytes, the header alone has {_RECORD_HEADER_SIZE}")
    magic, version, size = _HEADER_STRUCT.unpack_from(header)
    if magic != RECORD_MAGIC:
        raise ProtocolError(
            f"bad magic number 0x{magic:08X} (expected 0x{RECORD_MAGIC:08X}, 'EVRL'): these bytes are not an EVO RL "
            "record; check that the port is the EVO RL plugin's, or use game.protocol: tmrl for TMRL's plugin"
        )
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            f"the plugin speaks protocol version {version}, this EVO RL speaks version {PROTOCOL_VERSION}: "
            "install the matching plugin with `evo-rl game tm2020 install-plugin` and reload it in OpenPlanet"
        )
    if size != RECORD_SIZE:
        raise ProtocolError(f"record size field is {size} bytes, protocol version {version} has {RECORD_SIZE}")
    return size


def decode_record(data: bytes | bytearray | memoryview) -> Any:
    """The :data:`Record` in ``data`` (exactly :data:`RECORD_SIZE` bytes); :class:`ProtocolError` when invalid."""
    data = bytes(data)
    check_header(data)
    if len(data) != RECORD_SIZE:
        what = "truncated" if len(data) < RECORD_SIZE else "overlong"
        raise ProtocolError(f"{what} record: {len(data)} bytes, protocol version {PROTOCOL_VERSION} has {RECORD_SIZE}")
    values = _RECORD_STRUCT.unpack(data)
    body = {f.name: v for f, v in zip(RECORD_FIELDS, values, strict=True) if f.const is None}
    bad = [k for k, v in body.items() if isinstance(v, float) and not math.isfinite(v)]
    flags = {k: body[k] for k in ("finished", "wheel_fl", "wheel_fr", "wheel_rl", "wheel_rr") if body[k] > 1}
    if body["wall_contact"] not in (0, 1, WALL_UNKNOWN):
        flags["wall_contact"] = body["wall_contact"]
    if bad or flags:
        raise ProtocolError(f"garbled record (frame {body['frame']}): non-finite {bad}, out-of-range flags {flags}")
    return Record(**body)


def record_to_car_state(record: Any) -> CarState:
    """The :class:`CarState` of an EVO RL record."""
    return CarState(
        position=(record.pos_x, record.pos_y, record.pos_z),
        heading=math.atan2(record.dir_z, record.dir_x),
        velocity=(record.vel_x, record.vel_y, record.vel_z),
        speed_kmh=record.speed_kmh,
        gear=record.gear,
        rpm=record.rpm,
        race_time_ms=record.race_time_ms,
        checkpoints=record.checkpoints,
        checkpoints_total=record.checkpoints_total,
        finished=bool(record.finished),
        wall_contact=record.wall_contact == 1,
        wheel_contact=(bool(record.wheel_fl), bool(record.wheel_fr), bool(record.wheel_rl), bool(record.wheel_rr)),
        inputs=(record.gas, record.brake, record.steer),
    )


# --------------------------------------------------------------------------- commands


def encode_command(command: Command | int, seq: int) -> bytes:
    """The bytes of one command frame."""
    if not 0 < seq < 2**32:
        raise ProtocolError(f"command sequence numbers run from 1 to 2**32 - 1, got {seq}")
    return _COMMAND_STRUCT.pack(COMMAND_MAGIC, PROTOCOL_VERSION, int(Command(command)), seq)


def decode_command(data: bytes | bytearray | memoryview) -> tuple[Command, int]:
    """``(command, seq)`` of one command frame (exactly :data:`COMMAND_SIZE` bytes)."""
    data = bytes(data)
    if len(data) != COMMAND_SIZE:
        what = "truncated" if len(data) < COMMAND_SIZE else "overlong"
        raise ProtocolError(f"{what} command frame: {len(data)} bytes, expected {COMMAND_SIZE}")
    magic, version, command, seq = _COMMAND_STRUCT.unpack(data)
    if magic != COMMAND_MAGIC:
        raise ProtocolError(f"bad command magic number 0x{magic:08X} (expected 0x{COMMAND_MAGIC:08X}, 'EVRC')")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(f"command of protocol version {version}; this side speaks version {PROTOCOL_VERSION}")
    try:
        return Command(command), seq
    except ValueError:
        known = ", ".join(f"{c.value} {c.name}" for c in Command)
        raise ProtocolError(f"unknown command {command} (known: {known})") from None


# --------------------------------------------------------------------------- TMRL records


def encode_tmrl(record: Any) -> bytes:
    """The 44 bytes of a :data:`TmrlRecord`."""
    return _TMRL_STRUCT.pack(*(float(getattr(record, f.name)) for f in TMRL_FIELDS))


def decode_tmrl(data: bytes | bytearray | memoryview) -> Any:
    """The :data:`TmrlRecord` in ``data`` (exactly 44 bytes); :class:`ProtocolError` when invalid."""
    data = bytes(data)
    if len(data) != TMRL_SIZE:
        what = "truncated" if len(data) < TMRL_SIZE else "overlong"
        raise ProtocolError(f"{what} TMRL record: {len(data)} bytes, TMRL_GrabData writes {TMRL_SIZE} (11 float32)")
    rec = TmrlRecord(*_TMRL_STRUCT.unpack(data))
    bad = [f.name for f in TMRL_FIELDS if not math.isfinite(getattr(rec, f.name))]
    if bad or rec.finished not in (0.0, 1.0) or rec.brake not in (0.0, 1.0) or rec.gear < 0:
        raise ProtocolError(
            f"garbled TMRL record {rec}: fields must be finite, finished and brake 0 or 1, gear >= 0; "
            "is the port TMRL_GrabData's, and does it send 11 floats per frame?"
        )
    return rec


def tmrl_to_car_state(record: Any) -> CarState:
    """The :class:`CarState` of a TMRL record (see :data:`TMRL_PROVIDES` for what it fills)."""
    return CarState(
        position=(record.x, record.y, record.z),
        speed_kmh=record.speed * 3.6,
        gear=int(record.gear),
        rpm=record.rpm,
        finished=record.finished == 1.0,
        inputs=(record.gas, record.brake, record.steer),
    )


# --------------------------------------------------------------------------- the plugin's Record.as

RECORD_AS = "Record.as"


def angelscript_source() -> str:
    """The text of the plugin's ``Record.as``: the record writer and command reader, from the tables."""
    t = {code: spec[1] for code, spec in STRUCT_TYPES.items()}

    def members(fields: list[FieldSpec]) -> list[str]:
        decls = [f"{t[f.code]} {f.name};" for f in fields]
        width = max(len(d) for d in decls)
        return [f"        {d:<{width}}  // {f.doc}" for d, f in zip(decls, fields, strict=True)]

    lines = [
        f"// Record.as: the EVO RL record and command layouts of protocol version {PROTOCOL_VERSION}, little-endian.",
        "// Generated from the tables of evo_rl/games/tm2020/protocol.py by",
        "// `python -m evo_rl.games.tm2020.protocol --write`; do not edit (a test compares the two).",
        "",
        "namespace EvoRecord",
        "{",
        f"    const uint MAGIC = 0x{RECORD_MAGIC:08X};  // 'EVRL'",
        f"    const uint16 VERSION = {PROTOCOL_VERSION};",
        f"    const uint16 SIZE = {RECORD_SIZE};",
        "",
        "    // The values of one record; Telemetry.as and Main.as set them each frame.",
        "    class Values",
        "    {",
    ]
    body = [f for f in RECORD_FIELDS if f.const is None]
    lines += members(body)
    lines += [
        "    }",
        "",
        "    // Appends one record to buf, in the order of the table.",
        "    void Write(MemoryBuffer@ buf, Values@ v)",
        "    {",
        "        buf.Write(MAGIC);",
        "        buf.Write(VERSION);",
        "        buf.Write(SIZE);",
    ]
    lines += [f"        buf.Write(v.{f.name});" for f in body]
    lines += [
        "    }",
        "}",
        "",
        "namespace EvoCommand",
        "{",
        f"    const uint MAGIC = 0x{COMMAND_MAGIC:08X};  // 'EVRC'",
        f"    const uint16 VERSION = {PROTOCOL_VERSION};",
        f"    const uint SIZE = {COMMAND_SIZE};",
    ]
    lines += [f"    const uint16 {c.name} = {c.value};" for c in Command]
    cmd_body = [f for f in COMMAND_FIELDS if f.const is None]
    lines += ["", "    class Frame", "    {"]
    lines += members(cmd_body)
    lines += [
        "    }",
        "",
        "    // Reads one command frame (SIZE bytes must be available); false when its magic or version is wrong.",
        "    bool Read(Net::Socket@ sock, Frame@ c)",
        "    {",
    ]
    for f in COMMAND_FIELDS:
        reader = STRUCT_TYPES[f.code][2]
        target = f"{t[f.code]} {f.name}" if f.const is not None else f"c.{f.name}"
        lines.append(f"        {target} = sock.{reader}();")
    lines += ["        return magic == MAGIC && version == VERSION;", "    }", "}", ""]
    return "\n".join(lines)


def markdown_table(fields: tuple[FieldSpec, ...]) -> str:
    """A Markdown table of a layout (offset, field, type, meaning), as docs/games.md shows it."""
    names = {"I": "uint32", "i": "int32", "H": "uint16", "B": "uint8", "f": "float32"}
    rows = ["| offset | field | type | meaning |", "|---:|---|---|---|"]
    offset = 0
    for f in fields:
        value = f" (always {f.const})" if f.const is not None and f.name != "magic" else ""
        rows.append(f"| {offset} | `{f.name}` | {names[f.code]} | {f.doc}{value} |")
        offset += struct.calcsize("<" + f.code)
    return "\n".join(rows)


def plugin_source_dir() -> Path:
    """``evo_rl/games/tm2020/plugin`` of the source tree this package runs from."""
    return Path(__file__).resolve().parent / "plugin"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print or write the plugin's Record.as, generated from the tables.")
    parser.add_argument(
        "--write", action="store_true", help=f"write evo_rl/games/tm2020/plugin/{RECORD_AS} instead of printing"
    )
    args = parser.parse_args(argv)
    text = angelscript_source()
    if args.write:
        path = plugin_source_dir() / RECORD_AS
        path.write_text(text, encoding="utf-8", newline="\n")
        print(f"wrote {path}")
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
