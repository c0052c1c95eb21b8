"""Walking the strip of quads: traces, point location and track coordinates.

A strip is described for the kernels by its *edge table* ``edges [M, 4, 3]``:
for quad ``q`` and edge ``e`` (:data:`LEFT`, :data:`RIGHT`, :data:`BACK`,
:data:`FRONT`), ``edges[q, e] = (nx, ny, c)`` with ``(nx, ny)`` the unit outward
normal and ``c`` the offset, so that a point ``p`` is on the inner side of the
edge when ``nx * px + ny * py <= c``; ``c - n . p`` is its distance to the edge
line. A degenerate (zero-length) edge has ``n = 0`` and never stops a trace.

:func:`trace` follows a segment from a point of quad ``q`` through the gates into
the neighbouring quads until it reaches a wall (the left or right wall, or the
closed back gate of quad 0 / front gate of quad ``M - 1``) or its length. Every
exit distance is measured from the same origin, a trace never goes back through
the gate it came in by and never returns less than the distance it had already
reached, so it ends after at most ``M`` quads and never leaves the strip by more
than rounding (a point a hair outside an edge that moves outward stops at once).
"""

from __future__ import annotations

import numba
import numpy as np

from evo_rl.errors import TrackError

LEFT, RIGHT, BACK, FRONT = 0, 1, 2, 3  # edge index of a quad
HIT_NONE, HIT_LEFT, HIT_RIGHT, HIT_START, HIT_END = 0, 1, 2, 3, 4  # what a trace stopped at (edge index + 1)


