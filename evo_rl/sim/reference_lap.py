"""Reference driving: a racing line, the speed the car can carry along it, and the
reference lap time.

The racing line is a minimum-curvature line inside the corridor (Braghin et al.,
"Race driving along a minimum curvature path", 2008). The strip is cut into fine
cross-sections about a metre apart; cross-section ``i`` carries a lateral offset
``alpha_i`` (left positive) bounded by ``±(half road width - margin)`` with
``margin = car.half_width + safety``. The offsets minimise a discrete ``∫ κ² ds``:
a box-constrained quadratic programme with a pentadiagonal Hessian, solved by a
primal active-set method with banded Cholesky solves, then refined a few times
so that only the curvature, not the uneven spacing of the cross-sections, is
penalised (see :func:`min_curvature_offsets`).

The speed profile is the classic forward-backward integration (e.g. Velenis &
Tsiotras, "Minimum-time travel for a vehicle with acceleration limits", 2008):
a lateral cap ``v² |κ| <= a_lat(v)``, a forward pass from rest with the engine
and a backward pass with the brakes, whose tyre forces share the grip with
cornering through the friction circle, as the simulator applies it. The limits
are the car's own, from :func:`evo_rl.sim.physics.accel_limits`.

The reference lap time is measured like :attr:`World.race_time`: from rest where
:meth:`World.reset` puts the cars (``START_AHEAD`` past the start line, on the
centre line) until the finish line.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numba
import numpy as np

from evo_rl.config import CarConfig
from evo_rl.errors import TrackError
from evo_rl.sim.track import Track
from evo_rl.sim.world import START_AHEAD

# accel_limits(v [K], car) -> (max_forward_accel [K], max_brake_decel [K], max_lateral_accel [K]), m/s²
LimitsFn = Callable[[np.ndarray, CarConfig], tuple[np.ndarray, np.ndarray, np.ndarray]]

SAFETY = 1.0  # m kept between the car's side and a wall, beyond car.half_width
STEP = 1.0  # m between the line's cross-sections (at most)
ITERATIONS = 16  # curvature refinements of the racing line after the first solve
_SMOOTH = 1e-8  # weight of sum(alpha²): picks the centred line where curvature does not care
_PROXIMAL = 1e-5  # weight of |alpha - alpha_prev|² per refinement, times ds^-3 (the curvature rows' scale)
_CACHE_SIZE = 32


@dataclass(eq=False)
class ReferenceLap:
    """A racing line through a track with its speed profile.

    Line point ``i`` lies on a fine cross-section of the strip; ``section[k]`` is the
    line index of the track's cross-section ``k``.
    """

    line: np.ndarray  # [K, 2] racing line points, m
    s: np.ndarray  # [K] arc length along the line from its first point, m
    speed: np.ndarray  # [K] reference speed, m/s
    time: np.ndarray  # [K] time from the start position, s (negative before it)
    curvature: np.ndarray  # [K] signed curvature of the line, 1/m (left turns positive)
    offset: np.ndarray  # [K] lateral offset from the centre line, m (left positive)
    center_s: np.ndarray  # [K] centre-line arc length of each line point's cross-section, m
    section: np.ndarray  # [M+1] line index of each track cross-section
    start_index: int  # line index of the cars' start position (START_AHEAD past the start line)
    finish_index: int  # line index of the finish line
    lap_time: float  # seconds from rest at the start position to the finish line

    @property
    def length(self) -> float:
        """Racing-line distance from the start position to the finish line, m."""
        return float(self.s[self.finish_index] - self.s[self.start_index])

    def line_s(self, progress_s: np.ndarray) -> np.ndarray:
        """Map centre-line arc lengths (``World.progress_s``) to racing-line arc lengths."""
        return np.interp(progress_s, self.center_s, self.s)

    def speed_at(self, line_s: np.ndarray) -> np.ndarray:
        """Reference speed at racing-line arc lengths, m/s."""
        return np.interp(line_s, self.s, self.speed)

    def curvature_at(self, line_s: np.ndarray) -> np.ndarray:
        """Racing-line curvature at arc lengths ``line_s``, 1/m (left turns positive)."""
        return np.interp(line_s, self.s, self.curvature)

    def point_at(self, line_s: np.ndarray) -> np.ndarray:
        """Racing-line points at arc lengths ``line_s`` ``[N]`` -> ``[N, 2]``."""
        x = np.interp(line_s, self.s, self.line[:, 0])
        y = np.interp(line_s, self.s, self.line[:, 1])
        return np.stack([x, y], axis=-1)


# --------------------------------------------------------------------------- corridor


def resample_sections(
    track: Track, step: float = STEP, cut: tuple[int, float] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Split every quad into cross-sections at most ``step`` metres apart.

    The new cross-sections interpolate the quad's walls linearly, so they lie
    exactly on the strip's walls. ``cut = (quad, t)`` adds one more cross-section
    at fraction ``t`` of that quad. Returns ``left [K, 2]``, ``right [K, 2]``,
    ``section [M+1]`` (the fine index of each original cross-section) and the fine
    index of the cut (-1 without one).
    """
    seg = np.linalg.norm(np.diff(track.center, axis=0), axis=1)  # [M]
    parts = np.maximum(1, np.ceil(seg / step - 1e-9)).astype(np.int64)  # [M]
    first = np.concatenate([[0], np.cumsum(parts)])  # [M+1] uniform fine index of each cross-section
    quad = np.repeat(np.arange(track.n_quads), parts)  # [K-1]
    t = (np.arange(first[-1]) - first[quad]) / parts[quad]  # [K-1] in [0, 1)
    cut_index = -1
    if cut is not None:
        key = quad + t  # [K-1] increasing
        cut_index = int(np.argmin(np.abs(key - (cut[0] + cut[1]))))
        if abs(key[cut_index] - (cut[0] + cut[1])) > 1e-9:
            cut_index = int(np.searchsorted(key, cut[0] + cut[1]))
            quad = np.insert(quad, cut_index, cut[0])
            t = np.insert(t, cut_index, cut[1])
    section = np.concatenate([np.searchsorted(quad, np.arange(track.n_quads)), [len(quad)]])  # [M+1]
    tt = t[:, None]
    left = np.concatenate([track.left[quad] * (1 - tt) + track.left[quad + 1] * tt, track.left[-1:]])  # [K, 2]
    right = np.concatenate([track.right[quad] * (1 - tt) + track.right[quad + 1] * tt, track.right[-1:]])  # [K, 2]
    return left, right, section, cut_index


