"""Random block tracks from a seed.

``generate_track(seed, ...)`` lays blocks one after another on the 32 m grid, choosing
each at random among those that fit (grid occupancy: no two blocks share a cell) and
backing up when it reaches a dead end. The same seed and knobs always give the same
track, and every returned track has passed :meth:`Track.validate`.
"""

from __future__ import annotations

import math

import numpy as np

from evo_rl.errors import TrackError
from evo_rl.sim.blocks import CELL, Block, Pose, build_track, place
from evo_rl.sim.track import MIN_CLEARANCE, Track

# relative odds of each block family; straights of 1..4 cells, curves, S-bends, hairpins
_FAMILY_WEIGHT = {"straight": 0.34, "curve": 0.44, "sbend": 0.14, "hairpin": 0.08}
_STRAIGHT_SIZES = (1, 2, 3, 4)
_MAX_WIDTH = CELL - 2 * MIN_CLEARANCE  # roads in neighbouring cells keep 2 * clearance between walls
_NODE_BUDGET = 4000  # blocks tried per attempt before starting over
DEFAULT_BLOCKS, DEFAULT_RADIUS, DEFAULT_WIDTH, DEFAULT_CHECKPOINTS = 16, 16.0, 20.0, 4  # generate_track's knobs


def block_catalogue(min_radius: float = 0.0, width: float = 20.0) -> list[Block]:
    """Every block the generator may use: no centre-line radius below ``min_radius``, and at
    least ``MIN_CLEARANCE`` metres of inner wall radius at this ``width``."""
    blocks = [Block("straight", n) for n in _STRAIGHT_SIZES]
    for kind, sizes in (("curve", (1, 2, 3)), ("sbend", (2, 3)), ("hairpin", (1, 2))):
        for size in sizes:
            for side in (1, -1):
                b = Block(kind, size, side)
                if b.radius >= min_radius - 1e-9 and b.radius - 0.5 * width >= MIN_CLEARANCE - 1e-9:
                    blocks.append(b)
    return blocks


def _usable_catalogue(min_radius: float, width: float) -> list[Block]:
    catalogue = block_catalogue(min_radius, width)
    if all(b.kind == "straight" for b in catalogue):
        raise TrackError(
            f"min_radius {min_radius:g} m at width {width:g} m leaves no curve blocks (centre-line radii: "
            "16 m 1-block curves and hairpins, 32 m 2-block hairpins, 40 m short S-bends, 48 m 2-block curves, "
            "80 m 3-block curves and long S-bends); lower min_radius"
        )
    return catalogue


def _weights(catalogue: list[Block]) -> np.ndarray:
    family_count = {k: sum(b.kind == k for b in catalogue) for k in _FAMILY_WEIGHT}
    w = np.array([_FAMILY_WEIGHT[b.kind] / family_count[b.kind] for b in catalogue])
    return w / w.sum()


class _OutOfBudget(Exception):
    pass


def generate_blocks(
    rng: np.random.Generator, n_blocks: int, min_radius: float = 0.0, width: float = 20.0
) -> list[Block]:
    """``n_blocks`` random blocks that fit on the grid after a start block, with room for the
    finish and run-off blocks. Raises :class:`TrackError` if no layout is found."""
    catalogue = _usable_catalogue(min_radius, width)
    weights = _weights(catalogue)
    start = Block("straight", 1)
    start_cells, pose0 = place(start, Pose((0, 0), 0))
    # the cell behind the start stays empty: the strip's closed end faces it
    occupied = {*start_cells, (-1, 0)}
    chosen: list[Block] = []
    budget = [_NODE_BUDGET]

    def finish_fits(pose: Pose) -> bool:
        # finish block, run-off block, and the empty cell the closed end faces
        cells, _ = place(Block("straight", 3), pose)
        return not occupied.intersection(cells)

    def search(pose: Pose, prev: Block | None) -> bool:
        if len(chosen) == n_blocks:
            return finish_fits(pose)
        order = rng.choice(len(catalogue), size=len(catalogue), replace=False, p=weights)
        for idx in order:
            block = catalogue[idx]
            if block.kind == "straight" and (prev is None or prev.kind == "straight"):
                continue  # two straights in a row are one longer straight
            budget[0] -= 1
            if budget[0] < 0:
                raise _OutOfBudget
            cells, nxt = place(block, pose)
            if occupied.intersection(cells):
                continue
            occupied.update(cells)
            chosen.append(block)
            if search(nxt, block):
                return True
            chosen.pop()
            occupied.difference_update(cells)
        return False

    try:
        if search(pose0, start):
            return list(chosen)
    except _OutOfBudget:
        pass
    raise TrackError(f"no layout of {n_blocks} blocks found within {_NODE_BUDGET} tries")


