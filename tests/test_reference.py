"""Reference driving: racing line inside the corridor, speed profile within the car's
limits, lap time against analytic integrations, and the box-constrained QP solver
against brute-force enumeration."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from evo_rl.config import CarConfig, SimConfig
from evo_rl.errors import TrackError
from evo_rl.sim.catalog import get_track
from evo_rl.sim.physics import accel_limits
from evo_rl.sim.reference_lap import (
    _box_qp,
    compute_reference_lap,
    line_curvature,
    resample_sections,
    segment_times,
    start_fraction,
)
from evo_rl.sim.track import Track
from evo_rl.sim.world import START_AHEAD, World

CAR = CarConfig()
MARGIN = CAR.half_width + 1.0  # compute_reference_lap's default safety is 1 m


# --------------------------------------------------------------------------- test strips


def build_strip(name: str, pieces: list[tuple], width: float, step: float = 4.0) -> Track:
    """A strip from straight ``("S", length)`` and arc ``("A", radius, signed angle)`` pieces.

    Cross-sections are exactly perpendicular to the centre line (radial on arcs).
    Starts with a 6 m quad (start line at cross-section 1), ends with a run-off quad.
    """
    heading = 0.0
    pos = np.array([-6.0, 0.0])
    points, headings = [pos.copy()], [heading]
    pos = pos + 6.0 * np.array([1.0, 0.0])
    points.append(pos.copy())
    headings.append(heading)
    for piece in pieces:
        if piece[0] == "S":
            n = max(1, int(math.ceil(piece[1] / step)))
            for _ in range(n):
                pos = pos + piece[1] / n * np.array([math.cos(heading), math.sin(heading)])
                points.append(pos.copy())
                headings.append(heading)
        else:
            radius, angle = piece[1], piece[2]
            n = max(2, int(math.ceil(radius * abs(angle) / step)))
            side = math.copysign(1.0, angle)
            centre = pos + side * radius * np.array([-math.sin(heading), math.cos(heading)])
            start = heading
            for j in range(1, n + 1):
                heading = start + angle * j / n
                pos = centre - side * radius * np.array([-math.sin(heading), math.cos(heading)])
                points.append(pos.copy())
                headings.append(heading)
    pos = pos + 10.0 * np.array([math.cos(heading), math.sin(heading)])
    points.append(pos.copy())
    headings.append(heading)
    c = np.array(points)  # [M+1, 2]
    h = np.array(headings)
    normal = np.stack([-np.sin(h), np.cos(h)], axis=1)  # [M+1, 2] left
    m = len(c) - 1
    return Track(name, c + 0.5 * width * normal, c - 0.5 * width * normal, width, 1, m - 1, np.array([m // 2]))


STRAIGHT = build_strip("straight", [("S", 300.0)], 12.0, step=50.0)
ARC = build_strip("arc", [("S", 80.0), ("A", 40.0, math.pi / 2), ("S", 80.0)], 16.0)
S_BEND = build_strip("s-bend", [("S", 60.0), ("A", 40.0, math.pi / 2), ("A", 40.0, -math.pi / 2), ("S", 60.0)], 16.0)
HAIRPIN = build_strip("hairpin", [("S", 60.0), ("A", 20.0, math.pi), ("S", 60.0)], 16.0)


def wall_distance(points: np.ndarray, track: Track) -> np.ndarray:
    """Distance ``[K]`` from each point to the nearest wall segment (left or right polyline)."""
    a = np.concatenate([track.left[:-1], track.right[:-1]])  # [2M, 2]
    b = np.concatenate([track.left[1:], track.right[1:]])
    d = b - a
    p = points[:, None, :]  # [K, 1, 2]
    t = np.clip(((p - a) * d).sum(-1) / (d * d).sum(-1), 0.0, 1.0)  # [K, 2M]
    return np.linalg.norm(p - (a + t[..., None] * d), axis=-1).min(axis=1)


def const_limits(forward: float, brake: float, lateral: float):
    def limits(v: np.ndarray, car: CarConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        v = np.asarray(v, np.float64)
        return np.full_like(v, forward), np.full_like(v, brake), np.full_like(v, lateral)

    return limits


# --------------------------------------------------------------------------- corridor


def test_resample_sections_lie_on_the_walls():
    left, right, section, cut = resample_sections(ARC, 1.0, cut=(ARC.start, 0.3))
    np.testing.assert_allclose(left[section], ARC.left)
    np.testing.assert_allclose(right[section], ARC.right)
    # every fine cross-section ends on the walls: on the segment between two original wall points
    for walls, fine in ((ARC.left, left), (ARC.right, right)):
        probe = Track("w", walls, walls, 1.0, 0, 1, np.zeros(0))
        assert wall_distance(fine, probe).max() < 1e-9
    spacing = np.linalg.norm(np.diff(0.5 * (left + right), axis=0), axis=1)
    assert spacing.max() <= 1.0 + 1e-9 and spacing.min() > 0
    expect = ARC.center[ARC.start] + 0.3 * (ARC.center[ARC.start + 1] - ARC.center[ARC.start])
    np.testing.assert_allclose(0.5 * (left[cut] + right[cut]), expect)


# --------------------------------------------------------------------------- QP solver


def _qp_brute_force(h: np.ndarray, g: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Minimise ½xᵀHx + gᵀx on a box by trying every assignment (free / at lo / at hi)."""
    best, best_f = None, np.inf
    for states in itertools.product((0, -1, 1), repeat=len(g)):
        s = np.array(states)
        x = np.where(s == -1, lo, np.where(s == 1, hi, 0.0))
        free = s == 0
        if free.any():
            rhs = -(g[free] + h[np.ix_(free, ~free)] @ x[~free])
            x[free] = np.linalg.solve(h[np.ix_(free, free)], rhs)
        if np.any(x < lo - 1e-9) or np.any(x > hi + 1e-9):
            continue
        f = 0.5 * x @ h @ x + g @ x
        if f < best_f:
            best, best_f = x, f
    return best


