"""The track text format (docs/tracks.md): one header line, header keys, one cross-section per line."""

from __future__ import annotations

import math

import numpy as np

from evo_rl.errors import TrackError
from evo_rl.sim.track import Track

FORMAT_HEADER = "evo-rl-track"
FORMAT_VERSION = 1
_HEADER_KEYS = ("name", "width", "height", "start", "finish", "checkpoints")


def format_track(track: Track) -> str:
    """The text of ``track`` in the file format; floats round-trip exactly."""
    if not track.name.strip() or any(c in track.name for c in "#\r\n"):
        raise TrackError(f"track name {track.name!r} must be one non-empty line without '#' to be saved")
    checkpoints = "".join(f" {int(c)}" for c in track.checkpoints)
    lines = [
        f"{FORMAT_HEADER} {FORMAT_VERSION}",
        f"name {track.name.strip()}",
        f"width {track.width!r}",
        f"height {track.height!r}",
        f"start {track.start}",
        f"finish {track.finish}",
        f"checkpoints{checkpoints}",
    ]
    lines += [
        f"{float(lx)!r} {float(ly)!r} {float(rx)!r} {float(ry)!r}"
        for (lx, ly), (rx, ry) in zip(track.left, track.right, strict=True)
    ]
    return "\n".join(lines) + "\n"


def parse_track(text: str, source: str) -> tuple[Track, dict[str, int]]:
    """The track in ``text`` and the line numbers of its header keys and first cross-section."""

    def fail(lineno: int, msg: str) -> TrackError:
        return TrackError(f"track file {source}, line {lineno}: {msg}")

    rows = [(n, line.split("#", 1)[0].strip()) for n, line in enumerate(text.splitlines(), start=1)]
    rows = [(n, line) for n, line in rows if line]
    if not rows:
        raise TrackError(f"track file {source} is empty; it must start with '{FORMAT_HEADER} {FORMAT_VERSION}'")
    n0, first = rows[0]
    parts = first.split()
    if parts[0] != FORMAT_HEADER or len(parts) != 2:
        raise fail(n0, f"expected the header '{FORMAT_HEADER} {FORMAT_VERSION}', found {first!r}")
    if parts[1] != str(FORMAT_VERSION):
        raise fail(n0, f"unsupported format version {parts[1]!r}; this EVO RL reads version {FORMAT_VERSION}")

    header: dict[str, tuple[int, str]] = {}
    body = 1
    while body < len(rows):
        n, line = rows[body]
        key, _, value = line.partition(" ")
        if key[:1].isdigit() or key[:1] in "+-.":
            break
        if key not in _HEADER_KEYS:
            raise fail(n, f"unknown key {key!r}; the header keys are {', '.join(_HEADER_KEYS)}")
        if key in header:
            raise fail(n, f"duplicate key {key!r} (first given on line {header[key][0]})")
        header[key] = (n, value.strip())
        body += 1
    missing = [k for k in _HEADER_KEYS if k not in header]
    if missing:
        raise TrackError(f"track file {source}: missing header key(s) {', '.join(missing)}")

    def number(key: str, kind: type) -> float | int:
        n, value = header[key]
        try:
            v = kind(value)
        except ValueError:
            raise fail(n, f"{key} must be {'an integer' if kind is int else 'a number'}, found {value!r}") from None
        if kind is float and not math.isfinite(v):
            raise fail(n, f"{key} must be finite, found {value!r}")
        return v

    name = header["name"][1]
    if not name:
        raise fail(header["name"][0], "name is empty")
    width, height = number("width", float), number("height", float)
    start, finish = number("start", int), number("finish", int)
    n_cp, cp_text = header["checkpoints"]
    try:
        checkpoints = [int(v) for v in cp_text.split()]
    except ValueError:
        raise fail(n_cp, f"checkpoints must be integers separated by spaces, found {cp_text!r}") from None

    sections = np.empty((len(rows) - body, 4))  # [M+1, 4] lx ly rx ry
    for row, (n, line) in enumerate(rows[body:]):
        parts = line.split()
        if len(parts) != 4:
            raise fail(n, f"expected a cross-section 'lx ly rx ry' (4 numbers), found {len(parts)} fields")
        try:
            sections[row] = [float(v) for v in parts]
        except ValueError:
            raise fail(n, f"cross-section values must be numbers, found {line!r}") from None
        if not np.isfinite(sections[row]).all():
            raise fail(n, f"cross-section values must be finite, found {line!r}")
    if len(sections) < 3:
        raise TrackError(f"track file {source}: needs at least 3 cross-section lines, found {len(sections)}")
    lines = {key: n for key, (n, _) in header.items()} | {"sections": rows[body][0]}
    track = Track(
        name, sections[:, :2], sections[:, 2:], width, int(start), int(finish), np.asarray(checkpoints), height
    )
    return track, lines