def generate_track(
    seed: int,
    n_blocks: int = 16,
    min_radius: float = 16.0,
    n_checkpoints: int = 4,
    width: float = 20.0,
    name: str | None = None,
    max_attempts: int = 20,
) -> Track:
    """A random valid block track; the same arguments always give the same track.

    Knobs: ``n_blocks`` (length), ``min_radius`` (tightest centre-line radius allowed, m:
    16 allows 1-block curves and hairpins, 48 only wide curves), ``n_checkpoints`` and
    ``width``. Layouts that fail validation are discarded; after ``max_attempts``
    failures :class:`TrackError` is raised.
    """
    return generate(seed, n_blocks, min_radius, n_checkpoints, width, name, max_attempts)[0]


def generate(
    seed: int,
    n_blocks: int = 16,
    min_radius: float = 16.0,
    n_checkpoints: int = 4,
    width: float = 20.0,
    name: str | None = None,
    max_attempts: int = 20,
) -> tuple[Track, list[Block]]:
    """As :func:`generate_track`, also returning the blocks between the start and finish blocks."""
    if n_blocks < 1:
        raise TrackError(f"n_blocks must be >= 1, got {n_blocks}")
    if not 0 <= n_checkpoints <= n_blocks:
        raise TrackError(f"n_checkpoints must be between 0 and n_blocks = {n_blocks}, got {n_checkpoints}")
    if not (math.isfinite(width) and 0 < width <= _MAX_WIDTH):
        raise TrackError(f"width must be in (0, {_MAX_WIDTH:g}] m for block tracks, got {width}")
    _usable_catalogue(min_radius, width)  # fail at once on knobs that leave no curves
    rng = np.random.default_rng(seed)
    name = name or f"generated-{seed}"
    last_error = ""
    for _ in range(max_attempts):
        try:
            blocks = generate_blocks(rng, n_blocks, min_radius, width)
            return build_track(blocks, name, width=width, n_checkpoints=n_checkpoints), blocks
        except TrackError as e:
            last_error = str(e)
    raise TrackError(f"seed {seed}: no valid track of {n_blocks} blocks in {max_attempts} attempts ({last_error})")


def generated_name(seed: int, n_blocks: int, min_radius: float, width: float, checkpoints: int) -> str:
    """``gen-<seed>``, followed by the knobs that differ from the defaults: ``-b<blocks>``, ``-r<radius>``,
    ``-w<width>``, ``-c<checkpoints>`` (``evo_rl.sim.catalog.get_track`` reads these names back)."""
    name = f"gen-{seed}"
    name += f"-b{n_blocks}" if n_blocks != DEFAULT_BLOCKS else ""
    name += f"-r{min_radius:g}" if min_radius != DEFAULT_RADIUS else ""
    name += f"-w{width:g}" if width != DEFAULT_WIDTH else ""
    name += f"-c{checkpoints}" if checkpoints != DEFAULT_CHECKPOINTS else ""
    return name


def generated_track(seed: int, n_blocks: int, min_radius: float, width: float, checkpoints: int) -> Track:
    """One generated track, named by :func:`generated_name`."""
    name = generated_name(seed, n_blocks, min_radius, width, checkpoints)
    return generate_track(seed, n_blocks, min_radius, checkpoints, width, name=name)
