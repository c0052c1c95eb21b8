"""Centreline import: a track built around a recorded centre line (docs/tracks.md)."""

from __future__ import annotations

import math

import numpy as np

from evo_rl.errors import TrackError
from evo_rl.sim.track import Track, candidate_pairs, cross2, even_checkpoints, format_xy, segment_distances


def _arc(points: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])


def _resample(points: np.ndarray, n: int) -> np.ndarray:
    """``n + 1`` points evenly spaced along the polyline, ends kept."""
    s = _arc(points)
    u = np.linspace(0.0, s[-1], n + 1)
    return np.stack([np.interp(u, s, points[:, 0]), np.interp(u, s, points[:, 1])], axis=1)


def _smooth(points: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing of evenly spaced points (``sigma`` in samples), ends pinned by odd reflection."""
    if sigma <= 0:
        return points
    r = int(math.ceil(3 * sigma))
    r = min(r, len(points) - 1)
    kernel = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    head = 2 * points[0] - points[r:0:-1]
    tail = 2 * points[-1] - points[-2 : -r - 2 : -1]
    padded = np.concatenate([head, points, tail])
    return np.stack([np.convolve(padded[:, d], kernel, mode="valid") for d in range(2)], axis=1)


def track_from_centreline(
    points: np.ndarray,
    width: float,
    name: str,
    n_checkpoints: int,
    spacing: float,
    smoothing: float,
    start_offset: float,
    finish_offset: float,
    height: float | None,
) -> Track:
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] not in (2, 3):
        raise TrackError(f"centreline must be [N, 2] plane points or [N, 3] game positions, got shape {pts.shape}")
    bad = np.flatnonzero(~np.isfinite(pts).all(axis=1))
    if len(bad):
        raise TrackError(f"centreline point {bad[0]} is not finite ({pts[bad[0]].tolist()})")
    if pts.shape[1] == 3:
        if height is None:
            height = float(pts[:, 1].mean())
        pts = pts[:, [0, 2]]
    height = 9.0 if height is None else float(height)
    if not (math.isfinite(width) and width > 0):
        raise TrackError(f"width must be a positive number of metres, got {width}")
    if not spacing > 0:
        raise TrackError(f"spacing must be > 0 m, got {spacing}")

    # drop repeated points (a car standing still records the same position)
    keep = np.concatenate([[True], np.linalg.norm(np.diff(pts, axis=0), axis=1) > 1e-6])
    orig_index = np.flatnonzero(keep)  # [N'] index in the input of each kept point
    pts = pts[keep]
    if len(pts) < 2:
        raise TrackError("centreline needs at least 2 distinct points")
    orig_s = _arc(pts)
    total = orig_s[-1]
    if total < start_offset + finish_offset + 3 * spacing:
        raise TrackError(
            f"centreline is {total:.1f} m long; it needs more than start_offset + finish_offset + 3 * spacing"
            f" = {start_offset + finish_offset + 3 * spacing:.1f} m"
        )

    def where(s_at: float) -> str:
        i = int(orig_index[min(int(np.searchsorted(orig_s, s_at)), len(orig_s) - 1)])
        return f"input point {i}, s = {s_at:.0f} m"

    fine_step = min(0.5, spacing / 4)
    fine = _resample(pts, max(2, int(math.ceil(total / fine_step))))  # [F, 2]
    fine = _smooth(fine, smoothing / (total / (len(fine) - 1)))
    n = max(3, int(round(_arc(fine)[-1] / spacing)))
    center = _resample(fine, n)  # [n+1, 2]
    s = _arc(center)

    # turning radius at each inner point: circumradius of the point and its neighbours
    d = np.diff(center, axis=0)  # [n, 2]
    seg = np.linalg.norm(d, axis=1)
    sin_turn = np.abs(cross2(d[:-1], d[1:])) / (seg[:-1] * seg[1:])
    cos_turn = (d[:-1] * d[1:]).sum(axis=1) / (seg[:-1] * seg[1:])
    turn = np.arctan2(sin_turn, cos_turn)  # [n-1]
    radius = 0.5 * (seg[:-1] + seg[1:]) / np.maximum(2 * np.sin(0.5 * turn), 1e-12)
    tight = np.flatnonzero(radius <= 0.5 * width)
    if len(tight):
        k = tight[np.argmin(radius[tight])] + 1
        raise TrackError(
            f"centreline turns with radius {radius[k - 1]:.1f} m at {where(s[k])} near {format_xy(center[k])}, "
            f"tighter than width / 2 = {0.5 * width:g} m, so the walls would fold; use a narrower width"
        )
    i, j = candidate_pairs(center[:-1], center[1:], 0.0)
    far = j > i + 1
    i, j = i[far], j[far]
    if len(i):
        crossing = segment_distances(center[i], center[i + 1], center[j], center[j + 1]) <= 0.0
        if crossing.any():
            a, b = i[crossing][0], j[crossing][0]
            raise TrackError(
                f"centreline crosses itself: near {where(s[a])} and {where(s[b])}, at {format_xy(center[b])}"
            )

    tangent = np.empty_like(center)  # [n+1, 2] unit tangents, bisecting the turn at inner points
    unit = d / seg[:, None]
    tangent[0], tangent[-1] = unit[0], unit[-1]
    mid = unit[:-1] + unit[1:]
    tangent[1:-1] = mid / np.linalg.norm(mid, axis=1, keepdims=True)
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)  # left normal
    # on a turn the bisector normal must reach the offset line: scale by 1 / cos(turn / 2)
    stretch = np.ones(len(center))
    stretch[1:-1] = 1.0 / np.cos(0.5 * turn)
    offset = 0.5 * width * stretch[:, None] * normal
    start = int(np.argmin(np.abs(s - start_offset)))
    finish = int(np.argmin(np.abs(s - (s[-1] - finish_offset))))
    if not 0 < start < finish < n:
        raise TrackError(f"start_offset {start_offset} m and finish_offset {finish_offset} m leave no track")
    cps = even_checkpoints(s, start, finish, n_checkpoints)
    track = Track(name, center + offset, center - offset, width, start, finish, cps, height)
    try:
        track.validate()
    except TrackError as e:
        raise TrackError(f"centreline {name!r}: {e}") from None
    return track
