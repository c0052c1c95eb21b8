"""Built-in tracks, hand-designed from blocks, and ``get_track(name_or_path)``.

The block lists never change, so a built-in name always means the same track. Codes
are explained in :mod:`evo_rl.sim.blocks` (``S<n>`` straight, ``L<k>``/``R<k>``
curves, ``ZL<n>``/``ZR<n>`` S-bends, ``HL<k>``/``HR<k>`` hairpins).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from evo_rl.errors import TrackError
from evo_rl.sim.blocks import build_track
from evo_rl.sim.track import Track


@dataclass(frozen=True)
class TrackSpec:
    """A built-in track: its blocks, checkpoint count, width and a one-line description."""

    blocks: str
    checkpoints: int
    description: str
    width: float = 20.0


BUILTIN: dict[str, TrackSpec] = {
    "evo-test": TrackSpec(
        "S7 R1 S3 R2 S1 ZL2 S3 L1 S2 R1 S5 R3 S3 R1 S3 HR1 S2 L1 S1 L1 S3",
        5,
        "the default: long straights into 1-block curves and a hairpin, a fast 3-block curve, a closing spiral",
    ),
    "evo-mini": TrackSpec(
        "S5 R1 S2 R2 ZL2 S1 L1 S2", 2, "short and easy, for quick tests: a braking point, an S-bend, a last tight curve"
    ),
    "evo-technical": TrackSpec(
        "S2 L1 R1 S1 ZR2 R1 L1 S2 HL1 S1 R1 ZL2 L1 S1 R1 L1 S3 R1 L1 S1 R1 S2",
        6,
        "tight and twisty: chains of 1-block curves, S-bends and a hairpin with short straights",
    ),
    "evo-fast": TrackSpec(
        "S14 L3 S6 ZR3 S4 L3 S8 L2 S4 ZR3 S3 L3 S6", 4, "long straights, wide 3-block curves and long S-bends"
    ),
    "evo-hairpins": TrackSpec(
        "S4 HL1 S4 HR1 S4 HL1 S4 HR1 S5 R1 S4 R1 S6 HL2 S6", 5, "a switchback climb of four hairpins, then a wide one"
    ),
}


def list_tracks() -> list[str]:
    """Names of the built-in tracks."""
    return list(BUILTIN)


@cache
def _builtin(name: str) -> Track:
    spec = BUILTIN[name]
    return build_track(spec.blocks, name, width=spec.width, n_checkpoints=spec.checkpoints)


_GENERATED = re.compile(r"gen-(\d+)(?:-b(\d+))?(?:-r([0-9.]+))?(?:-w([0-9.]+))?(?:-c(\d+))?")


def get_track(name_or_path: str | Path) -> Track:
    """A built-in track by name (built once, then cached: do not modify it), a generated track by its name
    (``gen-<seed>[-b<blocks>][-r<min radius>][-w<width>][-c<checkpoints>]``, as ``env.tracks`` names them;
    unnamed knobs at their defaults: 16 blocks, 16 m, 20 m, 4 checkpoints) or a ``.track`` file.

    Raises :class:`TrackError` naming the built-in tracks when none matches.
    """
    key = str(name_or_path)
    if key in BUILTIN:
        return _builtin(key)
    m = _GENERATED.fullmatch(key)
    if m is not None:
        seed, blocks, radius, width, cps = m.groups()
        return _generated(int(seed), int(blocks or 16), float(radius or 16.0), float(width or 20.0), int(cps or 4))
    path = Path(key).expanduser()
    if path.is_file():
        return Track.load(path)
    if path.suffix == ".track" or path.parent != Path("."):
        raise TrackError(f"track file {path} does not exist")
    raise TrackError(
        f"unknown track {key!r}; built-in tracks: {', '.join(BUILTIN)}; a generated track: gen-<seed> "
        "(e.g. gen-7, gen-7-b12-r32); or give a path to a .track file"
    )


@cache
def _generated(seed: int, n_blocks: int, min_radius: float, width: float, checkpoints: int) -> Track:
    from evo_rl.sim.generate import generated_track

    return generated_track(seed, n_blocks, min_radius, width, checkpoints)