@pytest.mark.parametrize("seed", range(6))
def test_box_qp_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = 7
    band = np.zeros((n + 2, n))  # rows of a second-difference-like operator with random weights
    for j in range(n):
        band[j : j + 3, j] = rng.normal(size=3)
    h = band.T @ band + 0.05 * np.eye(n)  # pentadiagonal, positive definite
    g = rng.normal(size=n) * 3.0
    lo = -rng.uniform(0.1, 1.0, n)
    hi = rng.uniform(0.1, 1.0, n)
    expect = _qp_brute_force(h, g, lo, hi)
    d0, d1, d2 = np.diag(h).copy(), np.diag(h, 1).copy(), np.diag(h, 2).copy()
    cold, _ = _box_qp(d0, d1, d2, g, lo, hi, np.zeros(n), np.zeros(n, np.int64), 1000)
    np.testing.assert_allclose(cold, expect, atol=1e-8)
    # a warm start from any guess of the active set ends at the same minimiser
    guess = rng.integers(-1, 2, n).astype(np.int64)
    warm, _ = _box_qp(d0, d1, d2, g, lo, hi, rng.uniform(lo, hi), guess, 1000)
    np.testing.assert_allclose(warm, expect, atol=1e-8)


# --------------------------------------------------------------------------- racing line


@pytest.mark.parametrize("track", [ARC, S_BEND, HAIRPIN, "evo-mini", "evo-test"], ids=lambda t: getattr(t, "name", t))
def test_racing_line_stays_inside_the_corridor(track):
    track = get_track(track) if isinstance(track, str) else track
    ref = compute_reference_lap(track, CAR)
    left, right, _, _ = resample_sections(track, 1.0, cut=(track.start, start_fraction(track)))
    half = 0.5 * np.linalg.norm(left - right, axis=1)
    assert len(ref.line) == len(left)
    assert np.all(np.abs(ref.offset) <= half - MARGIN + 1e-9)
    # measured from the real walls: at least the margin (a few cm lost between cross-sections)
    assert wall_distance(ref.line, track).min() >= MARGIN - 0.05
    # the line uses the road: it reaches both edges of the corridor somewhere
    assert ref.offset.max() > 0.9 * (half.min() - MARGIN) or ref.offset.min() < -0.9 * (half.min() - MARGIN)


