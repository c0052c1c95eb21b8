"""The track model: a closed strip of convex quads between wall cross-sections.

See docs/architecture.md ("The track model") for the layout every other part of
the simulator relies on, and docs/tracks.md for the file format, validation rules
and centreline import.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from evo_rl.errors import TrackError

MIN_CLEARANCE = 4.0  # m, least distance between walls of parts of the strip that are not neighbours


@dataclass(eq=False)
class Track:
    """A TrackMania-style track as a strip of quads.

    ``left[k]`` and ``right[k]`` are the wall points of cross-section ``k``
    (``k = 0..M``), left and right of the driving direction. Quad ``k`` lies
    between cross-sections ``k`` and ``k + 1``.
    """

    name: str
    left: np.ndarray  # [M+1, 2] float64
    right: np.ndarray  # [M+1, 2] float64
    width: float
    start: int
    finish: int
    checkpoints: np.ndarray  # [C] int64, increasing, start < c < finish
    height: float = 9.0
    center: np.ndarray = field(init=False)  # [M+1, 2]
    s: np.ndarray = field(init=False)  # [M+1] arc length of center, m

    def __post_init__(self) -> None:
        self.left = np.ascontiguousarray(self.left, dtype=np.float64)
        self.right = np.ascontiguousarray(self.right, dtype=np.float64)
        self.checkpoints = np.ascontiguousarray(self.checkpoints, dtype=np.int64).reshape(-1)
        self.start = int(self.start)
        self.finish = int(self.finish)
        self.width = float(self.width)
        self.height = float(self.height)
        self.center = 0.5 * (self.left + self.right)
        seg = np.linalg.norm(np.diff(self.center, axis=0), axis=1)
        self.s = np.concatenate([[0.0], np.cumsum(seg)])

    def __repr__(self) -> str:
        return (
            f"Track(name={self.name!r}, quads={self.n_quads}, length={self.length:.1f} m, "
            f"width={self.width:g} m, checkpoints={len(self.checkpoints)})"
        )

    @property
    def n_quads(self) -> int:
        """Number of quads M."""
        return len(self.left) - 1

    @property
    def length(self) -> float:
        """Distance from the start line to the finish line along the centre line, m."""
        return float(self.s[self.finish] - self.s[self.start])

    # ------------------------------------------------------------------ validation

    def validate(self, clearance: float = MIN_CLEARANCE) -> None:
        """Check the strip is a valid track; raise :class:`TrackError` naming the problem and where.

        Rules: finite numbers; ``width > 0``; ``0 <= start < checkpoints < finish < M``
        (checkpoints strictly increasing); every quad convex with positive area and the
        left wall on the left; walls of parts of the strip that are not neighbours never
        cross and stay at least ``clearance`` metres apart.
        """
        _check_arrays(self)
        _check_indices(self)
        _check_quads(self.left, self.right)
        _check_clearance(self, clearance)

    # ------------------------------------------------------------------ text files

    def save(self, path: str | Path) -> None:
        """Write the track as a text file (format: docs/tracks.md); floats round-trip exactly."""
        from evo_rl.sim.track_format import format_track

        Path(path).write_text(format_track(self))

    @classmethod
    def load(cls, path: str | Path) -> Track:
        """Read and validate a track file; mistakes raise :class:`TrackError` with file and line."""
        p = Path(path)
        if not p.is_file():
            raise TrackError(f"track file {p} does not exist")
        try:
            text = p.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise TrackError(f"track file {p} cannot be read as text: {e}") from None
        from evo_rl.sim.track_format import parse_track

        track, lines = parse_track(text, str(p))
        try:
            _check_indices(track)
        except TrackError as e:
            where = ", ".join(f"{k} on line {lines[k]}" for k in ("start", "finish", "checkpoints"))
            raise TrackError(f"track file {p}: {e} ({where})") from None
        try:
            track.validate()
        except TrackError as e:
            raise TrackError(f"track file {p}: {e} (cross-section k is on line {lines['sections']} + k)") from None
        return track

    # ------------------------------------------------------------------ centreline import

    @classmethod
    def from_centreline(
        cls,
        points: np.ndarray,
        width: float,
        name: str = "imported",
        n_checkpoints: int = 4,
        spacing: float = 3.0,
        smoothing: float = 4.0,
        start_offset: float = 6.0,
        finish_offset: float = 6.0,
        height: float | None = None,
    ) -> Track:
        """Build a track around a recorded centre line.

        ``points`` is ``[N, 2]`` plane points ``(x, y)`` or ``[N, 3]`` game positions
        ``(x, y_up, z)``, which map to the plane as ``(x, z)`` (the road height becomes the
        mean ``y_up``). Repeated points are dropped, the path is smoothed (Gaussian,
        ``smoothing`` metres) and resampled every ``spacing`` metres, and the walls are
        offset ``width / 2`` along the normals. The start line is ``start_offset`` metres
        in, the finish line ``finish_offset`` metres before the end, and
        ``n_checkpoints`` gates are spread evenly between them. A path that turns tighter
        than ``width / 2`` or crosses itself raises :class:`TrackError` naming where.
        """
        from evo_rl.sim.centreline import track_from_centreline

        return track_from_centreline(
            points, width, name, n_checkpoints, spacing, smoothing, start_offset, finish_offset, height
        )


# ---------------------------------------------------------------------- validation helpers


def _check_arrays(t: Track) -> None:
    if t.left.ndim != 2 or t.left.shape[1] != 2 or t.right.shape != t.left.shape:
        raise TrackError(f"left and right must both be [M+1, 2] arrays, got {t.left.shape} and {t.right.shape}")
    if len(t.left) < 3:
        raise TrackError(f"a track needs at least 3 cross-sections (2 quads), got {len(t.left)}")
    for label, arr in (("left", t.left), ("right", t.right)):
        bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
        if len(bad):
            raise TrackError(f"{label}[{bad[0]}] is not finite ({arr[bad[0]].tolist()})")
    if not math.isfinite(t.width) or t.width <= 0:
        raise TrackError(f"width must be a positive number of metres, got {t.width}")
    if not math.isfinite(t.height):
        raise TrackError(f"height must be finite, got {t.height}")


def _check_indices(t: Track) -> None:
    m = t.n_quads
    if not 0 <= t.start < t.finish < m:
        raise TrackError(
            f"need 0 <= start < finish < M = {m} (the last cross-section closes the run-off), "
            f"got start={t.start}, finish={t.finish}"
        )
    cps = t.checkpoints
    if len(cps) and (cps[0] <= t.start or cps[-1] >= t.finish):
        raise TrackError(
            f"checkpoints must lie strictly between start={t.start} and finish={t.finish}, got {cps.tolist()}"
        )
    if len(cps) > 1 and np.any(np.diff(cps) <= 0):
        raise TrackError(f"checkpoints must be strictly increasing, got {cps.tolist()}")


def cross2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def _check_quads(left: np.ndarray, right: np.ndarray) -> None:
    # corners in order left[k], left[k+1], right[k+1], right[k]: clockwise when left is on the left
    corners = np.stack([left[:-1], left[1:], right[1:], right[:-1]], axis=1)  # [M, 4, 2]
    edges = np.roll(corners, -1, axis=1) - corners  # [M, 4, 2]
    lengths = np.linalg.norm(edges, axis=2)  # [M, 4]
    names = ("left wall", "front gate", "right wall", "back gate")
    scale = max(1.0, float(np.abs(corners).max()))
    short = lengths <= 1e-9 * scale
    if short.any():
        k, e = np.argwhere(short)[0]
        raise TrackError(f"quad {k} is degenerate: its {names[e]} has zero length near {format_xy(corners[k, e])}")
    sines = cross2(edges, np.roll(edges, -1, axis=1)) / (lengths * np.roll(lengths, -1, axis=1))  # [M, 4]
    bad = np.flatnonzero((sines >= -1e-9).any(axis=1))
    if len(bad):
        k = bad[0]
        where = format_xy(corners[k].mean(axis=0))
        if (sines[k] > 1e-9).all():
            raise TrackError(f"quad {k} is reversed (left and right walls swapped?) near {where}")
        raise TrackError(f"quad {k} is not convex (or has zero area) near {where}")


def format_xy(p: np.ndarray) -> str:
    return f"({p[0]:.1f}, {p[1]:.1f})"


def _point_segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    denom = np.maximum((ab * ab).sum(axis=-1), 1e-300)
    t = np.clip(((p - a) * ab).sum(axis=-1) / denom, 0.0, 1.0)
    return np.linalg.norm(a + t[..., None] * ab - p, axis=-1)


def segment_distances(p1: np.ndarray, p2: np.ndarray, q1: np.ndarray, q2: np.ndarray) -> np.ndarray:
    """Distance between segments ``p1-p2`` and ``q1-q2`` row by row (``[K, 2]`` each), 0 where they cross."""
    d = np.minimum.reduce(
        [
            _point_segment_distance(p1, q1, q2),
            _point_segment_distance(p2, q1, q2),
            _point_segment_distance(q1, p1, p2),
            _point_segment_distance(q2, p1, p2),
        ]
    )
    o1 = cross2(p2 - p1, q1 - p1)
    o2 = cross2(p2 - p1, q2 - p1)
    o3 = cross2(q2 - q1, p1 - q1)
    o4 = cross2(q2 - q1, p2 - q1)
    crossing = (o1 * o2 < 0) & (o3 * o4 < 0)
    return np.where(crossing, 0.0, d)


def candidate_pairs(a: np.ndarray, b: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``i < j`` of segments whose bounding boxes, grown by ``margin``, overlap (sweep along x)."""
    lo = np.minimum(a, b) - margin  # [S, 2]
    hi = np.maximum(a, b) + margin  # [S, 2]
    order = np.argsort(lo[:, 0], kind="stable")
    lo_x = lo[order, 0]
    # segments after p in x order whose box starts before p's box ends overlap it along x
    end = np.searchsorted(lo_x, hi[order, 0], side="right")  # [S]
    count = np.maximum(end - np.arange(len(order)) - 1, 0)  # [S]
    p = np.repeat(np.arange(len(order)), count)  # [K]
    q = p + 1 + np.arange(len(p)) - np.repeat(np.cumsum(count) - count, count)  # [K]
    i, j = order[p], order[q]
    keep = (lo[i, 1] <= hi[j, 1]) & (lo[j, 1] <= hi[i, 1])
    i, j = i[keep], j[keep]
    swap = i > j
    i[swap], j[swap] = j[swap], i[swap]
    return i, j


