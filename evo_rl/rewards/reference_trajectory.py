"""Reference trajectories: loading, resampling, and their place on a track.

A reference trajectory is an ``(P, 3)`` array of game positions ``(x, y, z)``
(``y`` up, as the games and ``World.position3()`` report them) or an ``(P, 2)``
array of plane positions ``(x, z)`` (the simulator's ``(x, y)``), in driving
order. It is stored as ``.npy`` (numeric, no pickles) or ``.csv`` (one point per
line, optional header line).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from evo_rl.errors import EvoError
from evo_rl.sim.geometry import locate, strip_edges, track_coords
from evo_rl.sim.track import Track

SPACING = 0.1  # distance between the points of a resampled trajectory, m (as TMRL's reward.pkl)


def as_points3(points: np.ndarray, height: float = 0.0, what: str = "reference trajectory") -> np.ndarray:
    """Check a trajectory and return it as ``[P, 3]`` float64 game positions.

    ``(P, 2)`` plane positions ``(x, z)`` get ``y = height``.
    """
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] not in (2, 3):
        raise EvoError(
            f"{what} must be an (N, 3) array of (x, y, z) or an (N, 2) array of (x, z); got shape {arr.shape}"
        )
    if len(arr) < 2:
        raise EvoError(f"{what} needs at least 2 points; got {len(arr)}")
    if not np.all(np.isfinite(arr)):
        raise EvoError(f"{what} holds NaN or infinite values")
    if arr.shape[1] == 2:
        arr = np.stack([arr[:, 0], np.full(len(arr), height), arr[:, 1]], axis=1)  # [P, 3]
    return np.ascontiguousarray(arr)


def resample(points3: np.ndarray, spacing: float = SPACING) -> np.ndarray:
    """Points every ``spacing`` metres of arc length along the polyline, from its first point.

    The last point lies at most ``spacing`` before the polyline's end.
    """
    seg = np.linalg.norm(np.diff(points3, axis=0), axis=1)  # [P-1]
    cum = np.concatenate([[0.0], np.cumsum(seg)])  # [P]
    keep = np.concatenate([[True], seg > 0])  # drop repeated points so cum is strictly increasing
    cum, pts = cum[keep], points3[keep]
    if len(pts) < 2:
        raise EvoError("reference trajectory has no length: all its points are the same")
    at = np.arange(int(np.floor(cum[-1] / spacing + 1e-9)) + 1) * spacing  # [Q]
    return np.stack([np.interp(at, cum, pts[:, i]) for i in range(3)], axis=1)  # [Q, 3]


def centre_line(track: Track) -> np.ndarray:
    """The track's centre line from the start line to the finish line, ``[P, 3]`` game positions."""
    c = track.center[track.start : track.finish + 1]  # [P, 2]
    return as_points3(c, track.height)


def load_reference(path: str | Path, height: float = 0.0) -> np.ndarray:
    """Read a ``.npy`` or ``.csv`` trajectory as ``[P, 3]`` game positions."""
    p = Path(path)
    if not p.is_file():
        raise EvoError(f"reference trajectory {p} does not exist (record one with `evo-rl reward record`)")
    suffix = p.suffix.lower()
    if suffix == ".npy":
        try:
            arr = np.load(p, allow_pickle=False)
        except ValueError as e:
            raise EvoError(
                f"reference trajectory {p} is not a plain numeric .npy array ({e}); "
                "TMRL's reward.pkl converts with `evo-rl reward import-tmrl`"
            ) from None
    elif suffix in (".csv", ".txt"):
        arr = _read_csv(p)
    elif suffix in (".pkl", ".pickle"):
        raise EvoError(
            f"reference trajectory {p}: pickles are never loaded; convert it with `evo-rl reward import-tmrl {p}`"
        )
    else:
        raise EvoError(f"reference trajectory {p}: unknown file type {suffix!r}; use .npy or .csv")
    return as_points3(arr, height, what=f"reference trajectory {p}")


