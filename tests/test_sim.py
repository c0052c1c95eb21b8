"""Simulator core: strip walks, car physics, LIDAR, camera and the World, checked against
plain-NumPy references (tests/numpy_oracle.py) and analytic cases."""

from __future__ import annotations

import math

import numba
import numpy as np
import numpy_oracle as ref
import pytest
from conftest import corner_track, s_track, straight_track, strip

from evo_rl.config import CarConfig, LidarConfig, SimConfig
from evo_rl.errors import EvoError
from evo_rl.sim.geometry import (
    HIT_END,
    HIT_LEFT,
    HIT_NONE,
    HIT_RIGHT,
    inset_walls,
    locate,
    strip_edges,
    trace_many,
    track_coords,
)
from evo_rl.sim.physics import accel_limits
from evo_rl.sim.sensors import GATE_CHECKPOINT, beam_layout
from evo_rl.sim.track import Track
from evo_rl.sim.world import World

# --------------------------------------------------------------------------- tracks


def random_inside(track: Track, margin: float, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random points ``[n, 2]`` inside the strip inset by ``margin``, and their quads."""
    left, right = inset_walls(track.left, track.right, margin)
    q = rng.integers(0, track.n_quads, n)
    u, v = rng.uniform(0.0, 1.0, (2, n, 1))
    back = left[q] * (1 - v) + right[q] * v
    front = left[q + 1] * (1 - v) + right[q + 1] * v
    return back * (1 - u) + front * u, q


def randomise(world: World, rng: np.random.Generator, max_speed: float) -> None:
    """Random poses, velocities and car states inside the road."""
    n = world.n_envs
    world.pos[:], world.quad[:] = random_inside(world.track, world.car.half_width + 1e-6, n, rng)
    world.yaw[:] = rng.uniform(-math.pi, math.pi, n)
    speed, direction = rng.uniform(0.0, max_speed, n), rng.uniform(-math.pi, math.pi, n)
    world.vel[:] = np.stack([speed * np.cos(direction), speed * np.sin(direction)], axis=1)
    world.steer[:] = rng.uniform(-1.0, 1.0, n)
    world.gear[:] = rng.integers(0, len(world.car.gear_ratios), n)
    world.yaw_rate[:] = rng.normal(0.0, 1.0, n)


def inside_quads(edges: np.ndarray, quads: np.ndarray, pos: np.ndarray, tol: float) -> np.ndarray:
    """Whether each point ``pos [N, 2]`` lies in its quad (within ``tol`` metres)."""
    e = edges[quads]  # [N, 4, 3]
    dist = e[:, :, 2] - e[:, :, 0] * pos[:, None, 0] - e[:, :, 1] * pos[:, None, 1]  # [N, 4]
    return (dist >= -tol).all(axis=1)


def follow_centre(world: World, target_speed: float, brake: bool = True) -> np.ndarray:
    """Actions [N, 3] of a centre-line follower at ``target_speed`` m/s."""
    t = world.track
    d = t.center[world.quad + 1] - t.center[world.quad]
    err = (world.yaw - np.arctan2(d[:, 1], d[:, 0]) + math.pi) % (2 * math.pi) - math.pi
    a = np.zeros((world.n_envs, 3), np.float32)
    v = world.speed()
    a[:, 0] = v < target_speed
    a[:, 1] = brake & (v > target_speed + 2.0)
    a[:, 2] = np.clip(2.0 * err + 0.3 * world.lateral, -1.0, 1.0)
    return a


@pytest.fixture(scope="module")
def s_world() -> World:
    return World(s_track(), 512)


# --------------------------------------------------------------------------- geometry


def test_trace_matches_reference_and_stays_inside() -> None:
    track = s_track()
    edges = strip_edges(track.left, track.right)
    rng = np.random.default_rng(1)
    k = 3000
    origins, quads = random_inside(track, 0.0, k, rng)
    angle = rng.uniform(-math.pi, math.pi, k)
    dirs = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    tmax = rng.choice([0.5, 5.0, 1e9], k)
    t, q_end, hit = trace_many(edges, quads, origins, dirs, tmax)
    for i in range(0, k, 7):
        rt, rq, rh = ref.trace(edges, int(quads[i]), *origins[i], *dirs[i], tmax[i])
        assert (t[i], q_end[i], hit[i]) == (rt, rq, rh)
    ends = origins + t[:, None] * dirs
    assert inside_quads(edges, q_end, ends, 1e-9).all()
    assert (hit[tmax == 1e9] != HIT_NONE).all()
    assert np.all(t <= tmax)


def test_trace_from_corners_never_escapes() -> None:
    track = s_track()
    edges = strip_edges(track.left, track.right)
    rng = np.random.default_rng(2)
    corners = np.concatenate([track.left[:-1], track.right[:-1], track.left[1:], track.right[1:]])
    quads = np.tile(np.arange(track.n_quads), 4)
    angle = rng.uniform(-math.pi, math.pi, len(quads))
    dirs = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    t, q_end, hit = trace_many(edges, quads, corners, dirs, np.full(len(quads), 1e9))
    ends = corners + t[:, None] * dirs
    assert inside_quads(edges, q_end, ends, 1e-9).all()
    assert (hit != HIT_NONE).all()


def test_trace_straight_is_analytic() -> None:
    track = straight_track(length=400.0, width=12.0)
    edges = strip_edges(track.left, track.right)
    angles = np.radians([30.0, 90.0, 150.0, -45.0, -90.0, 0.0])
    k = len(angles)
    origins = np.tile([100.0, 2.0], (k, 1))
    dirs = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    t, q_end, hit = trace_many(edges, np.full(k, 2), origins, dirs, np.full(k, 1e9))
    expected = [4.0 / math.sin(angles[0]), 4.0, 4.0 / math.sin(angles[2]), 8.0 / math.sin(math.pi / 4), 8.0, 300.0]
    np.testing.assert_allclose(t, expected, rtol=1e-12)
    assert hit.tolist() == [HIT_LEFT, HIT_LEFT, HIT_LEFT, HIT_RIGHT, HIT_RIGHT, HIT_END]
    assert q_end.tolist() == [2, 2, 1, 2, 2, track.n_quads - 1]


def test_locate_and_track_coords() -> None:
    track = straight_track(length=400.0, width=12.0)
    edges = strip_edges(track.left, track.right)
    pts = np.array([[10.0, 1.0], [149.0, -5.0], [399.0, 0.0], [200.0, 6.5], [-1.0, 0.0]])
    q = locate(edges, pts)
    assert q.tolist() == [0, 2, 7, -1, -1]
    s, lat = track_coords(edges, track.s, track.center, q[:3], pts[:3])
    np.testing.assert_allclose(s, [10.0, 149.0, 399.0], atol=1e-9)
    np.testing.assert_allclose(lat, [1.0, -5.0, 0.0], atol=1e-12)
    # on a curve, progress is continuous across every gate
    curve = corner_track()
    e = strip_edges(curve.left, curve.right)
    gate_points = 0.3 * curve.left[1:-1] + 0.7 * curve.right[1:-1]
    k = np.arange(1, curve.n_quads)
    s_back, _ = track_coords(e, curve.s, curve.center, k - 1, gate_points)
    s_front, _ = track_coords(e, curve.s, curve.center, k, gate_points)
    np.testing.assert_allclose(s_back, s_front, atol=1e-9)
    np.testing.assert_allclose(s_back, curve.s[1:-1], atol=1e-9)


# --------------------------------------------------------------------------- physics


@pytest.mark.parametrize("controls", ["binary", "analog"])
def test_step_matches_reference(controls: str) -> None:
    world = World(s_track(), 400, controls=controls)
    rng = np.random.default_rng(3)
    randomise(world, rng, max_speed=120.0)
    for _ in range(4):
        actions = rng.uniform(-1.3, 1.3, (world.n_envs, 3)).astype(np.float32)
        expected = ref.step(world, actions)
        world.step(actions)
        for key in ref.STATE:
            got, want = np.asarray(getattr(world, key), float), np.asarray(expected[key], float)
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10, err_msg=key)
    assert world.wall_contact.any() and not world.wall_contact.all()


def test_no_wall_crossing_at_any_speed() -> None:
    world = World(s_track(), 2000)
    rng = np.random.default_rng(4)
    inset = world.inset
    for _ in range(3):
        randomise(world, rng, max_speed=0.0)
        direction = rng.uniform(-math.pi, math.pi, world.n_envs)
        world.vel[:] = 200.0 * np.stack([np.cos(direction), np.sin(direction)], axis=1)
        touched = np.zeros(world.n_envs, bool)
        for _ in range(6):
            world.step(rng.uniform(-1.0, 1.0, (world.n_envs, 3)).astype(np.float32))
            assert inside_quads(inset, world.quad, world.pos, 1e-9).all()
            assert np.isfinite(world.pos).all() and np.isfinite(world.vel).all()
            touched |= world.wall_contact
        assert touched.mean() > 0.9
    # a wall at 200 m/s keeps at most its restitution of the speed into it
    straight = World(straight_track(width=12.0), 1)
    straight.yaw[:] = math.pi / 2
    straight.vel[:] = [0.0, 200.0]
    straight.step(np.zeros((1, 3), np.float32))
    assert straight.wall_contact[0]
    assert straight.pos[0, 1] <= 6.0 - straight.car.half_width + 1e-9
    assert -0.11 * 200.0 <= straight.vel[0, 1] < 0.0


def test_top_speed_braking_and_accel_limits_agree() -> None:
    car = CarConfig()
    world = World(straight_track(length=5000.0, width=20.0, step=100.0), 1, car=car)
    gas = np.array([[1.0, 0.0, 0.0]], np.float32)
    t50 = None
    for k in range(700):
        world.step(gas)
        if t50 is None and world.speed()[0] >= 50.0:
            t50 = (k + 1) * world.dt
    top = world.speed()[0]
    assert 80.0 <= top <= 95.0
    assert world.gear[0] == len(car.gear_ratios) - 1
    # time to 50 m/s from the accel_limits curve
    v = np.linspace(0.0, 50.0, 2001)
    fwd, brake, lateral = accel_limits(v, car)
    t_model = np.trapezoid(1.0 / fwd, v)
    assert abs(t50 - t_model) < 0.1 * t_model
    # braking distance from top speed, simulated and integrated from accel_limits
    x0, v0 = world.pos[0, 0], world.speed()[0]
    stop = np.array([[0.0, 1.0, 0.0]], np.float32)
    while world.vel[0, 0] > 1.0:
        world.step(stop)
    distance = world.pos[0, 0] - x0
    vb = np.linspace(1.0, v0, 2001)
    d_model = np.trapezoid(vb / accel_limits(vb, car)[1], vb)
    assert distance > 50.0
    assert abs(distance - d_model) < 0.1 * d_model
    assert np.all(lateral > 1.5 * 9.81) and np.all(np.diff(lateral) > 0)
    # braking on at a standstill drives backwards
    for _ in range(20):
        world.step(stop)
    assert world.vel[0, 0] < -1.0


def test_cornering_needs_braking() -> None:
    world = World(corner_track(radius=16.0, width=12.0), 2)
    world.vel[:, 0] = [60.0, 14.0]
    contact = np.zeros(2, bool)
    for _ in range(300):
        a = follow_centre(world, 60.0)
        a[1] = follow_centre(world, 14.0)[1]
        world.step(a)
        contact |= world.wall_contact
    assert contact.tolist() == [True, False]
    assert world.checkpoints[1] == 1


def test_steering_sign_grip_and_drift() -> None:
    track = strip(np.stack([np.linspace(0, 4000, 41), np.zeros(41)], axis=1), 3000.0, name="pad")
    world = World(track, 3)
    world.pos[:, 1] = 0.0
    world.vel[:] = [30.0, 0.0]
    steer = np.array([[0.0, 0.0, 0.5], [0.0, 0.0, 1.0], [0.0, 0.0, -1.0]], np.float32)
    for _ in range(30):
        world.step(steer)
    heading = np.stack([np.cos(world.yaw), np.sin(world.yaw)], axis=1)
    v = world.vel / world.speed()[:, None]
    slip = np.degrees(
        np.arcsin(np.clip(heading[:, 0] * v[:, 1] - heading[:, 1] * v[:, 0], -1, 1))
    )  # velocity left of heading
    assert world.yaw[0] < 0 and world.yaw[1] < 0 and world.yaw[2] > 0  # +steer turns right
    assert abs(slip[0]) < 0.5  # half lock: tyres grip
    assert slip[1] > 3.0 and slip[2] < -3.0  # full lock at speed: the velocity lags the heading (drift)
    car, v = world.car, world.speed()[0]
    expected = 0.5 * car.yaw_overshoot * (car.grip + car.downforce * v / 100.0)  # in g, below the grip limit
    assert abs(world.yaw_rate[0]) * v / 9.81 == pytest.approx(expected, rel=0.02)


def test_binary_and_analog_pedals() -> None:
    track = straight_track()
    half = np.array([[0.3, 0.0, 0.0]], np.float32)
    full = np.array([[1.0, 0.0, 0.0]], np.float32)
    speeds = []
    for controls, action in [("binary", half), ("binary", full), ("analog", half)]:
        world = World(track, 1, controls=controls)
        for _ in range(20):
            world.step(action)
        speeds.append(world.speed()[0])
    assert speeds[0] == speeds[1]
    assert 0.2 * speeds[1] < speeds[2] < 0.5 * speeds[1]


# --------------------------------------------------------------------------- world


def test_invalid_actions_raise_and_change_nothing(s_world: World) -> None:
    s_world.reset()
    s_world.step(np.tile(np.float32([1.0, 0.0, 0.2]), (s_world.n_envs, 1)))
    before = {k: getattr(s_world, k).copy() for k in ref.STATE}
    for bad in (np.nan, np.inf):
        actions = np.zeros((s_world.n_envs, 3), np.float32)
        actions[7, 2] = bad
        with pytest.raises(EvoError, match="NaN or infinite"):
            s_world.step(actions)
    with pytest.raises(EvoError, match="shape"):
        s_world.step(np.zeros((3, 3), np.float32))
    for key, value in before.items():
        np.testing.assert_array_equal(getattr(s_world, key), value, err_msg=key)


def test_deterministic_across_runs_and_threads() -> None:
    track = s_track()
    rng = np.random.default_rng(5)
    actions = rng.uniform(-1.0, 1.0, (40, 300, 3)).astype(np.float32)
    actions[:, :, 0] = np.abs(actions[:, :, 0])
    lateral = rng.uniform(-3.0, 3.0, 300)
    runs = []
    for threads in (1, numba.config.NUMBA_NUM_THREADS, 1):
        world = World(track, 300, sim=SimConfig(threads=threads))
        world.reset(lateral=lateral, yaw=0.1 * np.sign(lateral))
        for a in actions:
            world.step(a)
        runs.append({k: getattr(world, k).copy() for k in ref.STATE} | {"lidar": world.lidar()})
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    for key in runs[0]:
        np.testing.assert_array_equal(runs[0][key], runs[1][key], err_msg=key)
        np.testing.assert_array_equal(runs[0][key], runs[2][key], err_msg=key)


def test_reset_mask_and_perturbations(s_world: World) -> None:
    s_world.reset()
    for _ in range(10):
        s_world.step(np.tile(np.float32([1.0, 0.0, 0.0]), (s_world.n_envs, 1)))
    moved = s_world.pos.copy()
    mask = np.zeros(s_world.n_envs, bool)
    mask[:3] = True
    lateral = np.zeros(s_world.n_envs)
    lateral[:3] = [-2.0, 0.0, 100.0]
    s_world.reset(mask, lateral=lateral, yaw=np.full(s_world.n_envs, 0.05))
    np.testing.assert_array_equal(s_world.pos[3:], moved[3:])
    assert np.all(s_world.speed()[:3] == 0.0) and np.all(s_world.speed()[3:] > 5.0)
    room = s_world.track.width / 2 - s_world.car.half_width - 0.05
    np.testing.assert_allclose(s_world.lateral[:3], [-2.0, 0.0, room], atol=1e-9)
    np.testing.assert_allclose(s_world.yaw[:3], 0.05, atol=1e-12)
    assert (s_world.quad[:3] == s_world.track.start).all()
    assert inside_quads(s_world.inset, s_world.quad, s_world.pos, 1e-9).all()


def test_checkpoints_finish_and_race_time() -> None:
    track = straight_track(length=600.0, width=12.0, step=50.0, checkpoints=[4, 8])
    world = World(track, 1)
    gas = np.array([[1.0, 0.0, 0.0]], np.float32)
    forward = []
    while not world.finished[0]:
        world.step(gas)
        forward.append(world.cp_forward[0])
        assert world.race_time[0] <= len(forward) * world.dt + 1e-9
    assert world.checkpoints[0] == 2 and sum(forward) == 2
    crossing = world.race_time[0]
    s_finish = track.s[track.finish] - track.s[track.start]
    assert len(forward) * world.dt - world.dt <= crossing
    world.step(gas)
    assert world.race_time[0] == crossing and world.finished[0]
    # the race clock counts whole milliseconds, as the games do (10 ms physics sub-steps by default)
    assert world.race_time_ms.dtype == np.int64 and world.race_time_ms[0] % 10 == 0
    assert world.race_time[0] == world.race_time_ms[0] / 1000 and len(repr(float(world.race_time[0]))) <= 6
    assert world.progress_s[0] - track.s[track.start] > s_finish
    # back over checkpoint 8 in reverse
    world.reset()
    world.pos[0, 0], world.quad[0] = 400.5, 8
    world.yaw[0] = 0.0
    world.vel[0] = [-20.0, 0.0]
    world.step(np.zeros((1, 3), np.float32))
    assert (world.cp_backward[0], world.cp_forward[0], world.quad[0]) == (1, 0, 7)


# --------------------------------------------------------------------------- sensors


def test_lidar_on_a_straight_is_analytic() -> None:
    half = 6.0
    track = straight_track(length=2000.0, width=2 * half)
    world = World(track, 2, lidar=LidarConfig(range=100.0))
    world.pos[:] = [[500.0, 1.5], [800.0, -2.0]]
    world.quad[:] = [10, 16]
    world.yaw[:] = [0.0, 0.3]
    beams = world.lidar()
    angles = world.beam_angles
    assert beams.dtype == np.float32 and beams.shape == (2, 19)
    np.testing.assert_allclose(np.degrees(angles), np.linspace(90.0, -90.0, 19))
    for i in range(2):
        a = world.yaw[i] + angles
        y = world.pos[i, 1]
        sin = np.sin(a)
        wall = np.where(sin > 0, half - y, -half - y)  # signed distance to the wall the beam heads for
        dist = np.where(np.abs(sin) > 1e-12, wall / np.where(np.abs(sin) > 1e-12, sin, 1.0), np.inf)
        np.testing.assert_allclose(beams[i], np.minimum(dist, 100.0), rtol=1e-6)


@pytest.mark.parametrize("layout", ["fan", "tires"])
def test_lidar_matches_reference(layout: str) -> None:
    world = World(s_track(), 300, lidar=LidarConfig(layout=layout, range=60.0))
    randomise(world, np.random.default_rng(6), max_speed=0.0)
    np.testing.assert_allclose(world.lidar(), ref.lidar(world), rtol=1e-6)
    out = np.zeros((300, 19), np.float32)
    assert world.lidar(out=out) is out
    with pytest.raises(EvoError, match="C-contiguous float32"):
        world.lidar(out=np.zeros((300, 19), np.float64))


def test_tires_layout_angles() -> None:
    car = CarConfig()
    angles, origins = beam_layout(LidarConfig(layout="tires"), car)
    expected = [108, 96, 84, 72, *range(60, -61, -12), -72, -84, -96, -108]
    np.testing.assert_allclose(np.degrees(angles), expected)
    assert np.all(origins[:, 0] == car.wheelbase / 2)
    np.testing.assert_array_equal(origins[:, 1], [car.half_width] * 4 + [0.0] * 11 + [-car.half_width] * 4)
    fan360 = beam_layout(LidarConfig(beams=8, fov_deg=360.0), car)[0]
    np.testing.assert_allclose(np.degrees(fan360), 180.0 - 45.0 * np.arange(8))


def test_camera_horizon_walls_and_motion() -> None:
    track = straight_track(length=3000.0, width=12.0, checkpoints=[3])
    world = World(track, 3)
    world.pos[:] = [[400.0, 0.0], [400.0, 4.5], [402.5, 0.0]]
    world.quad[:] = 8
    img = world.images()
    assert img.shape == (3, 64, 64) and img.dtype == np.uint8
    horizon = world.camera_cfg.horizon * 64
    centre = img[0, :, 32].astype(int)
    sky = np.arange(64) + 0.5 < horizon
    assert np.all(centre[sky] >= 195) and np.all(centre[~sky] < 195)  # the end wall is past the drawing range
    assert np.all(np.diff(centre[sky]) >= 0)  # sky brightens towards the horizon
    # walls: left bright, right dark; the car near the left wall sees more of it
    row = int(horizon) - 1
    assert img[0, row, 0] > img[0, row, 63]
    assert (img[1, :, :32] > 130).sum() > (img[0, :, :32] > 130).sum()
    # moving 2.5 m forward changes the road bands below the horizon
    assert np.abs(img[2].astype(int) - img[0].astype(int))[~sky].sum() > 500
    # a checkpoint line ahead shows as the brightest road tone
    world.pos[0] = [track.s[3] - 8.0, 0.0]
    world.quad[0] = 2
    assert world.images()[0, int(horizon) + 1 :, 32].max() >= 0.9 * 235
    assert world.pack.gate[3] == GATE_CHECKPOINT


def test_sensors_for_some_rows_only(s_world: World) -> None:
    world = s_world
    world.reset()
    for _ in range(20):
        world.step(follow_centre(world, 30.0))
    mask = np.zeros(world.n_envs, bool)
    mask[[3, 100, 511]] = True
    full = world.lidar()
    out = np.full_like(full, -1.0)
    world.lidar(out=out, rows=mask)
    assert np.array_equal(out[mask], full[mask]) and np.all(out[~mask] == -1.0)
    images = world.images()
    frames = np.zeros_like(images)
    world.images(out=frames, rows=np.array([7, 200]))
    assert np.array_equal(frames[[7, 200]], images[[7, 200]]) and frames[8].max() == 0


def test_serial_and_parallel_kernels_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    from evo_rl.sim.physics import step_cars
    from evo_rl.sim.sensors import images_cars, lidar_cars

    track = s_track()
    rng = np.random.default_rng(7)
    actions = rng.uniform(-1.0, 1.0, (10, 64, 3)).astype(np.float32)
    results = []
    for threshold in (1, 10**9):  # every kernel parallel, then every kernel on the calling thread
        for loop in (step_cars, lidar_cars, images_cars):
            monkeypatch.setattr(loop, "min_parallel", threshold)
        world = World(track, 64)
        randomise(world, np.random.default_rng(8), max_speed=60.0)
        for a in actions:
            world.step(a)
        results.append([getattr(world, k).copy() for k in ref.STATE] + [world.lidar(), world.images()])
    for a, b in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b)


def test_bench_sim_runs() -> None:
    from evo_rl.bench import sim as bench_sim

    for obs in ("lidar", "full"):
        out = bench_sim.run(cars=4, seconds=0.2, obs=obs, track="evo-test")
        assert out["cars"] == 4 and out["obs"] == obs and out["steps"] > 0
        assert out["car_steps_per_s"] > 0 and out["realtime_factor"] == pytest.approx(
            out["car_steps_per_s"] / 20, abs=0.1
        )
    with pytest.raises(EvoError, match="cars must be >= 1"):
        bench_sim.run(cars=0)
    with pytest.raises(EvoError, match="obs must be one of"):
        bench_sim.run(cars=4, obs="images")


def test_bench_options_live_in_the_cli() -> None:
    """`evo-rl bench sim` parses its options and config overrides in cli/ and hands bench/ plain values."""
    from evo_rl.cli import build_parser
    from evo_rl.cli.bench import bench_kwargs

    args = build_parser().parse_args(
        ["bench", "sim", "--cars", "8", "--seconds", "0.5", "--obs", "full", "--threads", "1", "sim.substeps=3"]
    )
    kw = bench_kwargs(args)
    assert {k: v for k, v in kw.items() if k != "cfg"} == {
        "cars": 8, "seconds": 0.5, "obs": "full", "track": "evo-test", "threads": 1, "tracks": 1
    }  # fmt: skip
    assert kw["cfg"].sim.substeps == 3
    replay = bench_kwargs(build_parser().parse_args(["bench", "replay", "--batch-size", "64", "--n-envs", "4"]))
    assert replay["batch_size"] == 64 and replay["n_envs"] == 4 and replay["transitions"] == 100_000
    learner = bench_kwargs(build_parser().parse_args(["bench", "learner", "--algo", "redq"]))
    assert learner == {"algo": "redq", "seconds": 10.0, "batch": 256, "threads": 0, "device": "cpu", "amp": None}
    assert bench_kwargs(build_parser().parse_args(["bench", "learner", "--amp"]))["amp"] is True
    assert bench_kwargs(build_parser().parse_args(["bench", "learner", "--no-amp"]))["amp"] is False


def test_one_dispatch_rule_for_every_car_loop() -> None:
    """Each per-car loop is compiled both ways from one source, and picks by the thresholds in sim/kernels.py."""
    from evo_rl.rewards.trajectory import trajectory_step
    from evo_rl.sim import kernels
    from evo_rl.sim.physics import step_cars
    from evo_rl.sim.sensors import images_cars, lidar_cars

    for loop, threshold in (
        (step_cars, kernels.PARALLEL_CARS),
        (lidar_cars, kernels.PARALLEL_CARS),
        (trajectory_step, kernels.PARALLEL_CARS),
        (images_cars, kernels.PARALLEL_IMAGES),
    ):
        assert isinstance(loop, kernels.CarLoop)
        assert loop.serial.py_func.__code__ is loop.parallel.py_func.__code__  # one source
        assert loop.serial.targetoptions.get("parallel", False) is False
        assert loop.parallel.targetoptions["parallel"] is True
        assert not loop.threaded(threshold - 1) and loop.threaded(threshold)