def _check_clearance(t: Track, clearance: float) -> None:
    left, right, m = t.left, t.right, t.n_quads
    s_left = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(left, axis=0), axis=1))])
    s_right = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(right, axis=0), axis=1))])
    # wall segments: left walls, right walls, then the two end caps
    a = np.concatenate([left[:-1], right[:-1], left[[0, m]]])  # [S, 2]
    b = np.concatenate([left[1:], right[1:], right[[0, m]]])  # [S, 2]
    quad = np.concatenate([np.arange(m), np.arange(m), [0, m - 1]])  # [S]
    wall = np.concatenate([np.zeros(m, int), np.ones(m, int), [2, 2]])  # [S] 0 left, 1 right, 2 cap
    s_lo = np.concatenate([t.s[:-1], t.s[:-1], t.s[[0, m]]])  # centre arc length span of each segment
    s_hi = np.concatenate([t.s[1:], t.s[1:], t.s[[0, m]]])
    w_lo = np.concatenate([s_left[:-1], s_right[:-1], [0.0, 0.0]])  # wall arc length span
    w_hi = np.concatenate([s_left[1:], s_right[1:], [0.0, 0.0]])

    i, j = candidate_pairs(a, b, clearance)
    shares_end = (
        (np.abs(a[i] - a[j]).sum(1) == 0)
        | (np.abs(a[i] - b[j]).sum(1) == 0)
        | (np.abs(b[i] - a[j]).sum(1) == 0)
        | (np.abs(b[i] - b[j]).sum(1) == 0)
    )
    i, j = i[~shares_end], j[~shares_end]
    if len(i) == 0:
        return
    dist = segment_distances(a[i], b[i], a[j], b[j])
    # parts of the strip joined by a short stretch of wall (or of road) are neighbours
    same_wall = (wall[i] == wall[j]) & (wall[i] < 2)
    wall_gap = np.maximum(0.0, np.maximum(w_lo[j] - w_hi[i], w_lo[i] - w_hi[j]))
    road_gap = np.maximum(0.0, np.maximum(s_lo[j] - s_hi[i], s_lo[i] - s_hi[j]))
    neighbours = np.where(same_wall, wall_gap < 0.5 * math.pi * clearance, road_gap < 2.0 * (t.width + clearance))
    bad = (dist <= 0.0) | (~neighbours & (dist < clearance))
    if not bad.any():
        return
    worst = np.flatnonzero(bad)[np.argmin(dist[bad])]
    qi, qj = sorted((int(quad[i[worst]]), int(quad[j[worst]])))
    where = format_xy(0.25 * (a[i[worst]] + b[i[worst]] + a[j[worst]] + b[j[worst]]))
    if dist[worst] <= 0.0:
        raise TrackError(f"walls of quads {qi} and {qj} cross near {where}")
    raise TrackError(f"walls of quads {qi} and {qj} are {dist[worst]:.1f} m apart (< {clearance:g} m) near {where}")


def even_checkpoints(
    s: np.ndarray, start: int, finish: int, n: int, candidates: np.ndarray | None = None
) -> np.ndarray:
    """``n`` cross-sections strictly between ``start`` and ``finish``, evenly spread by arc length.

    ``candidates`` restricts the choice (e.g. to block joints); by default any cross-section.
    """
    cand = np.arange(start + 1, finish) if candidates is None else np.asarray(candidates, dtype=np.int64)
    cand = np.unique(cand[(cand > start) & (cand < finish)])
    if n < 0:
        raise TrackError(f"n_checkpoints must be >= 0, got {n}")
    if n > len(cand):
        raise TrackError(f"cannot place {n} checkpoints: only {len(cand)} cross-sections lie between start and finish")
    chosen: list[int] = []
    lo = 0
    span = s[finish] - s[start]
    for k in range(n):
        target = s[start] + span * (k + 1) / (n + 1)
        hi = len(cand) - (n - k - 1)  # leave room for the remaining gates
        pos = lo + int(np.argmin(np.abs(s[cand[lo:hi]] - target)))
        chosen.append(int(cand[pos]))
        lo = pos + 1
    return np.asarray(chosen, dtype=np.int64)