def _read_csv(p: Path) -> np.ndarray:
    lines = [ln for ln in p.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    rows = []
    for i, line in enumerate(lines):
        cells = [c.strip() for c in line.replace(";", ",").split(",")]
        try:
            rows.append([float(c) for c in cells])
        except ValueError:
            if i == 0:  # a header line
                continue
            raise EvoError(f"reference trajectory {p}: line {i + 1} is not numbers: {line!r}") from None
    if not rows or len({len(r) for r in rows}) != 1:
        raise EvoError(f"reference trajectory {p}: every line must hold the same 2 or 3 numbers")
    return np.array(rows, dtype=np.float64)


def save_reference(path: str | Path, points3: np.ndarray) -> None:
    """Write a trajectory as ``.npy`` or ``.csv`` (by the file's suffix)."""
    p = Path(path)
    pts = as_points3(points3)
    if p.suffix.lower() == ".csv":
        p.write_text("x,y,z\n" + "".join(f"{x:.6f},{y:.6f},{z:.6f}\n" for x, y, z in pts))
    elif p.suffix.lower() == ".npy":
        np.save(p, pts, allow_pickle=False)
    else:
        raise EvoError(f"cannot write {p}: use a .npy or .csv file name")


class ReferenceTrajectory:
    """A reference trajectory placed on a track.

    ``points3`` ``[P, 3]`` game positions; ``dense`` ``[Q, 3]`` the same resampled
    every 0.1 m. On a simulator track each point is also given track coordinates
    (arc length ``s`` of its projection on the centre line and signed lateral
    offset, left positive), so the car's own track coordinates give its progress
    along the reference and its offset from it without a search.
    """

    def __init__(self, points3: np.ndarray, track: Track | None = None) -> None:
        self.points3 = as_points3(points3)
        self.dense = resample(self.points3)  # [Q, 3]
        self.length = float(np.linalg.norm(np.diff(self.points3, axis=0), axis=1).sum())
        self.track = track
        self.is_centre = False  # the track's own centre line: track coordinates are reference coordinates
        if track is not None:
            plane = self.points3[:, [0, 2]]  # [P, 2] simulator (x, y)
            s, lat = project_on_track(track, plane)
            along = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(self.points3, axis=0), axis=1))])
            keep = np.concatenate([[True], s[1:] > np.maximum.accumulate(s)[:-1]])  # strictly increasing s
            self._s = s[keep]  # [K] track arc length of each kept point
            self._lat = lat[keep]  # [K] its lateral offset
            self._along = along[keep]  # [K] its distance along the reference from its first point

    @classmethod
    def centre(cls, track: Track) -> ReferenceTrajectory:
        """The track's centre line from start to finish (its track coordinates are known exactly)."""
        ref = cls(centre_line(track))
        ref.track = track
        ref._s = track.s[track.start : track.finish + 1].copy()
        ref._lat = np.zeros(len(ref._s))
        ref._along = ref._s - ref._s[0]
        ref.is_centre = True
        return ref

    def along(self, progress_s: np.ndarray) -> np.ndarray:
        """Distance along the reference, m, of cars at track arc length ``progress_s`` ``[N]``.

        Linear in ``progress_s`` (slope 1) before the reference's first and after its last point.
        """
        s, a = self._s, self._along
        if self.is_centre or len(s) < 2:
            return progress_s - s[0]
        out = np.interp(progress_s, s, a)
        out = np.where(progress_s < s[0], progress_s - s[0], out)
        return np.where(progress_s > s[-1], a[-1] + (progress_s - s[-1]), out)

    def offset(self, progress_s: np.ndarray, lateral: np.ndarray) -> np.ndarray:
        """Signed lateral offset, m, of cars from the reference at the same track arc length (left positive)."""
        if self.is_centre:
            return lateral
        return lateral - np.interp(progress_s, self._s, self._lat)


def project_on_track(track: Track, points: np.ndarray, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Track coordinates of plane points ``[P, 2]``: progress (arc length, m) and lateral offset (m, left positive).

    Points on the strip get the simulator's own coordinates (those of ``World.progress_s``
    and ``World.lateral``); points off it are projected on their nearest centre-line segment.
    """
    points = np.asarray(points, np.float64).reshape(-1, 2)
    edges = strip_edges(track.left, track.right)
    quads = locate(edges, points)  # [P], -1 off the strip
    s_out, lat_out = _nearest_segment(track, points, chunk)
    on = quads >= 0
    if on.any():
        s_out[on], lat_out[on] = track_coords(edges, track.s, track.center, quads[on], points[on])
    return s_out, lat_out


def _nearest_segment(track: Track, points: np.ndarray, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    a = track.center[:-1]  # [M, 2]
    d = np.diff(track.center, axis=0)  # [M, 2]
    seg_len = np.maximum(np.linalg.norm(d, axis=1), 1e-12)  # [M]
    s_out = np.empty(len(points))
    lat_out = np.empty(len(points))
    for i in range(0, len(points), chunk):
        p = points[i : i + chunk, None, :]  # [C, 1, 2]
        v = p - a  # [C, M, 2]
        t = np.clip((v * d).sum(-1) / seg_len**2, 0.0, 1.0)  # [C, M]
        dist2 = ((v - t[..., None] * d) ** 2).sum(-1)  # [C, M]
        k = np.argmin(dist2, axis=1)  # [C]
        rows = np.arange(len(k))
        s_out[i : i + chunk] = track.s[k] + t[rows, k] * seg_len[k]
        lat_out[i : i + chunk] = (d[k, 0] * v[rows, k, 1] - d[k, 1] * v[rows, k, 0]) / seg_len[k]
    return s_out, lat_out