def strip_edges(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Edge table ``[M, 4, 3]`` of the strip between wall points ``left``, ``right`` ``[M+1, 2]``."""
    left = np.asarray(left, np.float64)
    right = np.asarray(right, np.float64)
    # counter-clockwise corners of quad q: right[q], right[q+1], left[q+1], left[q]; outward normal of a->b is (e_y, -e_x)
    segments = {
        RIGHT: (right[:-1], right[1:]),
        FRONT: (right[1:], left[1:]),
        LEFT: (left[1:], left[:-1]),
        BACK: (left[:-1], right[:-1]),
    }
    m = len(left) - 1
    edges = np.zeros((m, 4, 3), np.float64)  # [M, 4, (nx, ny, c)]
    for e, (a, b) in segments.items():
        d = b - a  # [M, 2]
        n = np.stack([d[:, 1], -d[:, 0]], axis=1)  # [M, 2]
        length = np.hypot(n[:, 0], n[:, 1])
        ok = length > 1e-12
        n[ok] /= length[ok, None]
        n[~ok] = 0.0
        edges[:, e, :2] = n
        edges[:, e, 2] = np.einsum("ij,ij->i", n, a)
    return edges


def inset_walls(left: np.ndarray, right: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Walls moved ``margin`` metres inward along every cross-section (same quads, narrower road)."""
    left = np.asarray(left, np.float64)
    right = np.asarray(right, np.float64)
    across = right - left  # [M+1, 2]
    width = np.hypot(across[:, 0], across[:, 1])  # [M+1]
    if np.any(width <= 2.0 * margin + 1e-6):
        k = int(np.argmin(width))
        raise TrackError(
            f"cross-section {k} is {width[k]:.3f} m wide, too narrow for a car needing {2 * margin:.3f} m "
            "(car.half_width on each side); widen the track or lower car.half_width"
        )
    u = across / width[:, None]
    return left + margin * u, right - margin * u


@numba.njit(cache=True)
def quad_exit(edges: np.ndarray, q: int, came: int, ox: float, oy: float, dx: float, dy: float) -> tuple[float, int]:
    """Distance along ``o + t d`` at which the ray leaves quad ``q``, and through which edge.

    ``came`` is the edge the ray entered by (skipped), or -1. Returns ``(inf, -1)``
    when no edge faces the ray (only possible for a degenerate quad).
    """
    best = np.inf
    best_e = -1
    for e in range(4):
        if e == came:
            continue
        nx = edges[q, e, 0]
        ny = edges[q, e, 1]
        den = nx * dx + ny * dy
        if den > 0.0:
            t = (edges[q, e, 2] - nx * ox - ny * oy) / den
            if t < best:
                best = t
                best_e = e
    return best, best_e


@numba.njit(cache=True)
def trace(edges: np.ndarray, q: int, ox: float, oy: float, dx: float, dy: float, tmax: float) -> tuple[float, int, int]:
    """Follow ``o + t d`` for ``0 <= t <= tmax`` from quad ``q`` until a wall.

    ``d`` need not be a unit vector (``t`` is in units of ``|d|``). Returns
    ``(t, quad, hit)``: the distance reached, the quad at the end and what
    stopped the trace (:data:`HIT_NONE` when ``tmax`` was reached first,
    otherwise the wall's edge index + 1).
    """
    m = edges.shape[0]
    t_in = 0.0
    came = -1
    for _ in range(m + 1):
        t_out, e = quad_exit(edges, q, came, ox, oy, dx, dy)
        if e < 0:  # degenerate quad: stop where the trace is
            return t_in, q, HIT_LEFT
        if t_out < t_in:
            t_out = t_in
        if t_out >= tmax:
            return tmax, q, HIT_NONE
        q, came, hit = cross(m, q, e)
        if hit != HIT_NONE:
            return t_out, q, hit
        t_in = t_out
    return t_in, q, HIT_LEFT


@numba.njit(cache=True)
def cross(m: int, q: int, e: int) -> tuple[int, int, int]:
    """Leave quad ``q`` of ``m`` through edge ``e``: ``(next quad, edge it is entered by, HIT_NONE)``
    through a gate, or ``(q, -1, e + 1)`` at a wall (the end gates of the strip are walls)."""
    if e == BACK and q > 0:
        return q - 1, FRONT, HIT_NONE
    if e == FRONT and q < m - 1:
        return q + 1, BACK, HIT_NONE
    return q, -1, e + 1


@numba.njit(cache=True)
def quad_progress(edges: np.ndarray, s: np.ndarray, q: int, x: float, y: float) -> float:
    """Arc length of point ``(x, y)`` of quad ``q``: ``s[q]`` on the back gate, ``s[q+1]`` on the front gate.

    The fraction is ``d_back / (d_back + d_front)`` with the distances to the two
    gate lines, so progress is continuous across gates; in a rectangular quad it
    is exactly the projection on the centre segment.
    """
    db = edges[q, BACK, 2] - edges[q, BACK, 0] * x - edges[q, BACK, 1] * y
    df = edges[q, FRONT, 2] - edges[q, FRONT, 0] * x - edges[q, FRONT, 1] * y
    total = db + df
    u = 0.5
    if total > 1e-12:
        u = min(max(db / total, 0.0), 1.0)
    return s[q] + (s[q + 1] - s[q]) * u


@numba.njit(cache=True)
def quad_lateral(center: np.ndarray, q: int, x: float, y: float) -> float:
    """Signed distance (left positive) of ``(x, y)`` from the line of quad ``q``'s centre segment."""
    ex = center[q + 1, 0] - center[q, 0]
    ey = center[q + 1, 1] - center[q, 1]
    length = np.sqrt(ex * ex + ey * ey)
    if length < 1e-12:
        return 0.0
    return (ex * (y - center[q, 1]) - ey * (x - center[q, 0])) / length


@numba.njit(cache=True)
def trace_many(
    edges: np.ndarray, quads: np.ndarray, origins: np.ndarray, dirs: np.ndarray, tmax: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`trace` of K segments: ``quads [K]``, ``origins [K, 2]``, ``dirs [K, 2]``, ``tmax [K]``."""
    k = quads.shape[0]
    t = np.empty(k, np.float64)  # [K]
    q_end = np.empty(k, np.int64)  # [K]
    hit = np.empty(k, np.int64)  # [K]
    for i in range(k):
        t[i], q_end[i], hit[i] = trace(edges, quads[i], origins[i, 0], origins[i, 1], dirs[i, 0], dirs[i, 1], tmax[i])
    return t, q_end, hit


def locate(edges: np.ndarray, points: np.ndarray, tol: float = 1e-9) -> np.ndarray:
    """Quad holding each point ``points [P, 2]`` (the lowest index on a shared gate), -1 outside the strip."""
    points = np.asarray(points, np.float64).reshape(-1, 2)
    out = np.full(len(points), -1, np.int64)  # [P]
    n = edges[:, :, :2]  # [M, 4, 2]
    c = edges[:, :, 2]  # [M, 4]
    chunk = max(1, 4_000_000 // max(1, edges.shape[0] * 4))
    for lo in range(0, len(points), chunk):
        p = points[lo : lo + chunk]  # [P', 2]
        inside = (np.einsum("mej,pj->pme", n, p) <= c[None] + tol).all(axis=2)  # [P', M]
        found = inside.any(axis=1)
        out[lo : lo + chunk] = np.where(found, inside.argmax(axis=1), -1)
    return out


def track_coords(
    edges: np.ndarray, s: np.ndarray, center: np.ndarray, quads: np.ndarray, points: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Progress (arc length, m) and lateral offset (m, left positive) of ``points [P, 2]`` in ``quads [P]``."""
    points = np.asarray(points, np.float64).reshape(-1, 2)
    q = np.asarray(quads, np.int64).reshape(-1)
    x, y = points[:, 0], points[:, 1]
    back, front = edges[q, BACK], edges[q, FRONT]  # [P, 3]
    db = back[:, 2] - back[:, 0] * x - back[:, 1] * y
    df = front[:, 2] - front[:, 0] * x - front[:, 1] * y
    total = db + df
    safe = np.where(total > 1e-12, total, 1.0)
    u = np.where(total > 1e-12, np.clip(db / safe, 0.0, 1.0), 0.5)
    progress = s[q] + (s[q + 1] - s[q]) * u  # [P]
    e = center[q + 1] - center[q]  # [P, 2]
    length = np.hypot(e[:, 0], e[:, 1])
    cross = e[:, 0] * (y - center[q, 1]) - e[:, 1] * (x - center[q, 0])
    lateral = np.where(length > 1e-12, cross / np.where(length > 1e-12, length, 1.0), 0.0)  # [P]
    return progress, lateral
