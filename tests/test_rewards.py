"""Reward terms, composition, episode rules and reference trajectories, against per-car Python references."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import strip as centre_strip

from evo_rl.config import EpisodeConfig, RewardTermConfig
from evo_rl.errors import ConfigError, EvoError
from evo_rl.rewards import ReferenceTrajectory, RewardManager, StepContext, resample
from evo_rl.rewards.reference_trajectory import as_points3, load_reference, project_on_track, save_reference
from evo_rl.rewards.trajectory import DELTA, search_best, straight_runs
from evo_rl.sim.track import Track

HEIGHT = 9.0


def strip(center: np.ndarray, width: float = 12.0, start: int = 2, finish_from_end: int = 3) -> Track:
    """A track around a centre line: walls at +-width/2 along averaged normals, two checkpoints."""
    finish = len(center) - 1 - finish_from_end
    cps = np.array([start + (finish - start) // 3, start + 2 * (finish - start) // 3])
    return centre_strip(center, width, start, finish, cps, name="test", height=HEIGHT)


def hairpin_center() -> np.ndarray:
    """100 m along +x, a half circle of radius 15 m to the left, 100 m back along -x."""
    a = np.stack([np.linspace(0, 100, 51), np.zeros(51)], 1)
    t = np.linspace(-np.pi / 2, np.pi / 2, 25)[1:-1]
    b = np.stack([100 + 15 * np.cos(t), 15 + 15 * np.sin(t)], 1)
    c = np.stack([np.linspace(100, 0, 51), np.full(51, 30.0)], 1)
    return np.concatenate([a, b, c])


@pytest.fixture(scope="module")
def hairpin() -> Track:
    return strip(hairpin_center())


def world(n: int, pos3: np.ndarray | None = None, **arrays: np.ndarray) -> SimpleNamespace:
    """A fake World with the attributes the terms read."""
    pos3 = np.zeros((n, 3)) if pos3 is None else np.asarray(pos3, dtype=np.float64)
    base = dict(
        progress_s=np.zeros(n),
        lateral=np.zeros(n),
        quad=np.zeros(n, np.int32),
        vel=np.zeros((n, 2)),
        wall_contact=np.zeros(n, bool),
        cp_forward=np.zeros(n, np.int32),
        cp_backward=np.zeros(n, np.int32),
        finished=np.zeros(n, bool),
        airborne=np.zeros(n, bool),
    )
    base.update(arrays)
    return SimpleNamespace(position3=lambda: pos3.copy(), **base)


def ctx_of(w: SimpleNamespace, n: int, step: int = 1, **kw) -> StepContext:
    fields = dict(
        world=w,
        prev_progress_s=np.zeros(n),
        prev_pos3=np.zeros((n, 3)),
        action=np.zeros((n, 3), np.float32),
        prev_action=np.zeros((n, 3), np.float32),
        steps=np.full(n, step),
        dt=0.05,
    )
    fields.update(kw)
    return StepContext(**fields)


GAME = frozenset({"position", "velocity", "checkpoints", "finish", "air"})  # what a game without a track model reports


def manager(
    track: Track, n: int, *terms: RewardTermConfig, reference=None, source="sim", provides=None, **episode
) -> RewardManager:
    ep = EpisodeConfig(**{"no_progress_seconds": None, **episode})
    m = RewardManager(list(terms), ep, track, n, source=source, reference=reference, provides=provides)
    m.reset(np.ones(n, bool))
    return m


# --------------------------------------------------------------------------- progress_trajectory


class TmrlReward:
    """One car's trajectory reward, written as a plain loop over every point (the oracle)."""

    def __init__(self, data, check_forward=500, check_backward=10, failure_countdown=10, min_steps=70, max_stray=100.0):
        self.data, self.f, self.b = data, check_forward, check_backward
        self.countdown, self.min_steps, self.max_stray = failure_countdown, min_steps, max_stray
        self.cur = self.steps = self.failures = 0

    def dist(self, pos, i):
        dx, dy, dz = (self.data[i] - pos).tolist()
        return math.sqrt(dx * dx + dy * dy + dz * dz)

    def step(self, pos):
        self.steps += 1
        terminated = False
        min_d, index, patience, best = math.inf, self.cur, self.f, self.cur
        while True:
            d = self.dist(pos, index)
            if d <= min_d:
                min_d, best, patience = d, index, self.f
            index += 1
            patience -= 1
            if index >= len(self.data) or patience <= 0:
                if min_d > self.max_stray:
                    best = self.cur
                break
        reward = (best - self.cur) / 100.0
        if best == self.cur:
            min_d, index = math.inf, self.cur
            while True:
                d = self.dist(pos, index)
                if d <= min_d:
                    min_d, best, patience = d, index, self.b
                index -= 1
                patience -= 1
                if index <= 0 or patience <= 0:
                    break
            if self.steps > self.min_steps:
                self.failures += 1
                terminated = self.failures > self.countdown
        else:
            self.failures = 0
        self.cur = best
        return reward, terminated


