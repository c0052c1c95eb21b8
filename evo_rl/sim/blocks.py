"""TrackMania-style blocks on a 32 m grid, and the strip of quads a list of them makes.

A block is entered at the middle of an edge of a grid cell, heading across the cell,
and left at the middle of an edge of another cell, heading along one of the four grid
directions. Its centre line is made of straight lines and circular arcs:

| code | block | centre line | cells (forward x left) |
|---|---|---|---|
| ``S<n>`` | straight, ``n`` cells | line ``32 n`` m | ``n x 1`` |
| ``L<k>`` / ``R<k>`` | 90° curve left / right, ``k = 1..3`` | arc of radius ``32 k - 16`` (16, 48, 80 m) | ``k x k`` |
| ``ZL<n>`` / ``ZR<n>`` | S-bend: shift one cell left / right over ``n = 2, 3`` cells | two opposite arcs of radius 40 / 80 m | ``n x 2`` |
| ``HL<k>`` / ``HR<k>`` | 180° hairpin, ``k = 1, 2`` | half circle of radius ``16 k`` | ``k x (k + 1)`` |

A track is a start block (``S1``, start line ``start_offset`` metres in), the blocks,
a finish block (``S1``, finish line ``finish_offset`` metres in) and a run-off block
(``S1``); the strip is closed at both ends. Cross-sections are emitted at block joints
and every ``arc_step_deg`` degrees along arcs; consecutive straight pieces merge into
one long quad unless a gate sits at their joint.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from evo_rl.errors import TrackError
from evo_rl.sim.track import Track, even_checkpoints

CELL = 32.0  # m, grid cell size
HALF = CELL / 2
ARC_STEP_DEG = 7.5  # largest angle between two cross-sections on an arc
START_OFFSET = 8.0  # m from the back of the start block to the start line
FINISH_OFFSET = 16.0  # m from the entry of the finish block to the finish line

_DIRS = ((1, 0), (0, 1), (-1, 0), (0, -1))  # heading h in quarter turns: +x, +y, -x, -y
_SIZES = {"straight": range(1, 33), "curve": range(1, 4), "sbend": range(2, 4), "hairpin": range(1, 3)}
_CODE = re.compile(r"^(S|L|R|ZL|ZR|HL|HR)(\d+)$")


@dataclass(frozen=True)
class Block:
    """One block: ``kind`` in straight / curve / sbend / hairpin, its ``size`` in cells, and
    ``side`` (+1 turns or shifts left, -1 right, 0 for straights)."""

    kind: str
    size: int
    side: int = 0

    def __post_init__(self) -> None:
        if self.kind not in _SIZES:
            raise TrackError(f"unknown block kind {self.kind!r}; kinds: {', '.join(_SIZES)}")
        sizes = _SIZES[self.kind]
        if self.size not in sizes:
            raise TrackError(f"{self.kind} blocks have sizes {sizes.start}..{sizes.stop - 1}, got {self.size}")
        if (self.kind == "straight") != (self.side == 0) or self.side not in (-1, 0, 1):
            raise TrackError(f"{self.kind} block needs side {'0' if self.kind == 'straight' else '+1 or -1'}")

    @property
    def code(self) -> str:
        """Short name, e.g. ``S4``, ``L1``, ``ZR2``, ``HL1``."""
        lr = "L" if self.side > 0 else "R"
        prefix = {"straight": "S", "curve": lr, "sbend": "Z" + lr, "hairpin": "H" + lr}[self.kind]
        return f"{prefix}{self.size}"

    @property
    def radius(self) -> float:
        """Tightest centre-line radius, m (``inf`` for straights)."""
        if self.kind == "curve":
            return CELL * self.size - HALF
        if self.kind == "sbend":
            forward = CELL * self.size
            return (forward**2 + CELL**2) / (4 * CELL)
        if self.kind == "hairpin":
            return HALF * self.size
        return math.inf

    def pieces(self) -> list[tuple[float, float]]:
        """The centre line as ``(length m, curvature 1/m)`` pieces; curvature > 0 turns left."""
        r = self.radius
        if self.kind == "straight":
            return [(CELL * self.size, 0.0)]
        if self.kind == "curve":
            return [(0.5 * math.pi * r, self.side / r)]
        if self.kind == "sbend":
            angle = 2 * math.atan(CELL / (CELL * self.size))
            return [(r * angle, self.side / r), (r * angle, -self.side / r)]
        return [(math.pi * r, self.side / r)]

    def footprint(self) -> list[tuple[int, int]]:
        """Cells ``(forward, left)`` the block covers, relative to its entry cell ``(0, 0)``."""
        n, s = self.size, self.side
        if self.kind == "straight":
            return [(i, 0) for i in range(n)]
        if self.kind == "curve":
            return [(i, s * j) for i in range(n) for j in range(n)]
        if self.kind == "sbend":
            return [(i, s * j) for i in range(n) for j in range(2)]
        return [(i, s * j) for i in range(n) for j in range(n + 1)]

    def exit(self) -> tuple[int, int, int]:
        """``(forward, left, turn)``: the next block's entry cell and the heading change in quarter turns."""
        n, s = self.size, self.side
        if self.kind == "straight":
            return n, 0, 0
        if self.kind == "curve":
            return n - 1, s * n, s
        if self.kind == "sbend":
            return n, s, 0
        return -1, s * n, 2


