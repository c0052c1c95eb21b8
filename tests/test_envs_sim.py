"""The environments over the real simulator, tracks and reward manager."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import evo_rl
from evo_rl.config import EvoConfig, config_to_yaml
from evo_rl.envs import TrackEnv, VecTrackEnv, resolve_config
from evo_rl.errors import EvoError

FLAVOURS = ["lidar", "lidar_progress", "full"]
FULL_GAS = np.array([1.0, 0.0, 0.0], np.float32)


def small_cfg(**env) -> EvoConfig:
    """Short histories, a small camera and a 60 m straight keep the tests fast."""
    cfg = resolve_config(None, **{"camera.width": 32, "camera.height": 24, "sim.threads": 1})
    return resolve_config(cfg, **{"hist_len": 2, "act_buf_len": 2, **env})


def policy_actions(rng: np.random.Generator, n: int, steps: int) -> np.ndarray:
    a = rng.uniform(-1, 1, (steps, n, 3)).astype(np.float32)  # [T, N, 3]
    a[:, :, 0] = 1.0  # keep moving so that cars pass gates and walls
    return a


# --------------------------------------------------------------------------- Gymnasium API


@pytest.mark.parametrize("flat", [False, True])
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_check_env_through_gymnasium_make(flavour, flat):
    env_id = {"lidar": "EvoRL-Lidar-v0", "lidar_progress": "EvoRL-LidarProgress-v0", "full": "EvoRL-Full-v0"}[flavour]
    env = gym.make(env_id, config=small_cfg(), flat=flat, render_mode="rgb_array")
    assert isinstance(env.unwrapped, TrackEnv) and env.unwrapped.cfg.env.flavour == flavour
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)
    env.close()


def test_get_environment_and_make_vec(tmp_path):
    cfg = small_cfg(n_envs=3, flavour="lidar_progress")
    path = tmp_path / "evo.yaml"
    path.write_text(config_to_yaml(cfg))
    single = evo_rl.get_environment(str(path))
    vec = evo_rl.get_environment(cfg, vector=True)
    assert isinstance(single, TrackEnv) and isinstance(vec, VecTrackEnv) and vec.num_envs == 3
    assert single.observation_space == vec.single_observation_space
    made = gym.make_vec("EvoRL-Full-v0", num_envs=2, config=cfg)
    assert isinstance(made, VecTrackEnv) and made.num_envs == 2 and made.cfg.env.flavour == "full"
    obs, _ = made.reset(seed=0)
    assert obs in made.observation_space


# --------------------------------------------------------------------------- observations vs the world


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_observation_reads_the_world(flavour, straight):
    cfg = small_cfg(flavour=flavour)
    env = VecTrackEnv(cfg, 3, track=straight)
    obs, _ = env.reset(seed=0)
    prev_frame = None
    for a in policy_actions(np.random.default_rng(1), 3, 6):
        obs, *_ = env.step(a)
        w = env.world
        np.testing.assert_allclose(obs[0][:, 0], w.speed() * 3.6, rtol=1e-5)
        frame = w.images() if flavour == "full" else w.lidar()
        hist = obs[3] if flavour == "full" else obs[-3]
        np.testing.assert_array_equal(hist[:, -1], frame)
        if prev_frame is not None:
            np.testing.assert_array_equal(hist[:, -2], prev_frame)
        prev_frame = frame
        np.testing.assert_array_equal(obs[-1], a.clip(-1, 1))
        if flavour == "full":
            np.testing.assert_array_equal(obs[1][:, 0], w.gear)
        assert obs in env.observation_space


def test_lidar_progress_reports_fraction_of_the_track(straight):
    env = VecTrackEnv(small_cfg(flavour="lidar_progress"), 1, track=straight)
    env.reset(seed=0)
    for _ in range(20):
        obs, *_, infos = env.step(FULL_GAS[None])
    w, t = env.world, straight
    expected = (w.progress_s[0] - t.s[t.start]) / t.length
    assert 0.0 < expected < 1.0
    np.testing.assert_allclose(obs[1][0, 0], expected, rtol=1e-5)
    np.testing.assert_allclose(infos["progress"][0], expected, rtol=1e-5)
    np.testing.assert_allclose(infos["position"][0], w.position3()[0])


# --------------------------------------------------------------------------- auto-reset


def test_autoreset_final_obs_matches_an_env_without_autoreset(straight):
    cfg = small_cfg(max_steps=5, start_lateral=1.0, start_yaw_deg=4.0)
    auto = VecTrackEnv(cfg, 4, track=straight)
    manual = VecTrackEnv(cfg, 4, track=straight, autoreset=False)
    obs_a, _ = auto.reset(seed=11)
    obs_m, _ = manual.reset(seed=11)
    for a in policy_actions(np.random.default_rng(2), 4, 5):
        obs_a, r_a, term_a, trunc_a, info_a = auto.step(a)
        obs_m, r_m, term_m, trunc_m, info_m = manual.step(a)
        np.testing.assert_array_equal(r_a, r_m)
    assert trunc_a.all() and trunc_m.all() and info_a["_final_obs"].all()
    for part_a, part_m in zip(info_a["final_obs"], obs_m, strict=True):
        np.testing.assert_array_equal(part_a, part_m)
    assert list(info_a["final_info"]["end_reason"]) == ["time_limit"] * 4
    np.testing.assert_array_equal(info_a["final_info"]["position"], info_m["position"])
    # the restarted cars: the next seeded restart of the manual env gives the same first observation
    assert (info_a["race_time"] == 0).all() and (info_a["episode_steps"] == 0).all()
    assert (obs_a[0] == 0).all()  # at rest
    np.testing.assert_array_equal(obs_a[-1], 0.0)


def test_finish_line_terminates(straight):
    env = VecTrackEnv(small_cfg(max_steps=400), 2, track=straight)
    env.reset(seed=0)
    actions = np.stack([FULL_GAS, np.zeros(3, np.float32)])
    for _ in range(400):
        obs, reward, term, trunc, infos = env.step(actions)
        if term[0]:
            break
    assert term[0] and not trunc[0] and not term[1]
    assert infos["end_reason"][0] == "finish" and infos["final_info"]["finished"][0]
    assert infos["final_info"]["checkpoints"][0] == 1 and infos["final_info"]["progress"][0] == 1.0
    assert infos["final_info"]["race_time"][0] > 0 and infos["race_time"][0] == 0.0
    assert set(infos["reward_terms"]) == {"progress_distance"}


def test_single_env_episode_ends_at_the_finish(straight):
    env = TrackEnv(small_cfg(max_steps=400), track=straight)
    env.reset(seed=0)
    for _ in range(400):
        obs, reward, terminated, truncated, info = env.step(FULL_GAS)
        if terminated or truncated:
            break
    assert terminated and info["end_reason"] == "finish" and info["finished"] and info["progress"] == 1.0
    with pytest.raises(EvoError, match="reset"):
        env.step(FULL_GAS)


def test_reward_rule_terminates_with_its_reason(straight):
    cfg = resolve_config(small_cfg(max_steps=100), **{"episode.no_progress_seconds": 0.5})
    env = VecTrackEnv(cfg, 2, track=straight)
    env.reset(seed=0)
    actions = np.stack([np.zeros(3, np.float32), FULL_GAS])  # car 0 waits on the line
    for _ in range(20):
        obs, reward, term, trunc, infos = env.step(actions)
        if term[0]:
            break
    assert term[0] and not trunc[0] and not term[1]
    assert infos["final_info"]["episode_steps"][0] in (10, 11)  # 0.5 s = 10 steps without progress
    assert infos["end_reason"][0] == "no_progress" and infos["final_info"]["end_reason"][0] == "no_progress"


def test_binary_and_analog_controls(straight):
    half_gas = np.array([[0.3, 0.0, 0.0]], np.float32)
    speeds = {}
    for controls in ("binary", "analog"):
        env = VecTrackEnv(small_cfg(controls=controls), 1, track=straight)
        env.reset(seed=0)
        for _ in range(10):
            obs, *_ = env.step(half_gas)
        speeds[controls] = obs[0][0, 0]
        np.testing.assert_array_equal(obs[-1][0], half_gas[0])  # the observation keeps the agent's action
    assert speeds["binary"] > speeds["analog"] > 0  # binary presses the pedal fully


# --------------------------------------------------------------------------- determinism, bad actions


def trajectory(env: VecTrackEnv, seed: int, actions: np.ndarray) -> list[np.ndarray]:
    env.reset(seed=seed)
    out = []
    for a in actions:
        obs, r, *_, infos = env.step(a)
        out += [*obs, r, infos["position"]]
    return out


def test_same_seed_same_trajectory(straight):
    cfg = small_cfg(max_steps=12, start_lateral=1.0, start_yaw_deg=5.0)
    actions = policy_actions(np.random.default_rng(4), 3, 30)
    a = trajectory(VecTrackEnv(cfg, 3, track=straight), 5, actions)
    b = trajectory(VecTrackEnv(cfg, 3, track=straight), 5, actions)
    c = trajectory(VecTrackEnv(cfg, 3, track=straight), 6, actions)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_nan_action_raises_and_the_next_step_is_unaffected(straight):
    cfg = small_cfg()
    actions = policy_actions(np.random.default_rng(5), 2, 4)
    env = VecTrackEnv(cfg, 2, track=straight)
    env.reset(seed=0)
    env.step(actions[0])
    for bad_value in (np.nan, np.inf):
        bad = actions[1].copy()
        bad[0, 1] = bad_value
        with pytest.raises(EvoError):
            env.step(bad)
    got = [env.step(a) for a in actions[1:]]
    ref = VecTrackEnv(cfg, 2, track=straight)
    ref.reset(seed=0)
    want = [ref.step(a) for a in actions]
    for g, w in zip(got, want[1:], strict=True):
        for p, q in zip(g[0], w[0], strict=True):
            np.testing.assert_array_equal(p, q)
        np.testing.assert_array_equal(g[1], w[1])


def test_out_of_range_actions_are_clipped(straight):
    cfg = small_cfg(controls="analog")
    wild = np.array([[3.0, -2.0, 1.7], [0.4, 9.0, -5.0]], np.float32)
    a = trajectory(VecTrackEnv(cfg, 2, track=straight), 0, [wild] * 5)
    b = trajectory(VecTrackEnv(cfg, 2, track=straight), 0, [wild.clip(-1, 1)] * 5)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


# --------------------------------------------------------------------------- rendering, learning


@pytest.mark.parametrize("mode", ["rgb_array", "first_person"])
def test_render_frames(mode, straight):
    cfg = small_cfg(flavour="full")
    env = TrackEnv(cfg, track=straight, render_mode=mode)
    env.reset(seed=0)
    env.step(FULL_GAS)
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
    if mode == "first_person":
        assert frame.shape == (24, 32, 3)
    else:
        assert abs(max(frame.shape[:2]) - 480) <= 1
    vec = VecTrackEnv(cfg, 3, track=straight, render_mode=mode)
    vec.reset(seed=0)
    assert vec.render().shape[2] == 3


def test_stable_baselines3_ppo_smoke(straight):
    sb3 = pytest.importorskip("stable_baselines3")
    env = TrackEnv(small_cfg(flat=True, max_steps=100), track=straight)
    model = sb3.PPO(
        "MlpPolicy",
        env,
        n_steps=128,
        batch_size=64,
        n_epochs=2,
        policy_kwargs={"net_arch": [32, 32]},
        seed=0,
        device="cpu",
    )
    model.learn(total_timesteps=256)
    obs, _ = env.reset(seed=1)
    for _ in range(5):
        action, _ = model.predict(obs, deterministic=True)
        assert action in env.action_space
        obs, *_ = env.step(action)


# --------------------------------------------------------------------------- step limit


def test_the_step_limit_follows_the_track_unless_set():
    from evo_rl.envs.core import STEP_LIMIT_LAPS, step_limit
    from evo_rl.sim.catalog import get_track
    from evo_rl.sim.generate import generate_track
    from evo_rl.sim.reference_lap import compute_reference_lap

    cfg = small_cfg()
    assert cfg.env.max_steps is None
    dt = cfg.sim.dt
    mini = get_track("evo-mini")  # a reference lap far under 120 s / 2.5: the 120 s floor
    assert step_limit(cfg, mini, dt) == round(120.0 / dt)
    assert step_limit(cfg, None, dt) == round(120.0 / dt)  # no track model: the floor
    long = generate_track(3, n_blocks=80)
    lap = compute_reference_lap(long, cfg.car).lap_time
    assert STEP_LIMIT_LAPS * lap > 120.0, "the test needs a track whose reference lap is over 48 s"
    limit = step_limit(cfg, long, dt)
    assert limit == pytest.approx(STEP_LIMIT_LAPS * lap / dt, abs=1)
    env = VecTrackEnv(cfg, 1, track=long)
    assert env.max_steps == limit
    env.close()
    assert step_limit(small_cfg(max_steps=300), long, dt) == 300  # a set limit is kept


def test_an_episode_is_truncated_at_the_track_step_limit():
    from evo_rl.sim.generate import generate_track

    cfg = small_cfg()
    cfg.episode.no_progress_seconds = None  # a car standing still on the start line until the limit
    env = VecTrackEnv(cfg, 1, track=generate_track(3, n_blocks=80), autoreset=False)
    assert env.max_steps > 2400
    env.reset(seed=0)
    steps = 0
    while True:
        *_, term, trunc, info = env.step(np.zeros((1, 3), np.float32))
        steps += 1
        if term[0] or trunc[0] or steps > env.max_steps:
            break
    assert steps == env.max_steps and trunc[0] and not term[0]
    assert info["end_reason"][0] == "time_limit"
    env.close()