def _along_ref(points: np.ndarray, s: float) -> np.ndarray:
    """The point at arc length s of a polyline."""
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    cum = np.concatenate([[0], np.cumsum(seg)])
    k = min(np.searchsorted(cum, s, side="right") - 1, len(seg) - 1)
    k = max(k, 0)
    return points[k] + (points[k + 1] - points[k]) * (s - cum[k]) / seg[k]


def scripted_paths(track: Track, steps: int, rng: np.random.Generator) -> np.ndarray:
    """[steps, cars, 3] positions: forward to the finish, forward then backward, a hairpin cut,
    a stray, standing still, a random walk and noisy forward driving."""
    ref = ReferenceTrajectory.centre(track).points3
    length = float(np.linalg.norm(np.diff(ref, axis=0), axis=1).sum())
    up = np.array([0.0, 1.0, 0.0])
    paths = []
    fwd = [_along_ref(ref, min(length, 1.5 * t)) for t in range(1, steps + 1)]  # 30 m/s
    paths.append(fwd)
    back = [_along_ref(ref, 1.5 * t if t < steps // 2 else max(0.0, 1.5 * (steps - t))) for t in range(1, steps + 1)]
    paths.append(back)
    cut = [_along_ref(ref, 0.8 * t) if t < 60 else _along_ref(ref, 200 + 0.8 * (t - 60)) for t in range(1, steps + 1)]
    paths.append(cut)  # jumps 150+ m of reference, more than check_forward (50 m)
    side = np.array([0.0, 0.0, 1.0])
    stray = [_along_ref(ref, 1.0 * t) + side * (0 if t < 40 else 3.0 * (t - 40)) for t in range(1, steps + 1)]
    paths.append(stray)
    paths.append([ref[0] + 0.01 * np.sin(t) * up for t in range(steps)])
    walk = ref[0] + np.cumsum(rng.normal(0, 1.5, (steps, 3)) * [1, 0.1, 1], axis=0)
    paths.append(list(walk))
    noisy = [_along_ref(ref, min(length, 2.0 * t)) + rng.normal(0, 2.0, 3) for t in range(1, steps + 1)]
    paths.append(noisy)
    return np.array(paths).transpose(1, 0, 2)  # [steps, cars, 3]


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"check_forward": 20, "check_backward": 3, "min_steps": 5, "failure_countdown": 3, "max_stray": 8.0},
        {"check_forward": 1, "check_backward": 1, "min_steps": 0, "failure_countdown": 0, "max_stray": 2.0},
    ],
)
def test_progress_trajectory_matches_per_car_loop(hairpin: Track, params: dict) -> None:
    rng = np.random.default_rng(0)
    steps = 160
    paths = scripted_paths(hairpin, steps, rng)
    n = paths.shape[1]
    m = manager(hairpin, n, RewardTermConfig(term="progress_trajectory", params={"end_of_track": 0.0, **params}))
    term = m.terms[0]
    oracles = [TmrlReward(term.data, **params) for _ in range(n)]
    ended = np.zeros(n, bool)
    for t in range(steps):
        out = m(ctx_of(world(n, paths[t]), n, t + 1))
        for i, o in enumerate(oracles):
            if ended[i]:
                continue
            r, done = o.step(paths[t, i])
            assert out.terms["progress_trajectory"][i] == pytest.approx(r, abs=1e-6), (t, i)
            assert out.terminate[i] == done, (t, i)
            assert term.cur[i] == o.cur
            if done:
                assert out.reason[i] == "failure_countdown"
                ended[i] = True
        m.reset(out.terminate)  # the env restarts ended cars; they stay out of the comparison
    assert ended.any()  # the car standing still at least


def test_progress_trajectory_scripted_behaviour(hairpin: Track) -> None:
    n = 1
    m = manager(hairpin, n, RewardTermConfig(term="progress_trajectory"))
    ref = ReferenceTrajectory.centre(hairpin).points3
    total = 0.0
    for t in range(1, 21):  # 20 steps of 1 m forward: 10 points per metre, 1/100 per point
        total += m(ctx_of(world(n, [_along_ref(ref, 1.0 * t)]), n, t)).reward[0]
    assert total == pytest.approx(2.0, abs=0.011)
    back = m(ctx_of(world(n, [_along_ref(ref, 19.0)]), n, 21))
    assert back.reward[0] == 0.0  # driving backwards earns nothing and costs nothing
    assert m.terms[0].cur[0] == 190  # the index rewound with the backward search
    again = m(ctx_of(world(n, [_along_ref(ref, 20.0)]), n, 22))
    assert again.reward[0] == pytest.approx(0.1)  # the metre given back is paid again
    # a jump across the hairpin, from 20 m to 170 m of reference (the return straight at x = 73.1),
    # is beyond check_forward (50 m): the index only reaches the nearest point of the first straight
    cut = m(ctx_of(world(n, [_along_ref(ref, 170.0)]), n, 23))
    assert m.terms[0].cur[0] == 691  # x = 4 + 69.1 = 73.1 m, 30 m from the car
    assert cut.reward[0] == pytest.approx(4.91)