def test_racing_line_starts_where_the_cars_start():
    for track in (ARC, get_track("evo-test")):
        ref = compute_reference_lap(track, CAR)
        pos, _ = World(track, 1, CAR, sim=SimConfig()).start_pose(0.0)
        np.testing.assert_allclose(ref.line[ref.start_index], pos[0], atol=1e-9)
        assert ref.finish_index == ref.section[track.finish]
        assert ref.time[ref.start_index] == 0.0 and ref.speed[ref.start_index] == 0.0


def test_racing_line_goes_outside_inside_outside_through_a_curve():
    ref = compute_reference_lap(ARC, CAR)
    arc_start = ARC.s[ARC.start] + 80.0  # centre-line arc length where the 90° left turn begins
    arc_end = arc_start + 20.0 * math.pi
    apex = int(np.argmin(np.abs(ref.center_s - 0.5 * (arc_start + arc_end))))
    before = (ref.center_s > ARC.s[ARC.start]) & (ref.center_s < arc_start)
    after = (ref.center_s > arc_end) & (ref.center_s < ARC.s[ARC.finish])
    bound = 8.0 - MARGIN
    assert ref.offset[before].min() < -0.5 * bound  # left turn: turn in from the right (outside)
    assert ref.offset[apex] > 0.8 * bound  # apex on the inside
    assert ref.offset[after].min() < -0.8 * bound  # and run out to the outside
    # straighter than the centre line: lower peak and lower total curvature
    centre_k = line_curvature(ARC.center)
    assert np.abs(ref.curvature).max() < 0.85 / 40.0
    seg = np.linalg.norm(np.diff(ref.line, axis=0), axis=1)
    centre_seg = np.linalg.norm(np.diff(ARC.center, axis=0), axis=1)
    assert np.sum(ref.curvature[1:] ** 2 * seg) < 0.6 * np.sum(centre_k[1:] ** 2 * centre_seg)


def test_racing_line_on_a_straight_is_the_centre_line():
    ref = compute_reference_lap(STRAIGHT, CAR)
    np.testing.assert_allclose(ref.offset, 0.0, atol=1e-6)
    np.testing.assert_allclose(ref.curvature, 0.0, atol=1e-9)


def test_racing_line_has_no_kinks():
    ref = compute_reference_lap(get_track("evo-technical"), CAR)
    k = ref.curvature
    neighbours = 0.5 * (k[:-2] + k[2:])  # a kink is a point whose curvature jumps from both neighbours'
    assert np.abs(k[1:-1] - neighbours).max() < 0.02


# --------------------------------------------------------------------------- speed profile and lap time


@pytest.mark.parametrize("name", ["evo-test", "evo-hairpins"])
def test_speed_profile_respects_the_car_limits(name):
    ref = compute_reference_lap(get_track(name), CAR)
    v, kappa = ref.speed, np.abs(ref.curvature)
    _, _, lat = accel_limits(v, CAR)
    assert np.all(v * v * kappa <= lat * (1 + 1e-6) + 1e-9)
    # longitudinal, segment by segment: (v1² - v0²) / 2ds within the friction-circle limits
    ds = np.diff(ref.s)
    accel = (v[1:] ** 2 - v[:-1] ** 2) / (2 * ds)  # [K-1]
    vm = 0.5 * (v[1:] + v[:-1])
    km = 0.5 * (kappa[1:] + kappa[:-1])
    forward, brake, grip = accel_limits(vm, CAR)
    resist = (CAR.drag * vm**2 + CAR.rolling_resistance) / CAR.mass
    # tyre force left by cornering; riding the lateral cap counts as 99% of it (a hair
    # below the cap the friction circle frees a little longitudinal grip)
    tyre = grip * np.sqrt(1.0 - np.minimum(vm**2 * km / grip, 0.99) ** 2)
    most = np.minimum(forward + resist, tyre) - resist  # net acceleration the car can have
    least = -(np.minimum(brake - resist, tyre) + resist)  # net deceleration, negative
    assert np.all(accel <= most + 0.05)
    assert np.all(accel >= least - 0.05)
    # and it does use them: somewhere the car accelerates and brakes at nearly full
    assert np.any(accel > 0.9 * most) and np.any(accel < 0.9 * least)