# --------------------------------------------------------------------------- minimum-curvature QP


@numba.njit(cache=True)
def _h(d0: np.ndarray, d1: np.ndarray, d2: np.ndarray, i: int, j: int) -> float:
    """Entry (i, j) of the symmetric pentadiagonal matrix (d0, d1, d2)."""
    if i > j:
        i, j = j, i
    gap = j - i
    if gap == 0:
        return d0[i]
    if gap == 1:
        return d1[i]
    if gap == 2:
        return d2[i]
    return 0.0


@numba.njit(cache=True)
def _solve_free(
    d0: np.ndarray, d1: np.ndarray, d2: np.ndarray, g: np.ndarray, x: np.ndarray, free: np.ndarray
) -> np.ndarray:
    """Minimise over the free variables with the others held: H_FF y = -(g_F + H_FX x_X)."""
    n = len(x)
    idx = np.empty(n, np.int64)
    m = 0
    for i in range(n):
        if free[i]:
            idx[m] = i
            m += 1
    y = x.copy()
    if m == 0:
        return y
    l0 = np.zeros(m)  # L[p, p]
    l1 = np.zeros(m)  # L[p, p-1]
    l2 = np.zeros(m)  # L[p, p-2]
    r = np.zeros(m)
    for p in range(m):
        i = idx[p]
        acc = -g[i]
        for j in range(max(0, i - 2), min(n, i + 3)):
            if not free[j]:
                acc -= _h(d0, d1, d2, i, j) * x[j]
        r[p] = acc
        a2 = _h(d0, d1, d2, i, idx[p - 2]) if p >= 2 else 0.0
        a1 = _h(d0, d1, d2, i, idx[p - 1]) if p >= 1 else 0.0
        l2[p] = a2 / l0[p - 2] if p >= 2 else 0.0
        l1[p] = (a1 - l2[p] * l1[p - 1]) / l0[p - 1] if p >= 1 else 0.0
        l0[p] = math.sqrt(d0[i] - l1[p] ** 2 - l2[p] ** 2)
    z = np.zeros(m)
    for p in range(m):
        acc = r[p]
        if p >= 1:
            acc -= l1[p] * z[p - 1]
        if p >= 2:
            acc -= l2[p] * z[p - 2]
        z[p] = acc / l0[p]
    for p in range(m - 1, -1, -1):
        acc = z[p]
        if p + 1 < m:
            acc -= l1[p + 1] * z[p + 1]
        if p + 2 < m:
            acc -= l2[p + 2] * z[p + 2]
        z[p] = acc / l0[p]
    for p in range(m):
        y[idx[p]] = z[p]
    return y