def parse_blocks(text: str) -> list[Block]:
    """Blocks from codes separated by spaces, e.g. ``"S4 R1 S2 ZL2 HR1"``."""
    blocks = []
    for pos, code in enumerate(text.split()):
        m = _CODE.match(code.upper())
        if m is None:
            raise TrackError(
                f"block {pos} {code!r} is not a block code; use S<n>, L<k>, R<k>, ZL<n>, ZR<n>, HL<k> or HR<k>"
            )
        prefix, size = m.group(1), int(m.group(2))
        side = 0 if prefix == "S" else (1 if prefix.endswith("L") else -1)
        kind = {"S": "straight", "L": "curve", "R": "curve", "Z": "sbend", "H": "hairpin"}[prefix[0]]
        try:
            blocks.append(Block(kind, size, side))
        except TrackError as e:
            raise TrackError(f"block {pos} {code!r}: {e}") from None
    return blocks


def blocks_code(blocks: list[Block]) -> str:
    """The codes of ``blocks``, separated by spaces (inverse of :func:`parse_blocks`)."""
    return " ".join(b.code for b in blocks)


# ---------------------------------------------------------------------- placing blocks on the grid


@dataclass(frozen=True)
class Pose:
    """Where a block is entered: the entry cell and the heading in quarter turns (0 = +x)."""

    cell: tuple[int, int]
    heading: int

    def to_world(self, forward: int, left: int) -> tuple[int, int]:
        """Grid cell at ``(forward, left)`` cells from this pose's entry cell."""
        fx, fy = _DIRS[self.heading % 4]
        lx, ly = _DIRS[(self.heading + 1) % 4]
        return self.cell[0] + forward * fx + left * lx, self.cell[1] + forward * fy + left * ly

    def entry_point(self) -> np.ndarray:
        """Middle of the cell edge the block is entered through, m."""
        fx, fy = _DIRS[self.heading % 4]
        cx, cy = cell_center(self.cell)
        return np.array([cx - HALF * fx, cy - HALF * fy])


def cell_center(cell: tuple[int, int]) -> tuple[float, float]:
    """Centre of grid cell ``(a, b)``: ``(32 a + 16, 32 b)`` m, so the start block is entered at the origin."""
    return CELL * cell[0] + HALF, CELL * cell[1]


def place(block: Block, pose: Pose) -> tuple[list[tuple[int, int]], Pose]:
    """The grid cells ``block`` covers when entered at ``pose``, and the pose after it."""
    cells = [pose.to_world(i, j) for i, j in block.footprint()]
    fwd, left, turn = block.exit()
    return cells, Pose(pose.to_world(fwd, left), (pose.heading + turn) % 4)


def full_layout(blocks: list[Block]) -> list[Block]:
    """Start block, ``blocks``, finish block and run-off block."""
    straight = Block("straight", 1)
    return [straight, *blocks, straight, straight]


def occupy(blocks: list[Block], pose: Pose | None = None) -> tuple[dict[tuple[int, int], int], list[Pose]]:
    """Place ``blocks`` one after the other; raise :class:`TrackError` if two share a cell.

    Returns the cell -> block index map and each block's entry pose.
    """
    pose = pose or Pose((0, 0), 0)
    occupied: dict[tuple[int, int], int] = {}
    poses = []
    for n, block in enumerate(blocks):
        poses.append(pose)
        cells, pose = place(block, pose)
        for c in cells:
            if c in occupied:
                other = occupied[c]
                raise TrackError(
                    f"block {n} ({block.code}) overlaps block {other} ({blocks[other].code}) at grid cell {c}"
                )
            occupied[c] = n
    return occupied, poses


# ---------------------------------------------------------------------- geometry