@pytest.mark.parametrize("name", ["evo-mini", "evo-technical"])
def test_lap_time_is_the_integral_of_ds_over_v(name):
    ref = compute_reference_lap(get_track(name), CAR)
    a, b = ref.start_index, ref.finish_index
    ds = np.diff(ref.s[a : b + 1])
    v = ref.speed[a : b + 1]
    assert ref.lap_time > 0
    assert ref.lap_time == pytest.approx(segment_times(ds, v).sum(), rel=1e-12)
    # trapezoid rule on 1/v after the first segment, which starts from rest (v = 0)
    first = 2 * ds[0] / v[1]
    trapezoid = np.sum(0.5 * (1 / v[1:-1] + 1 / v[2:]) * ds[1:])
    assert ref.lap_time == pytest.approx(first + trapezoid, rel=5e-3)
    assert np.all(np.diff(ref.time[a : b + 1]) > 0)
    assert ref.length / v.max() < ref.lap_time < ref.length / v[1:].mean() * 1.5


def test_straight_lap_time_with_constant_limits_is_closed_form():
    ref = compute_reference_lap(STRAIGHT, CAR, limits=const_limits(5.0, 10.0, 12.0))
    length = STRAIGHT.s[STRAIGHT.finish] - STRAIGHT.s[STRAIGHT.start] - START_AHEAD
    assert ref.length == pytest.approx(length)
    assert ref.lap_time == pytest.approx(math.sqrt(2 * length / 5.0), rel=1e-9)


def test_straight_lap_time_matches_integration_of_the_engine_limit():
    ref = compute_reference_lap(STRAIGHT, CAR)
    length = STRAIGHT.s[STRAIGHT.finish] - STRAIGHT.s[STRAIGHT.start] - START_AHEAD
    # dv/dt = a(v): time t(v) = ∫ dv / a, distance x(v) = ∫ v dv / a, on a fine speed grid
    v = np.linspace(0.0, 80.0, 400_001)
    a = accel_limits(v, CAR)[0]
    assert a.min() > 0
    t = np.concatenate([[0.0], np.cumsum(0.5 * (1 / a[1:] + 1 / a[:-1]) * np.diff(v))])
    x = np.concatenate([[0.0], np.cumsum(0.5 * (v[1:] / a[1:] + v[:-1] / a[:-1]) * np.diff(v))])
    assert x[-1] > length
    assert ref.lap_time == pytest.approx(np.interp(length, x, t), rel=2e-3)
    assert ref.speed[ref.finish_index] == pytest.approx(np.interp(length, x, v), rel=2e-3)


def test_reference_is_cached_and_depends_on_the_car():
    track = get_track("evo-mini")
    ref = compute_reference_lap(track, CAR)
    assert compute_reference_lap(track, CarConfig()) is ref
    grippy = compute_reference_lap(track, CarConfig(grip=2.0))
    assert grippy is not ref and grippy.lap_time < ref.lap_time
    slow = compute_reference_lap(track, CarConfig(engine_force=10000.0))
    assert slow.lap_time > ref.lap_time


def test_too_narrow_track_raises():
    narrow = build_strip("narrow", [("S", 100.0)], 3.5)
    with pytest.raises(TrackError, match="narrowest"):
        compute_reference_lap(narrow, CAR)