@numba.njit(cache=True)
def _gradient(d0: np.ndarray, d1: np.ndarray, d2: np.ndarray, g: np.ndarray, x: np.ndarray, i: int) -> float:
    """Component ``i`` of the gradient ``H x + g``."""
    n = len(x)
    grad = g[i]
    for j in range(max(0, i - 2), min(n, i + 3)):
        grad += _h(d0, d1, d2, i, j) * x[j]
    return grad


@numba.njit(cache=True)
def _box_qp(
    d0: np.ndarray,
    d1: np.ndarray,
    d2: np.ndarray,
    g: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    x0: np.ndarray,
    state: np.ndarray,
    max_iter: int,
) -> tuple[np.ndarray, int]:
    """min ½ xᵀHx + gᵀx subject to lo <= x <= hi, H pentadiagonal positive definite.

    Primal active set, warm-started from ``x0`` and ``state [n]`` (0 free, -1 held
    at ``lo``, +1 held at ``hi``; updated in place): take the Newton step of the
    free variables, stop at the first bound it crosses and hold that variable
    there; at a stationary point release every held variable whose gradient
    points into the box. Returns the minimiser and the number of iterations.
    """
    n = len(g)
    x = np.minimum(np.maximum(x0.copy(), lo), hi)
    for i in range(n):
        if hi[i] - lo[i] <= 1e-12:
            state[i] = 2  # fixed
        elif state[i] == 2:
            state[i] = 0
        if state[i] == 1:
            x[i] = hi[i]
        elif state[i] == -1:
            x[i] = lo[i]
    for it in range(max_iter):
        y = _solve_free(d0, d1, d2, g, x, state == 0)
        t = 1.0
        block = -1
        for i in range(n):
            if state[i] != 0:
                continue
            dx = y[i] - x[i]
            if y[i] < lo[i] and dx < 0:
                ti = (lo[i] - x[i]) / dx
                if ti < t:
                    t, block = ti, i
            elif y[i] > hi[i] and dx > 0:
                ti = (hi[i] - x[i]) / dx
                if ti < t:
                    t, block = ti, i
        if block >= 0:
            t = max(t, 0.0)
            for i in range(n):
                if state[i] == 0:
                    x[i] += t * (y[i] - x[i])
            state[block] = -1 if y[block] < lo[block] else 1
            x[block] = lo[block] if state[block] == -1 else hi[block]
            continue
        x = y
        released = 0
        for i in range(n):
            if state[i] == -1 or state[i] == 1:
                grad = _gradient(d0, d1, d2, g, x, i)
                if (state[i] == -1 and grad < -1e-10) or (state[i] == 1 and grad > 1e-10):
                    state[i] = 0
                    released += 1
        if released == 0:
            return x, it + 1
    return x, max_iter