def _centre_line(
    blocks: list[Block], poses: list[Pose], arc_step_deg: float, start_offset: float, finish_offset: float
) -> tuple[np.ndarray, np.ndarray, list[int], int, int]:
    """Centre points and headings of every cross-section of the full layout.

    Returns points ``[N, 2]``, headings ``[N]`` (radians), the indices of block joints,
    and the indices of the start and finish lines.
    """
    points: list[np.ndarray] = [poses[0].entry_point()]
    headings: list[float] = [0.5 * math.pi * poses[0].heading]
    joints: list[int] = []
    start = finish = -1
    last = len(blocks) - 1
    for n, (block, pose) in enumerate(zip(blocks, poses, strict=True)):
        p = pose.entry_point()
        theta = 0.5 * math.pi * pose.heading
        if n == 0 or n == last - 1:  # start / finish block: one extra cross-section for the line
            offset = start_offset if n == 0 else finish_offset
            points.append(p + offset * np.array([math.cos(theta), math.sin(theta)]))
            headings.append(theta)
            if n == 0:
                start = len(points) - 1
            else:
                finish = len(points) - 1
        for length, curvature in block.pieces():
            if curvature == 0.0:
                p = p + length * np.array([math.cos(theta), math.sin(theta)])
                points.append(p)
                headings.append(theta)
                continue
            r = 1.0 / abs(curvature)
            side = math.copysign(1.0, curvature)
            angle = length / r
            centre = p + side * r * np.array([-math.sin(theta), math.cos(theta)])
            steps = max(1, math.ceil(math.degrees(angle) / arc_step_deg - 1e-9))
            for k in range(1, steps + 1):
                th = theta + side * angle * k / steps
                points.append(centre - side * r * np.array([-math.sin(th), math.cos(th)]))
                headings.append(th)
            theta += side * angle
            p = points[-1]
        if n < last:  # snap the joint onto the grid (removes round-off of the arcs)
            nxt = poses[n + 1]
            points[-1] = nxt.entry_point()
            headings[-1] = 0.5 * math.pi * nxt.heading
            joints.append(len(points) - 1)
    return np.array(points), np.unwrap(np.array(headings)), joints, start, finish


def build_track(
    blocks: list[Block] | str,
    name: str,
    width: float = 20.0,
    n_checkpoints: int = 4,
    height: float = 9.0,
    arc_step_deg: float = ARC_STEP_DEG,
    start_offset: float = START_OFFSET,
    finish_offset: float = FINISH_OFFSET,
) -> Track:
    """The validated :class:`Track` of ``blocks`` (a list or a code string such as ``"S4 R1 S2"``).

    Start, finish and run-off blocks are added around ``blocks``; ``n_checkpoints``
    gates sit at block joints spread evenly by arc length.
    """
    if isinstance(blocks, str):
        blocks = parse_blocks(blocks)
    if not 0 < start_offset < CELL or not 0 < finish_offset < CELL:
        raise TrackError(f"start_offset and finish_offset must lie inside a block (0..{CELL:g} m)")
    layout = full_layout(list(blocks))
    _, poses = occupy(layout)
    center, heading, joints, start, finish = _centre_line(layout, poses, arc_step_deg, start_offset, finish_offset)
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(center, axis=0), axis=1))])
    candidates = np.array([j for j in joints if start < j < finish], dtype=np.int64)
    if n_checkpoints > len(candidates):
        raise TrackError(
            f"track {name!r}: {n_checkpoints} checkpoints asked but only {len(candidates)} block joints "
            "lie between start and finish; add blocks or ask for fewer"
        )
    checkpoints = even_checkpoints(s, start, finish, n_checkpoints, candidates)

    # drop cross-sections inside straight runs unless a line or gate sits there
    keep = np.ones(len(center), dtype=bool)
    d_before = np.diff(heading)[:-1]
    d_after = np.diff(heading)[1:]
    keep[1:-1] = (np.abs(d_before) > 1e-12) | (np.abs(d_after) > 1e-12)
    keep[[start, finish, *checkpoints]] = True
    remap = np.cumsum(keep) - 1  # old index -> new index
    center, heading = center[keep], heading[keep]

    normal = np.stack([-np.sin(heading), np.cos(heading)], axis=1)  # [M+1, 2] left normals
    track = Track(
        name,
        center + 0.5 * width * normal,
        center - 0.5 * width * normal,
        width,
        int(remap[start]),
        int(remap[finish]),
        remap[checkpoints],
        height,
    )
    try:
        track.validate()
    except TrackError as e:
        raise TrackError(f"track {name!r} ({blocks_code(list(blocks))}): {e}") from None
    return track