def test_progress_trajectory_finish_and_constant(hairpin: Track) -> None:
    n = 2
    term = RewardTermConfig(term="progress_trajectory", params={"end_of_track": 100.0, "constant_penalty": -0.5})
    m = manager(hairpin, n, term)
    ref = ReferenceTrajectory.centre(hairpin).points3
    pos = np.stack([ref[0], ref[0]])
    finished = np.array([True, False])
    out = m(ctx_of(world(n, pos, finished=finished), n))
    assert out.reward.tolist() == [99.5, -0.5]
    out = m(ctx_of(world(n, pos, finished=finished), n, 2))  # the finish pays once per episode
    assert out.reward.tolist() == [-0.5, -0.5]


def test_search_skips_give_the_same_index() -> None:
    """The kernel skips points that cannot be nearer; compare with the point-by-point loop on
    uneven references (resample off), references of straights and turns, and far-away cars."""
    rng = np.random.default_rng(1)
    for trial in range(60):
        k = 300
        if trial % 2:
            data = np.cumsum(rng.uniform(0.0, 0.3, (k, 3)) * [1, 0.1, 1] * rng.choice([-1, 1], (k, 3)), axis=0)
        else:
            heading = np.cumsum(np.where(rng.random(k) < 0.05, rng.normal(0, 1.0, k), 0.0))
            data = np.cumsum(np.stack([np.cos(heading), np.zeros(k), np.sin(heading)], 1) * 0.1, axis=0)
        step = float(np.linalg.norm(np.diff(data, axis=0), axis=1).max()) * (1 + 1e-9)
        f, b = int(rng.integers(1, 120)), int(rng.integers(1, 20))
        run = straight_runs(data, DELTA, f)
        stray = float(rng.uniform(0.5, 20))
        for _ in range(20):
            cur = int(rng.integers(0, k))
            pos = data[int(rng.integers(0, k))] + rng.normal(0, rng.choice([0.1, 2.0, 30.0]), 3)
            oracle = TmrlReward(data, f, b, max_stray=stray)
            oracle.cur = cur
            oracle.step(pos)
            got = search_best(data, run, step, pos[0], pos[1], pos[2], cur, f, b, stray)
            assert got == oracle.cur, (trial, cur)


def test_straight_runs() -> None:
    line = np.stack([np.arange(50) * 0.1, np.zeros(50), np.zeros(50)], 1)  # 4.9 m straight
    bend = line[-1] + np.stack([np.zeros(20), np.zeros(20), np.arange(1, 21) * 0.1], 1)  # then a right angle
    run = straight_runs(np.concatenate([line, bend]), 0.05, 1000)
    assert run[0] == 49 and run[10] == 39  # up to the corner point
    assert run[48] == 1  # the corner's next point is off the ray beyond
    assert straight_runs(line, 0.05, 7)[0] == 7  # capped


# --------------------------------------------------------------------------- NumPy terms