def _curvature_rows(
    center: np.ndarray, normal: np.ndarray, alpha: np.ndarray, tangential: float
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Rows ``(cm, c0, cp, r)`` ``[K-2]`` each: ``cm a[j-1] + c0 a[j] + cp a[j+1] + r`` is a weighted
    component of the second difference of ``p = center + a * normal`` at ``j = 1..K-2``.

    Components: along the normal of the line ``center + alpha * normal``, and with
    weight ``tangential`` along its tangent; rows are scaled by ``ds^-1.5`` so their
    squares sum to ``∫ κ² ds``.
    """
    line = center + alpha[:, None] * normal  # [K, 2]
    chord = line[2:] - line[:-2]  # [K-2, 2]
    ds = 0.5 * np.linalg.norm(chord, axis=1)  # [K-2]
    tangent = chord / np.maximum(2.0 * ds, 1e-12)[:, None]  # [K-2, 2]
    b = center[:-2] - 2.0 * center[1:-1] + center[2:]  # [K-2, 2] second difference of the centre line
    rows = []
    for direction, weight in ((np.stack([-tangent[:, 1], tangent[:, 0]], axis=1), 1.0), (tangent, tangential)):
        if weight == 0.0:
            continue
        scale = math.sqrt(weight) * ds**-1.5  # [K-2]
        rows.append(
            (
                scale * np.einsum("ij,ij->i", direction, normal[:-2]),
                -2.0 * scale * np.einsum("ij,ij->i", direction, normal[1:-1]),
                scale * np.einsum("ij,ij->i", direction, normal[2:]),
                scale * np.einsum("ij,ij->i", direction, b),
            )
        )
    return rows


def min_curvature_offsets(
    center: np.ndarray,
    normal: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    iterations: int = ITERATIONS,
    tol: float = 0.01,
) -> np.ndarray:
    """Offsets ``alpha [K]`` of the minimum-curvature line ``p = center + alpha * normal``, ``lo <= alpha <= hi``.

    The first solve minimises the whole second difference ``Σ |p[j-1] - 2 p[j] + p[j+1]|²``,
    a convex problem whose only flaw is that uneven spacing of the cross-sections
    (inside of a curve, joints of long and short quads) counts as curvature. Then
    up to ``iterations`` solves keep only the component along the normal of the
    previous line (curvature alone), with a proximal term ``rho |alpha - alpha_prev|²``
    that damps long swings between iterations, until ``alpha`` moves less than ``tol`` m.
    """
    k = len(center)
    alpha = np.clip(np.zeros(k), lo, hi)  # [K]
    if k < 3:
        return alpha
    lo = lo.astype(np.float64)
    hi = hi.astype(np.float64)
    state = np.zeros(k, np.int64)  # active set, carried from one solve to the next
    ds = float(np.mean(np.linalg.norm(np.diff(center, axis=0), axis=1)))
    for it in range(iterations + 1):
        rho = _PROXIMAL / ds**3 if it > 0 else 0.0
        d0 = np.full(k, _SMOOTH + rho)  # [K] Hessian diagonal
        d1 = np.zeros(k - 1)  # [K-1] H[i, i+1]
        d2 = np.zeros(k - 2)  # [K-2] H[i, i+2]
        g = -rho * alpha  # [K] linear term
        for cm, c0, cp, r in _curvature_rows(center, normal, alpha, 1.0 if it == 0 else 0.0):
            d0[:-2] += cm * cm
            d0[1:-1] += c0 * c0
            d0[2:] += cp * cp
            d1[:-1] += cm * c0
            d1[1:] += c0 * cp
            d2 += cm * cp
            g[:-2] += cm * r
            g[1:-1] += c0 * r
            g[2:] += cp * r
        new, _ = _box_qp(d0, d1, d2, g, lo, hi, alpha, state, 50 * k)
        moved = float(np.abs(new - alpha).max())
        alpha = new
        if it > 0 and moved < tol:
            break
    return alpha


def line_curvature(line: np.ndarray) -> np.ndarray:
    """Signed curvature ``[K]`` of a polyline (circle through each point and its neighbours)."""
    a = line[1:-1] - line[:-2]  # [K-2, 2]
    b = line[2:] - line[1:-1]
    c = line[2:] - line[:-2]
    cross = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]
    denom = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) * np.linalg.norm(c, axis=1)
    kappa = 2.0 * cross / np.maximum(denom, 1e-12)  # [K-2]
    return np.concatenate([kappa[:1], kappa, kappa[-1:]]) if len(kappa) else np.zeros(len(line))


# --------------------------------------------------------------------------- speed profile


@numba.njit(cache=True)
def _table(tab: np.ndarray, dv: float, v: float) -> float:
    """Linear interpolation of ``tab`` sampled every ``dv`` m/s from 0."""
    x = v / dv
    if x <= 0.0:
        return tab[0]
    i = int(x)
    if i >= len(tab) - 1:
        return tab[-1]
    f = x - i
    return tab[i] * (1.0 - f) + tab[i + 1] * f


@numba.njit(cache=True)
def _avail(tab: np.ndarray, lat: np.ndarray, res: np.ndarray, sign: float, dv: float, v: float, kappa: float) -> float:
    """Net acceleration (``sign = 1``) or deceleration (``sign = -1``) left at speed ``v`` on curvature ``kappa``.

    The tyre part (``tab`` minus the resistance ``res``) is capped by the friction
    circle ``a_x² + (v² κ)² <= a_lat(v)²``; the resistance acts outside the tyres.
    """
    a_lat = _table(lat, dv, v)
    a_y = v * v * kappa
    r = _table(res, dv, v)
    tyre = _table(tab, dv, v) + sign * r
    tyre = min(tyre, math.sqrt(max(0.0, a_lat * a_lat - a_y * a_y)))
    return tyre - sign * r


@numba.njit(cache=True)
def _passes(
    ds: np.ndarray,
    kappa: np.ndarray,
    cap: np.ndarray,
    dv: float,
    fwd: np.ndarray,
    brk: np.ndarray,
    lat: np.ndarray,
    res: np.ndarray,
    start: int,
) -> np.ndarray:
    """Forward pass (engine, from rest at ``start`` and at point 0), then backward pass (brakes).

    Each step integrates d(v²)/ds = 2 a(v) with the midpoint rule.
    """
    k = len(cap)
    v = np.empty(k)
    v[0] = 0.0
    for i in range(k - 1):
        if i == start:
            v[i] = 0.0
        kap = 0.5 * (kappa[i] + kappa[i + 1])
        w = v[i] * v[i]
        half = w + _avail(fwd, lat, res, 1.0, dv, v[i], kap) * ds[i]
        w_next = w + 2.0 * _avail(fwd, lat, res, 1.0, dv, math.sqrt(max(half, 0.0)), kap) * ds[i]
        v[i + 1] = min(math.sqrt(max(w_next, 0.0)), cap[i + 1])
    for i in range(k - 2, -1, -1):
        kap = 0.5 * (kappa[i] + kappa[i + 1])
        w = v[i + 1] * v[i + 1]
        half = w + _avail(brk, lat, res, -1.0, dv, v[i + 1], kap) * ds[i]
        w_prev = w + 2.0 * _avail(brk, lat, res, -1.0, dv, math.sqrt(max(half, 0.0)), kap) * ds[i]
        v[i] = min(v[i], math.sqrt(max(w_prev, 0.0)))
    return v


def speed_profile(
    ds: np.ndarray, curvature: np.ndarray, car: CarConfig, start: int = 0, limits: LimitsFn | None = None
) -> np.ndarray:
    """Fastest speeds ``[K]`` along a line with segment lengths ``ds [K-1]`` and ``curvature [K]``.

    From rest at point ``start``; ``v² |κ| <= a_lat(v)`` everywhere; the tyre part of
    the engine's and the brakes' acceleration shares the grip with cornering
    through the friction circle, as in :func:`evo_rl.sim.physics.dynamics`.
    """
    limits = limits or _physics_limits()
    v_grid = np.linspace(0.0, 1.5 * car.top_speed, 3001)  # [G]
    fwd, brk, lat = (np.ascontiguousarray(a, dtype=np.float64) for a in limits(v_grid, car))  # [G] each
    dv = float(v_grid[1])
    kappa = np.abs(curvature)
    lo = np.zeros(len(kappa))  # [K] lateral cap by bisection: v² κ <= a_lat(v)
    hi = np.full(len(kappa), v_grid[-1])
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        ok = mid * mid * kappa <= np.interp(mid, v_grid, lat)
        lo = np.where(ok, mid, lo)
        hi = np.where(ok, hi, mid)
    res = resistance(v_grid, car)  # [G]
    return _passes(ds.astype(np.float64), kappa, lo, dv, fwd, brk, lat, res, int(start))


def resistance(v: np.ndarray, car: CarConfig) -> np.ndarray:
    """Deceleration ``[K]`` by drag and rolling resistance at speeds ``v [K]``, m/s²."""
    return (car.drag * v * v + car.rolling_resistance) / car.mass


def segment_times(ds: np.ndarray, speed: np.ndarray) -> np.ndarray:
    """Time ``[K-1]`` to cover each segment, exact for constant acceleration: 2 ds / (v_i + v_i+1)."""
    return 2.0 * ds / np.maximum(speed[:-1] + speed[1:], 1e-9)


def _physics_limits() -> LimitsFn:
    from evo_rl.sim.physics import accel_limits

    return accel_limits


# --------------------------------------------------------------------------- reference


_cache: OrderedDict[tuple, ReferenceLap] = OrderedDict()


def _track_key(track: Track) -> str:
    h = hashlib.sha1()
    for arr in (track.left, track.right, track.checkpoints):
        h.update(np.ascontiguousarray(arr).tobytes())
    h.update(f"{track.start},{track.finish},{track.width}".encode())
    return h.hexdigest()


def compute_reference_lap(
    track: Track,
    car: CarConfig,
    *,
    safety: float = SAFETY,
    step: float = STEP,
    limits: LimitsFn | None = None,
) -> ReferenceLap:
    """Racing line, speed profile and reference lap time of ``car`` on ``track``.

    The line keeps ``car.half_width + safety`` metres from the walls and passes the
    start line on the centre line, where the cars start. Results are cached per
    (track geometry, car config, safety, step, limits).
    """
    key = (_track_key(track), car.model_dump_json(), float(safety), float(step), limits)
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    ref = _compute(track, car, safety, step, limits)
    _cache[key] = ref
    if len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)
    return ref


def start_fraction(track: Track) -> float:
    """Fraction of the start quad between the start line and where :class:`World` puts the cars at a reset."""
    length = float(np.linalg.norm(track.center[track.start + 1] - track.center[track.start]))
    return min(START_AHEAD, 0.5 * length) / length


def _compute(track: Track, car: CarConfig, safety: float, step: float, limits: LimitsFn | None) -> ReferenceLap:
    left, right, section, start = resample_sections(track, step, cut=(track.start, start_fraction(track)))
    center = 0.5 * (left + right)  # [K, 2]
    across = left - right  # [K, 2]
    half = 0.5 * np.linalg.norm(across, axis=1)  # [K]
    normal = across / (2.0 * half[:, None])  # [K, 2] unit, pointing left
    margin = car.half_width + safety
    bound = half - margin  # [K]
    if bound.min() < 0:
        raise TrackError(
            f"track {track.name!r} is {2 * half.min():.1f} m wide at its narrowest; the racing line needs "
            f"2 * (car.half_width + safety) = {2 * margin:.1f} m: lower car.half_width or widen the track"
        )
    finish = int(section[track.finish])
    lo, hi = -bound, bound.copy()
    lo[start] = hi[start] = 0.0
    offset = min_curvature_offsets(center, normal, lo, hi)  # [K]
    line = center + offset[:, None] * normal  # [K, 2]
    ds = np.linalg.norm(np.diff(line, axis=0), axis=1)  # [K-1]
    s = np.concatenate([[0.0], np.cumsum(ds)])  # [K]
    curvature = line_curvature(line)
    speed = speed_profile(ds, curvature, car, start, limits)
    elapsed = np.concatenate([[0.0], np.cumsum(segment_times(ds, speed))])  # [K]
    time = elapsed - elapsed[start]
    center_s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(center, axis=0), axis=1))])
    return ReferenceLap(
        line=line,
        s=s,
        speed=speed,
        time=time,
        curvature=curvature,
        offset=offset,
        center_s=center_s,
        section=section,
        start_index=start,
        finish_index=finish,
        lap_time=float(time[finish]),
    )
