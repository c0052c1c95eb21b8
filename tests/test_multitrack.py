"""Many tracks in one batch (env.tracks, the curriculum) and domain randomisation (the randomise section)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evo_rl.config import EvoConfig, GeneratedTracks
from evo_rl.envs.tracks import TrackPool, curriculum_knobs, generated_set
from evo_rl.envs.vector import VecTrackEnv
from evo_rl.errors import ConfigError, EvoError
from evo_rl.sim.catalog import get_track
from evo_rl.sim.physics import P_ENGINE, P_GRIP, P_INV_MASS, STATE
from evo_rl.sim.world import World


def _tracks() -> list:
    return [get_track("evo-mini"), get_track("evo-technical"), *generated_set(GeneratedTracks(seeds=(3, 5)))]


def test_cars_on_different_tracks_move_as_on_their_own_track() -> None:
    """One batch over four tracks gives each car exactly the state, LIDAR and frames of a world of its track alone."""
    tracks = _tracks()
    n_per = 3
    ids = np.repeat(np.arange(len(tracks)), n_per)  # [12]
    mixed = World(tracks, len(ids))
    mixed.reset(track_id=ids)
    alone = [World(t, n_per) for t in tracks]
    rng = np.random.default_rng(0)
    for _ in range(120):
        a = rng.uniform(-1.0, 1.0, (len(ids), 3)).astype(np.float32)
        a[:, 0] = np.abs(a[:, 0])  # mostly gas, so the cars get somewhere
        mixed.step(a)
        for k, w in enumerate(alone):
            w.step(a[ids == k])
    lidar, images, pos3 = mixed.lidar(), mixed.images(), mixed.position3()
    for k, w in enumerate(alone):
        rows = ids == k
        for name in STATE:
            np.testing.assert_array_equal(getattr(mixed, name)[rows], getattr(w, name), err_msg=name)
        np.testing.assert_array_equal(lidar[rows], w.lidar())
        np.testing.assert_array_equal(images[rows], w.images())
        np.testing.assert_array_equal(pos3[rows], w.position3())
    assert mixed.progress_s.max() > 100.0  # the cars drove


def test_reset_moves_cars_between_tracks_and_add_tracks_keeps_the_others() -> None:
    tracks = _tracks()
    w = World(tracks[:2], 4)
    assert w.track is tracks[0] and list(w.track_id) == [0, 0, 0, 0]
    w.reset(np.array([False, True, False, True]), track_id=np.array([0, 1, 0, 1]))
    assert list(w.track_id) == [0, 1, 0, 1]
    start = World(tracks[1], 1)
    np.testing.assert_array_equal(w.pos[1], start.pos[0])
    for _ in range(20):
        w.step(np.tile([1.0, 0.0, 0.0], (4, 1)))
    before = w.pos.copy()
    assert w.add_tracks(tracks[2:]) == [2, 3]
    np.testing.assert_array_equal(w.pos, before)  # adding tracks does not move anyone
    w.step(np.tile([1.0, 0.0, 0.0], (4, 1)))
    w.reset(np.array([True, False, False, False]), track_id=np.array([3, 0, 0, 0]))
    assert w.car_tracks()[0] is tracks[3] and w.quad[0] == tracks[3].start
    with pytest.raises(EvoError, match="track_id must be in 0..3"):
        w.reset(track_id=np.array([4, 0, 0, 0]))


def test_generated_sets_and_curriculum_knobs() -> None:
    spec = GeneratedTracks(seeds=(10, 14), n_blocks=16, min_radius=16.0)
    a, b = generated_set(spec), generated_set(spec)
    assert [t.name for t in a] == ["gen-10", "gen-11", "gen-12", "gen-13"]
    assert [t.name for t in generated_set(spec, 0.0)] == [
        "gen-10-b8-r48",
        "gen-11-b8-r48",
        "gen-12-b8-r48",
        "gen-13-b8-r48",
    ]
    again = get_track("gen-12-b8-r48")  # generated names read back as the same tracks
    np.testing.assert_array_equal(again.left, generated_set(spec, 0.0)[2].left)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.left, y.left)  # the same seeds give the same tracks
    assert curriculum_knobs(spec, 0.0) == (8, 48.0) and curriculum_knobs(spec, 1.0) == (16, 16.0)
    easy = generated_set(spec, 0.0)
    assert all(e.length < h.length for e, h in zip(easy, a, strict=True)) or np.mean(
        [e.length for e in easy]
    ) < np.mean([h.length for h in a])
    wide = generated_set(spec, road_width=(12.0, 16.0))
    widths = [t.width for t in wide]
    assert all(12.0 <= w <= 16.0 for w in widths) and len(set(widths)) == 4
    np.testing.assert_array_equal(get_track(wide[0].name).left, wide[0].left)
    with pytest.raises(ValueError, match="is empty"):
        GeneratedTracks(seeds=(5, 5))


def test_track_pool_draws_and_promotes() -> None:
    cfg = EvoConfig()
    cfg.env.tracks = ["evo-mini", GeneratedTracks(seeds=(0, 3))]
    cfg.env.curriculum.enabled = True
    cfg.env.curriculum.levels = 3
    cfg.env.curriculum.window = 4
    cfg.env.curriculum.promote_at = 0.75
    pool = TrackPool(cfg)
    assert [t.name for t in pool.tracks] == ["evo-mini", "gen-0-b8-r48", "gen-1-b8-r48", "gen-2-b8-r48"]
    assert pool.difficulty == 0.0
    ids = pool.sample(200, np.random.default_rng(0))
    assert set(ids.tolist()) == {0, 1, 2, 3}
    assert pool.record(np.array([True, True, False])) == []  # the window is not full
    assert pool.record(np.array([False])) == []  # 2 of 4: below 0.75
    new = pool.record(np.array([True, True, True]))  # window now T, F, T, T... last 4 = [F, T, T, T]
    assert [t.name for t in new] == ["gen-0-b12-r32", "gen-1-b12-r32", "gen-2-b12-r32"] and pool.level == 1
    assert set(pool.sample(200, np.random.default_rng(1)).tolist()) == {0, 4, 5, 6}  # named + the new level
    pool.record(np.ones(4, bool))
    assert pool.level == 2 and pool.difficulty == 1.0 and pool.tracks[-1].name == "gen-2"
    assert pool.record(np.ones(4, bool)) == []  # the last level stays
    cfg.env.tracks = ["no-such-track"]
    with pytest.raises(ConfigError, match=r"env.tracks\[0\]: unknown track"):
        TrackPool(cfg)


def _multi_cfg(**reward: object) -> EvoConfig:
    cfg = EvoConfig()
    cfg.env.tracks = ["evo-mini", "evo-technical", GeneratedTracks(seeds=(3, 5))]
    if reward:
        cfg = cfg.model_copy(update={"reward": EvoConfig(**reward).reward})  # type: ignore[arg-type]
    return cfg


@pytest.mark.parametrize("reference", [None, "racing_line"])
def test_rewards_limits_and_progress_follow_each_cars_track(reference: str | None) -> None:
    """Every reward term, step limit and progress of a car on a mixed batch equals the single-track value."""
    terms = [
        {"term": "progress_distance", "weight": 0.1},
        {"term": "speed", "weight": 0.01},
        {"term": "lateral_offset", "weight": 0.05},
        {"term": "potential_progress", "weight": 1.0},
        {"term": "checkpoint", "weight": 1.0},
    ]
    cfg = _multi_cfg(reward=terms)
    cfg.episode.reference = reference
    cfg.env.flavour = "lidar_progress"
    n = 8
    env = VecTrackEnv(cfg, n, autoreset=False)
    env.reset(seed=3)
    ids = env.world.track_id.copy()
    assert len(set(ids.tolist())) >= 3  # the cars drew different tracks
    singles = []
    for i in range(n):
        c = cfg.model_copy(deep=True)
        c.env.tracks = None
        e = VecTrackEnv(c, 1, track=env.world.tracks[ids[i]], autoreset=False)
        e.reset(seed=0)
        e.world.pos[0], e.world.yaw[0] = env.world.pos[i], env.world.yaw[i]  # the same start perturbation
        e.world.progress_s[0], e.world.lateral[0] = env.world.progress_s[i], env.world.lateral[i]
        singles.append(e)
    for i, e in enumerate(singles):
        assert env.core.step_limits[i] == e.core.max_steps
    rng = np.random.default_rng(0)
    for _ in range(150):
        a = np.clip(rng.normal([0.8, -0.5, 0.0], 0.5, (n, 3)), -1, 1).astype(np.float32)
        obs, r, _, _, info = env.step(a)
        for i, e in enumerate(singles):
            o1, r1, _, _, info1 = e.step(a[i : i + 1])
            assert r[i] == pytest.approx(r1[0], rel=1e-5, abs=1e-6)
            for name, v in info["reward_terms"].items():
                assert v[i] == pytest.approx(info1["reward_terms"][name][0], rel=1e-5, abs=1e-6), name
            assert info["progress"][i] == pytest.approx(info1["progress"][0], abs=1e-6)
            assert obs[1][i, 0] == pytest.approx(o1[1][0, 0], abs=1e-6)  # the progress observation


def test_one_track_reference_terms_are_refused_with_several_tracks() -> None:
    with pytest.raises(ConfigError, match="progress_trajectory follows one reference"):
        VecTrackEnv(_multi_cfg(reward=[{"term": "progress_trajectory"}]), 2)
    cfg = _multi_cfg()
    cfg.episode.reference = "some_lap.npy"
    with pytest.raises(ConfigError, match="episode.reference names one track's reference"):
        VecTrackEnv(cfg, 2)


def test_curriculum_level_joins_the_running_environment() -> None:
    cfg = EvoConfig()
    cfg.env.tracks = [GeneratedTracks(seeds=(0, 2))]
    cfg.env.curriculum.enabled = True
    cfg.env.curriculum.levels = 2
    cfg.env.curriculum.window = 2
    env = VecTrackEnv(cfg, 4)
    env.reset(seed=0)
    assert len(env.world.tracks) == 2
    for _ in range(5):
        env.step(np.tile([1.0, 0.0, 0.0], (4, 1)))
    pos = env.world.pos.copy()
    env.core._promote(np.ones(2, bool))  # as if two episodes had finished
    assert [t.name for t in env.world.tracks] == ["gen-0-b8-r48", "gen-1-b8-r48", "gen-0", "gen-1"]
    np.testing.assert_array_equal(env.world.pos, pos)
    assert len(env.core._limits) == 4 and len(env.core.rewards.reference.refs) == 4
    env.reset(seed=1)
    assert set(env.world.track_id.tolist()) <= {2, 3}
    env.step(np.tile([1.0, 0.0, 0.0], (4, 1)))  # rewards and observations work on the new tracks


def test_physics_randomisation_per_car_and_episode() -> None:
    cfg = EvoConfig()
    cfg.randomise.grip = (0.8, 1.2)
    cfg.randomise.mass = (0.9, 1.1)
    cfg.randomise.engine = (1.0, 1.0)
    env = VecTrackEnv(cfg, 64)
    env.reset(seed=0)
    p = env.world.params
    base = World(get_track("evo-test"), 1).params[0]
    grip = p[:, P_GRIP] / base[P_GRIP]
    mass = base[P_INV_MASS] / p[:, P_INV_MASS]
    assert grip.min() >= 0.8 and grip.max() <= 1.2 and grip.std() > 0.05
    assert mass.min() >= 0.9 - 1e-12 and mass.max() <= 1.1 + 1e-12
    np.testing.assert_allclose(p[:, P_ENGINE], base[P_ENGINE])
    first = p.copy()
    env.reset(seed=1)
    assert not np.allclose(env.world.params[:, P_GRIP], first[:, P_GRIP])  # new draws each episode
    # a grippier car corners faster: the same actions leave the cars in different places
    for _ in range(100):
        env.step(np.tile([1.0, 0.0, 0.3], (64, 1)))
    assert env.world.pos.std(axis=0).max() > 0.1
    with pytest.raises(ValueError, match="0 < low <= high"):
        EvoConfig(randomise={"grip": [1.2, 0.8]})


def test_action_latency_delays_what_the_car_gets() -> None:
    cfg = EvoConfig()
    cfg.randomise.latency = (2, 2)
    env = VecTrackEnv(cfg, 2)
    obs, _ = env.reset(seed=0)
    gas = np.tile([1.0, 0.0, 0.0], (2, 1)).astype(np.float32)
    for _ in range(2):
        obs, *_ = env.step(gas)
        assert env.world.speed().max() == 0.0  # the first two actions are still on their way
    np.testing.assert_array_equal(obs[-1], gas)  # the observation holds the chosen action
    env.step(gas)
    assert env.world.speed().min() > 0.0
    with pytest.raises(ValueError, match="latency"):
        EvoConfig(randomise={"latency": [2, 1]})


def test_sensor_noise_and_dropped_readings() -> None:
    clean = VecTrackEnv(EvoConfig(), 4)
    cfg = EvoConfig()
    cfg.randomise.lidar_noise = 0.5
    cfg.randomise.speed_noise = 1.0
    noisy = VecTrackEnv(cfg, 4)
    o0, _ = clean.reset(seed=0)
    o1, _ = noisy.reset(seed=0)
    np.testing.assert_array_equal(clean.world.pos, noisy.world.pos)
    diff = np.abs(o1[1] - o0[1])
    assert 0.1 < diff.mean() < 1.0 and (o1[1] >= 0).all()  # noise of the configured size, no negative beam
    cfg = EvoConfig()
    cfg.randomise.drop_obs = 0.5
    drop = VecTrackEnv(cfg, 64)
    drop.reset(seed=0)
    gas = np.tile([1.0, 0.0, 0.0], (64, 1))
    for _ in range(10):
        drop.step(gas)
    before = drop.core.obs.frame.copy()
    obs, *_ = drop.step(gas)
    same = (obs[1][:, -1] == before).all(axis=1)  # cars whose newest frame is the previous one
    assert 0.2 < same.mean() < 0.8


def test_bench_sim_many_tracks() -> None:
    from evo_rl.bench import sim as bench_sim

    out = bench_sim.run(cars=16, seconds=0.2, tracks=8)
    assert out["tracks"] == 8 and out["steps"] > 0 and "8 generated tracks" in out["track"]


def test_course_preview_sees_the_curve_ahead() -> None:
    from evo_rl.envs.lookahead import CoursePreview
    from evo_rl.sim.blocks import build_track

    track = build_track("S3 L2 S3", "curve", n_checkpoints=1)  # a 48 m left curve after 96 m of straight
    preview = CoursePreview([track], points=8, distance=240.0)
    out = np.zeros((1, 16), np.float32)
    s0 = float(track.s[track.start])
    heading0 = math.atan2(*(track.center[track.start + 1] - track.center[track.start])[::-1])
    preview(np.array([s0]), np.array([heading0]), out)
    rel, curv = out[0, :8].copy(), out[0, 8:].copy()
    ahead = np.arange(1, 9) * 30.0
    in_curve = (ahead > 96.0 + 15.0 + 32.0) & (ahead < 96.0 + 48.0 * math.pi / 2 - 5.0 + 32.0)
    assert np.all(np.abs(curv[ahead < 96.0]) < 1e-3) and np.all(np.abs(rel[ahead < 96.0]) < 1e-3)
    np.testing.assert_allclose(curv[in_curve], 1.0 / 48.0, rtol=0.1)  # left turns are positive
    assert rel[-1] == pytest.approx(math.pi / 2, abs=0.05)  # past the curve the road points 90 degrees left
    # a car turned 0.3 rad left sees the road 0.3 rad more to its right
    preview(np.array([s0]), np.array([heading0 + 0.3]), out)
    np.testing.assert_allclose(out[0, :8], rel - 0.3, atol=1e-5)


def test_lookahead_observation_in_the_environment_and_replay() -> None:
    from evo_rl.memory.layout import ObsLayout

    cfg = _multi_cfg()
    cfg.env.lookahead_points = 5
    env = VecTrackEnv(cfg, 4)
    obs, _ = env.reset(seed=0)
    assert obs[2].shape == (4, 10) and env.single_observation_space.contains(tuple(o[0] for o in obs))
    layout = ObsLayout.from_space(env.single_observation_space, cfg.env.hist_len, cfg.env.act_buf_len, "lidar")
    assert [f.name for f in layout.fields] == ["speed", "lidar", "lookahead"]
    for _ in range(30):
        obs, *_ = env.step(np.tile([1.0, 0.0, 0.0], (4, 1)))
    # each car's preview follows its own track
    for i in range(4):
        from evo_rl.envs.lookahead import CoursePreview

        own = CoursePreview([env.world.car_tracks()[i]], 5, cfg.env.lookahead_distance)
        out = np.zeros((1, 10), np.float32)
        own(env.world.progress_s[i : i + 1], env.world.yaw[i : i + 1], out)
        np.testing.assert_allclose(obs[2][i], out[0], atol=1e-6)
    cfg.env.flat = True
    flat = VecTrackEnv(cfg, 2)
    o, _ = flat.reset(seed=0)
    assert o.shape == (2, 1 + 4 * 19 + 10 + 6)
    assert EvoConfig().env.lookahead_points == 0  # TMRL's layouts stay as they are by default


def test_evaluation_drives_the_nominal_car() -> None:
    from evo_rl.train.evaluate import Evaluator

    cfg = EvoConfig()
    cfg.randomise.grip = (0.5, 0.6)
    cfg.randomise.latency = (2, 2)
    ev = Evaluator(cfg, 2)
    assert ev.env.core.sim.params[:, P_GRIP].tolist() == [World(get_track("evo-test"), 1).params[0, P_GRIP]] * 2
    assert not ev.env.core.randomise.physics and ev.env.core.randomise.latency == (0, 0)


def test_the_shipped_general_driver_finishes_tracks_it_never_saw() -> None:
    """`general` trained on generated seeds 0..999 and the built-in tracks; seeds from 90,000 are held out."""
    from evo_rl.cli.eval import policy_path
    from evo_rl.train.evaluate import Evaluator
    from evo_rl.train.policy import load_policy

    policy = load_policy(policy_path("general"))
    assert policy.cfg.env.tracks is not None and policy.cfg.env.flavour == "lidar"
    for seed in (90000, 90003, 90011):
        cfg = policy.cfg.model_copy(deep=True)
        cfg.env.track, cfg.env.tracks = f"gen-{seed}", None
        result = Evaluator(cfg, 2).run(lambda obs: policy.actor.act(obs, test=True))
        assert result.finish_rate == 1.0, (seed, result.end_reasons)
        assert result.lap_time_ratio is not None and result.lap_time_ratio < 1.35