def test_numpy_terms_match_per_car_formulas(hairpin: Track) -> None:
    rng = np.random.default_rng(2)
    n = 64
    names = ["progress_distance", "time_penalty", "speed", "wall_contact", "lateral_offset", "steering_smoothness"]
    cfgs = [RewardTermConfig(term=t) for t in names]
    cfgs.append(RewardTermConfig(term="potential_progress", params={"gamma": 0.9, "scale": 2.0}))
    cfgs.append(RewardTermConfig(term="lateral_offset", name="lat2", params={"power": 2, "tolerance": 1.0}))
    m = manager(hairpin, n, *cfgs)
    tangent = np.diff(hairpin.center, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    s_max = hairpin.s[-1]
    for _ in range(5):
        prev_s, s = rng.uniform(-5, s_max + 5, n), rng.uniform(-5, s_max + 5, n)
        lat, quad = rng.normal(0, 3, n), rng.integers(0, hairpin.n_quads, n).astype(np.int32)
        vel, wall = rng.normal(0, 20, (n, 2)), rng.random(n) < 0.3
        act, prev_act = rng.uniform(-1, 1, (n, 3)).astype(np.float32), rng.uniform(-1, 1, (n, 3)).astype(np.float32)
        w = world(n, progress_s=s, lateral=lat, quad=quad, vel=vel, wall_contact=wall)
        out = m(ctx_of(w, n, prev_progress_s=prev_s, action=act, prev_action=prev_act))
        s0 = hairpin.s[hairpin.start]
        for i in range(n):
            expect = {
                "progress_distance": s[i] - prev_s[i],  # centre line: metres along the track
                "time_penalty": -1.0,
                "speed": vel[i] @ tangent[quad[i]],
                "wall_contact": -1.0 if wall[i] else 0.0,
                "lateral_offset": -abs(lat[i]),
                "steering_smoothness": -((float(act[i, 2]) - float(prev_act[i, 2])) ** 2),
                "potential_progress": 0.9 * 2.0 * (s[i] - s0) - 2.0 * (prev_s[i] - s0),
                "lat2": -(max(abs(lat[i]) - 1.0, 0.0) ** 2),
            }
            for label, value in expect.items():
                assert out.terms[label][i] == pytest.approx(value, rel=1e-5, abs=1e-4), (label, i)


def _line_dist(a: np.ndarray, b: np.ndarray, q: np.ndarray) -> float:
    """Distance of q from the line through a and b."""
    d = b - a
    return abs(d[0] * (q - a)[1] - d[1] * (q - a)[0]) / float(np.linalg.norm(d))


def _point_coords(track: Track, q: np.ndarray) -> tuple[float, float]:
    """Track coordinates of one plane point, as the simulator defines them: in the quad holding
    it, progress by the distances to its two gates, lateral from its centre segment; off the
    strip, the nearest centre-line segment."""
    for k in range(track.n_quads):
        corners = [track.left[k], track.left[k + 1], track.right[k + 1], track.right[k]]
        crosses = []
        for a, b in zip(corners, corners[1:] + corners[:1], strict=True):
            crosses.append((b - a)[0] * (q - a)[1] - (b - a)[1] * (q - a)[0])
        if all(c <= 1e-9 for c in crosses) or all(c >= -1e-9 for c in crosses):
            db = _line_dist(track.left[k], track.right[k], q)
            df = _line_dist(track.left[k + 1], track.right[k + 1], q)
            s = track.s[k] + (track.s[k + 1] - track.s[k]) * db / (db + df)
            e = track.center[k + 1] - track.center[k]
            lat = (e[0] * (q - track.center[k])[1] - e[1] * (q - track.center[k])[0]) / np.linalg.norm(e)
            return s, lat
    best = None
    for k in range(track.n_quads):
        a, b = track.center[k], track.center[k + 1]
        d = b - a
        t = min(max(float((q - a) @ d / (d @ d)), 0.0), 1.0)
        dist = float(np.linalg.norm(q - (a + t * d)))
        if best is None or dist < best[0]:
            cross = d[0] * (q - a)[1] - d[1] * (q - a)[0]
            best = (dist, track.s[k] + t * np.linalg.norm(d), cross / np.linalg.norm(d))
    return best[1], best[2]


def _ref_track_coords(track: Track, pts3: np.ndarray) -> tuple[list, list, list]:
    """Per kept reference point (track progress strictly increasing): progress, lateral, distance along."""
    rows = []
    along = 0.0
    for j, p in enumerate(pts3):
        if j:
            along += float(np.linalg.norm(pts3[j] - pts3[j - 1]))
        s, lat = _point_coords(track, np.array([p[0], p[2]]))
        if not rows or s > max(r[0] for r in rows):
            rows.append((s, lat, along))
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


def test_custom_reference_terms(hairpin: Track) -> None:
    """A racing line 2 m left of the centre on the first straight, 2 m right on the way back."""
    center = hairpin.center[hairpin.start : hairpin.finish + 1]
    d = np.gradient(center, axis=0)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    offset = np.where(np.arange(len(center)) < len(center) // 2, 2.0, -2.0)
    line = center + np.stack([-d[:, 1], d[:, 0]], 1) * offset[:, None]
    ref3 = as_points3(line, HEIGHT)
    n = 40
    m = manager(
        hairpin,
        n,
        RewardTermConfig(term="progress_distance"),
        RewardTermConfig(term="lateral_offset"),
        reference=ref3,
        max_stray=4.0,
    )
    s_pts, lat_pts, along_pts = _ref_track_coords(hairpin, ref3)

    def along(s: float) -> float:
        if s < s_pts[0]:
            return s - s_pts[0]
        if s > s_pts[-1]:
            return along_pts[-1] + s - s_pts[-1]
        return float(np.interp(s, s_pts, along_pts))

    rng = np.random.default_rng(3)
    s, prev = rng.uniform(-3, hairpin.s[-1], n), rng.uniform(-3, hairpin.s[-1], n)
    lat = rng.normal(0, 4, n)
    out = m(ctx_of(world(n, progress_s=s, lateral=lat), n, prev_progress_s=prev))
    for i in range(n):
        assert out.terms["progress_distance"][i] == pytest.approx(along(s[i]) - along(prev[i]), abs=1e-3)
        off = lat[i] - float(np.interp(s[i], s_pts, lat_pts))
        assert out.terms["lateral_offset"][i] == pytest.approx(-abs(off), abs=1e-3)
        assert out.terminate[i] == (abs(off) > 4.0)
        assert out.reason[i] == ("max_stray" if abs(off) > 4.0 else "")


def test_checkpoint_term(hairpin: Track) -> None:
    n = 3
    cfg = RewardTermConfig(term="checkpoint", params={"constant": -0.1})
    m = manager(hairpin, n, cfg)
    z = np.zeros(n, np.int32)
    # car 0 passes two checkpoints; car 1 passes one, crosses it back, and passes it again; car 2 finishes
    script = [
        ([1, 1, 0], [0, 0, 0], [0, 0, 0]),
        ([1, 0, 0], [0, 1, 0], [0, 0, 0]),
        ([0, 1, 0], [0, 0, 0], [0, 0, 1]),
        ([0, 1, 0], [0, 0, 0], [0, 0, 1]),
    ]
    expect = [[499.9, 499.9, -0.1], [499.9, -10.1, -0.1], [-0.1, -0.1, 99.9], [-0.1, 499.9, -0.1]]
    for t, (fw, bw, fin) in enumerate(script):
        w = world(
            n, cp_forward=np.array(fw, np.int32) + z, cp_backward=np.array(bw, np.int32), finished=np.array(fin, bool)
        )
        out = m(ctx_of(w, n, t + 1))
        assert out.reward.tolist() == pytest.approx(expect[t]), t


def test_potential_progress_is_zero_at_terminal_states(hairpin: Track) -> None:
    n = 2
    m = manager(hairpin, n, RewardTermConfig(term="potential_progress", params={"gamma": 0.5}))
    s0 = hairpin.s[hairpin.start]
    w = world(n, progress_s=np.array([s0 + 10, s0 + 10]), finished=np.array([True, False]))
    out = m(ctx_of(w, n, prev_progress_s=np.array([s0 + 4, s0 + 4])))
    assert out.reward.tolist() == pytest.approx([-4.0, 0.5 * 10 - 4])


def test_air_time_needs_a_source_that_reports_it(hairpin: Track) -> None:
    with pytest.raises(ConfigError, match=r"air_time.*needs air.*source 'sim'"):
        manager(hairpin, 2, RewardTermConfig(term="air_time"))
    m = manager(hairpin, 2, RewardTermConfig(term="air_time"), source="game", provides=GAME)
    out = m(ctx_of(world(2, airborne=np.array([True, False])), 2))
    assert out.reward.tolist() == pytest.approx([-0.05, 0.0])


# --------------------------------------------------------------------------- composition and config errors


def test_weighted_sum_and_labels(hairpin: Track) -> None:
    n = 5
    m = manager(
        hairpin,
        n,
        RewardTermConfig(term="time_penalty", weight=0.25),
        RewardTermConfig(term="wall_contact", weight=3.0),
        RewardTermConfig(term="time_penalty", name="time2", weight=-2.0),
    )
    wall = np.array([1, 0, 1, 0, 0], bool)
    out = m(ctx_of(world(n, wall_contact=wall), n))
    assert list(out.terms) == ["time_penalty", "wall_contact", "time2"]
    assert out.terms["wall_contact"].tolist() == (-3.0 * wall).tolist()
    assert out.reward.dtype == np.float32 and out.reward.shape == (n,)
    np.testing.assert_allclose(out.reward, sum(out.terms.values()), rtol=1e-6)
    np.testing.assert_allclose(out.reward, -0.25 - 3.0 * wall + 2.0)


def test_config_errors(hairpin: Track) -> None:
    with pytest.raises(ConfigError, match=r"unknown reward term 'speeed'.*progress_trajectory"):
        manager(hairpin, 1, RewardTermConfig(term="speeed"))
    with pytest.raises(
        ConfigError, match=r"(?s)progress_trajectory.*params.check_forwad: unknown parameter.*check_forward"
    ):
        manager(hairpin, 1, RewardTermConfig(term="progress_trajectory", params={"check_forwad": 5}))
    with pytest.raises(ConfigError, match=r"(?s)lateral_offset.*params.power = -1"):
        manager(hairpin, 1, RewardTermConfig(term="lateral_offset", params={"power": -1}))
    with pytest.raises(ConfigError, match="labelled 'speed'"):
        manager(hairpin, 1, RewardTermConfig(term="speed"), RewardTermConfig(term="speed"))
    with pytest.raises(ConfigError, match="car source 'moon': say what it provides"):
        manager(hairpin, 1, RewardTermConfig(term="speed"), source="moon")
    with pytest.raises(ConfigError, match=r"term 'speed' needs track, which the car source 'moon' does not provide"):
        manager(hairpin, 1, RewardTermConfig(term="speed"), source="moon", provides=GAME)


# Custom terms used through their import path (this module is importable as tests.test_rewards
# or test_rewards depending on how pytest was started).
def custom_fn(ctx: StepContext, scale: float = 1.0) -> np.ndarray:
    return scale * ctx.world.progress_s


def custom_bad_fn() -> np.ndarray:
    return np.zeros(1)


class CustomTerm:
    end_reason = "too_slow"

    def __init__(self, n_envs: int, track: Track, reference: ReferenceTrajectory, limit: float = 1.0) -> None:
        self.limit = limit
        self.calls = np.zeros(n_envs)

    def reset(self, mask: np.ndarray) -> None:
        self.calls[mask] = 0

    def __call__(self, ctx: StepContext) -> tuple[np.ndarray, np.ndarray]:
        self.calls += 1
        return self.calls.copy(), self.calls > self.limit


class CustomBadInit:
    def __init__(self, n_envs: int) -> None:
        pass


def test_custom_terms(hairpin: Track) -> None:
    mod = __name__
    m = manager(
        hairpin,
        2,
        RewardTermConfig(term=f"{mod}:custom_fn", params={"scale": 2.0}),
        RewardTermConfig(term=f"{mod}:CustomTerm", params={"limit": 1.5}),
    )
    w = world(2, progress_s=np.array([1.0, 2.0]))
    out = m(ctx_of(w, 2))
    assert out.terms[f"{mod}:custom_fn"].tolist() == [2.0, 4.0]
    assert not out.terminate.any()
    m.reset(np.array([True, False]))
    out = m(ctx_of(w, 2))
    assert out.terms[f"{mod}:CustomTerm"].tolist() == [1.0, 2.0]
    assert out.terminate.tolist() == [False, True] and out.reason[1] == "too_slow"


@pytest.mark.parametrize(
    "term, params, match",
    [
        ("no_such_module_xyz:f", {}, r"no_such_module_xyz:f.*cannot import module"),
        (f"{__name__}:missing", {}, r"has no attribute 'missing'"),
        (f"{__name__}:custom_fn", {"bad": 1}, r"custom_fn.*cannot be called as f\(ctx, \*\*params\).*bad"),
        (f"{__name__}:custom_bad_fn", {}, r"custom_bad_fn.*cannot be called as f\(ctx"),
        (f"{__name__}:CustomBadInit", {}, r"CustomBadInit.*cannot be built as Cls\(n_envs, track, reference"),
        (f"{__name__}:HEIGHT", {}, r"HEIGHT.*not a function or class"),
    ],
)
def test_custom_term_errors(hairpin: Track, term: str, params: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        manager(hairpin, 1, RewardTermConfig(term=term, params=params))


def test_custom_term_wrong_shape_is_reported(hairpin: Track) -> None:
    m = manager(hairpin, 3, RewardTermConfig(term=f"{__name__}:custom_fn"))
    with pytest.raises(EvoError, match="returned shape"):
        m(ctx_of(world(3, progress_s=np.zeros(2)), 3))


# --------------------------------------------------------------------------- episode rules


def test_no_progress_rule(hairpin: Track) -> None:
    n = 2
    m = manager(hairpin, n, RewardTermConfig(term="time_penalty"), no_progress_seconds=1.0)  # 20 steps
    ends = []
    for t in range(1, 31):
        s = np.array([20.0 + 2.0 * t, 20.0 + 0.01 * t])  # car 0 moves on, car 1 creeps
        out = m(ctx_of(world(n, progress_s=s), n, t))
        ends.append(out.terminate.copy())
        if out.terminate[1]:
            assert out.reason[1] == "no_progress"
            break
    assert t == 21  # the first step sets the best, 20 more steps without 1 m of gain
    assert not np.array(ends)[:, 0].any()


def test_stuck_rule(hairpin: Track) -> None:
    n = 2
    m = manager(hairpin, n, RewardTermConfig(term="time_penalty"), stuck_seconds=0.5, stuck_distance=2.0)  # 10 steps
    pos = np.zeros((n, 3))
    prev = pos.copy()
    for t in range(1, 30):
        pos = pos + np.array([[1.0, 0, 0], [0.5 if t <= 10 else 0.1, 0, 0]])
        out = m(ctx_of(world(n, pos), n, t, prev_pos3=prev))
        prev = pos
        if t < 10:
            assert not out.terminate.any()
        if out.terminate.any():
            break
    assert t == 18  # car 1 moved 2 * 0.5 + 8 * 0.1 = 1.8 m over the 10 steps up to step 18
    assert out.terminate.tolist() == [False, True] and out.reason[1] == "stuck"


# --------------------------------------------------------------------------- reference trajectories


def test_resample_spacing_and_ends() -> None:
    pts = np.array([[0, 0, 0], [3.05, 0, 0], [3.05, 0, 1.0], [3.05, 0, 1.0], [0, 0, 1.0]], float)
    dense = resample(pts)
    chords = np.linalg.norm(np.diff(dense, axis=0), axis=1)
    assert len(dense) == 72  # 7.1 m -> points at 0, 0.1, ..., 7.1
    np.testing.assert_allclose(dense[0], pts[0])
    assert chords.max() <= 0.1 + 1e-9 and np.median(chords) == pytest.approx(0.1)
    np.testing.assert_allclose(dense[31], [3.05, 0, 0.05], atol=1e-9)


def test_reference_files(tmp_path) -> None:
    pts = np.array([[0.0, 9.0, 0.0], [10.0, 9.0, 0.0], [20.0, 9.0, 5.0]])
    for name in ("r.npy", "r.csv"):
        save_reference(tmp_path / name, pts)
        np.testing.assert_allclose(load_reference(tmp_path / name), pts, atol=1e-6)
    (tmp_path / "plane.csv").write_text("# x, z\n0, 0\n10, 0\n20, 5\n")
    np.testing.assert_allclose(load_reference(tmp_path / "plane.csv", height=9.0), pts)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(EvoError, match="not a plain numeric"):
        load_reference(tmp_path / "obj.npy")
    (tmp_path / "reward.pkl").write_bytes(b"")
    with pytest.raises(EvoError, match="import-tmrl"):
        load_reference(tmp_path / "reward.pkl")
    with pytest.raises(EvoError, match=r"\(N, 3\)"):
        as_points3(np.zeros((5, 4)))
    with pytest.raises(EvoError, match="does not exist"):
        load_reference(tmp_path / "nope.npy")


def test_reference_uses_the_world_track_coordinates() -> None:
    """A reference recorded from a car: at each recorded point the car's own progress and
    lateral give offset 0 and the recorded distance along; off-strip points use the nearest segment."""
    from evo_rl.sim.generate import generate_track
    from evo_rl.sim.world import World

    track = generate_track(5, n_blocks=6)
    w = World(track, 1)
    w.reset()
    rows, coords = [w.position3()[0]], [(w.progress_s[0], w.lateral[0])]
    for t in range(120):
        w.step(np.array([[1.0, 0.0, np.clip(0.6 * np.sin(t / 9) - 0.1 * w.lateral[0], -1, 1)]], np.float32))
        rows.append(w.position3()[0])
        coords.append((w.progress_s[0], w.lateral[0]))
    pts, coords = np.array(rows), np.array(coords)
    ref = ReferenceTrajectory(pts, track)
    assert ref._s.size > 100  # the car kept moving forward
    kept = np.isin(coords[:, 0], ref._s)
    np.testing.assert_allclose(ref.offset(coords[kept, 0], coords[kept, 1]), 0.0, atol=1e-9)
    along = np.concatenate([[0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
    np.testing.assert_allclose(ref.along(coords[kept, 0]), along[kept], atol=1e-9)
    # on and off the strip, against the per-point definition
    rng = np.random.default_rng(7)
    lo, hi = track.left.min(0) - 30, track.left.max(0) + 30
    pts2 = rng.uniform(lo, hi, (40, 2))
    s, lat = project_on_track(track, pts2, chunk=7)
    for i, q in enumerate(pts2):
        sq, lq = _point_coords(track, q)
        assert s[i] == pytest.approx(sq, abs=1e-7) and lat[i] == pytest.approx(lq, abs=1e-7)


def test_parallel_kernel_matches_serial() -> None:
    from evo_rl.rewards.trajectory import trajectory_step

    rng = np.random.default_rng(5)
    data = resample(np.cumsum(rng.normal(0, 3, (100, 3)) * [1, 0.1, 1], axis=0))
    step = float(np.linalg.norm(np.diff(data, axis=0), axis=1).max()) * (1 + 1e-9)
    run = straight_runs(data, DELTA, 50)
    n = 300
    state = [rng.integers(0, len(data), n), rng.integers(0, 100, n), rng.integers(0, 12, n)]
    pos = data[rng.integers(0, len(data), n)] + rng.normal(0, 3, (n, 3))
    outs = []
    for kernel in (trajectory_step.serial, trajectory_step.parallel):
        cur, steps, fails = (a.astype(np.int64).copy() for a in state)
        reward, term = np.zeros(n), np.zeros(n, bool)
        kernel(data, run, step, pos, cur, steps, fails, 50, 10, 20.0, 70, 10, reward, term)
        outs.append((cur, steps, fails, reward, term))
    for a, b in zip(*outs, strict=True):
        np.testing.assert_array_equal(a, b)


def test_with_the_simulator() -> None:
    """Real cars on a generated track: every term runs, and the trajectory reward matches the oracle."""
    from evo_rl.sim.generate import generate_track
    from evo_rl.sim.world import World

    track = generate_track(3, n_blocks=8)
    n = 6
    w = World(track, n)
    names = ["progress_trajectory", "progress_distance", "speed", "wall_contact", "lateral_offset", "checkpoint"]
    m = manager(track, n, *(RewardTermConfig(term=t) for t in names), no_progress_seconds=40.0)
    w.reset()
    oracles = [TmrlReward(m.terms[0].data) for _ in range(n)]
    rng = np.random.default_rng(6)
    prev_action = np.zeros((n, 3), np.float32)
    total = np.zeros(n)
    for t in range(1, 201):
        a = np.zeros((n, 3), np.float32)
        a[:, 0] = 1.0
        a[:, 2] = np.clip(-0.15 * w.lateral + rng.normal(0, 0.3, n), -1, 1)  # keep roughly to the middle
        a[n - 1] = [0.0, 1.0, 0.0] if t > 60 else a[n - 1]  # the last car brakes (and reverses) after 3 s
        prev_s, prev3 = w.progress_s.copy(), w.position3()
        w.step(a)
        out = m(StepContext(w, prev_s, prev3, a, prev_action, np.full(n, t), w.dt))
        prev_action = a
        pos3 = w.position3()
        for i, o in enumerate(oracles):
            r, done = o.step(pos3[i])
            assert out.terms["progress_trajectory"][i] == pytest.approx(r, abs=1e-6)
            assert out.terminate[i] == (done and not w.finished[i])
        np.testing.assert_allclose(out.terms["progress_distance"], w.progress_s - prev_s, atol=1e-4)
        np.testing.assert_allclose(out.reward, sum(out.terms.values()), rtol=1e-5, atol=1e-4)
        total += out.terms["progress_trajectory"]
    assert total[:-1].min() > 1.0  # the driving cars covered tens of metres of reference
    assert m.terms[0].failure_counter[-1] > 10  # the braking car hit the failure countdown


# --------------------------------------------------------------------------- the example configs in the environment


@pytest.mark.parametrize("name", ["tmrl", "checkpoint", "racing-line"])
def test_example_configs_in_the_vector_env(name: str) -> None:
    from pathlib import Path

    from evo_rl.config import load_config
    from evo_rl.envs.vector import VecTrackEnv
    from evo_rl.sim.expert import ExpertDriver

    path = Path(__file__).resolve().parents[1] / "configs" / f"reward-{name}.yaml"
    cfg = load_config(path, ["env.n_envs=4", "env.track=evo-mini"])
    env = VecTrackEnv(cfg)
    env.reset(seed=0)
    driver = ExpertDriver(env.track, cfg.car)
    labels = [t.name or t.term for t in cfg.reward]
    sums = np.zeros(4)
    reasons = set()
    for _ in range(400):  # 20 s: a lap of evo-mini for the expert
        a = driver.act(env.world)
        a[3] = [0.0, 1.0, 0.0]  # one car never drives off
        _, reward, _, _, info = env.step(a)
        assert list(info["reward_terms"]) == labels
        np.testing.assert_allclose(reward, sum(info["reward_terms"].values()), rtol=1e-5, atol=1e-4)
        sums += reward
        reasons |= set(info["end_reason"][info["end_reason"] != ""])
    assert sums[0] > sums[3] + 50  # driving the lap pays more than standing still
    assert "finish" in reasons
    if name == "tmrl":
        assert "failure_countdown" in reasons  # the car that stands still


def test_no_progress_without_a_track_model_counts_metres_driven() -> None:
    n = 2
    m = RewardManager(
        [RewardTermConfig(term="time_penalty")],
        EpisodeConfig(no_progress_seconds=0.5),
        None,
        n,
        source="game",
        provides=GAME,
    )
    m.reset(np.ones(n, bool))
    pos = np.zeros((n, 3))
    ended_at = {}
    for step in range(1, 40):  # car 0 drives 0.5 m per step; car 1 creeps 0.01 m per step
        prev = pos.copy()
        pos = pos + np.array([[0.5, 0.0, 0.0], [0.01, 0.0, 0.0]])
        out = m(ctx_of(world(n, pos3=pos), n, step=step, prev_pos3=prev))
        for i in np.flatnonzero(out.terminate):
            ended_at.setdefault(int(i), (step, out.reason[i]))
    assert 0 not in ended_at
    assert ended_at[1] == (11, "no_progress")  # its last gain is the first step; 10 steps of 0.05 s later, 0.5 s
    # rules that need the car's place on a track are refused, naming the rule and the source
    with pytest.raises(ConfigError, match=r"episode.max_stray needs track.*car source 'game'"):
        RewardManager(
            [RewardTermConfig(term="time_penalty")], EpisodeConfig(max_stray=5.0), None, 1, "game", None, GAME
        )
    # a reference-reading term without any reference: refused when built
    with pytest.raises(ConfigError, match="needs a reference trajectory"):
        RewardManager([RewardTermConfig(term="progress_trajectory")], EpisodeConfig(), None, 1, "game", None, GAME)
