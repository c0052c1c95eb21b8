"""Environment mechanics against a tiny counting fake world (no numba, no real physics).

The fake world moves cars along a straight strip; its sensors are simple functions
of the state. A naive per-car reference (Python lists, one car at a time, its own
fake world) rebuilds every observation, episode end and final observation, and the
batched environment must match it exactly.
"""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode

from evo_rl.config import EvoConfig
from evo_rl.envs import TrackEnv, VecTrackEnv, resolve_config
from evo_rl.envs.spaces import observation_space, tuple_observation_space
from evo_rl.errors import ConfigError, EvoError
from evo_rl.rewards.base import RewardOutput
from evo_rl.sim.track import Track
from evo_rl.sim.world import World

DT = 0.05


def straight_track(n_quads: int = 40, spacing: float = 2.0, width: float = 10.0) -> Track:
    x = np.arange(n_quads + 1) * spacing
    left = np.stack([x, np.full_like(x, width / 2)], axis=1)
    right = np.stack([x, np.full_like(x, -width / 2)], axis=1)
    return Track("fake-straight", left, right, width, start=2, finish=n_quads - 2, checkpoints=[n_quads // 2])


class FakeWorld:
    """A car source (evo_rl.envs.source.CarSource): cars on a straight strip along +x; gas/brake change
    the speed, steer moves sideways."""

    name = "fake"
    provides = World.provides
    realtime = False
    dt = DT

    def __init__(self, track: Track, n: int, analog: bool = False, beams: int = 5, hw: tuple[int, int] = (8, 10)):
        self.track, self.n, self.analog, self.beams, self.hw, self.range = track, n, analog, beams, hw, 100.0
        self.n_envs = n
        self.quad = np.zeros(n, np.int32)
        self.cp_forward = np.zeros(n, np.int32)
        self.cp_backward = np.zeros(n, np.int32)
        self.airborne = np.zeros(n, bool)
        self.pos = np.zeros((n, 2))
        self.yaw = np.zeros(n)
        self.vel = np.zeros((n, 2))
        self.gear = np.ones(n, np.int32)
        self.rpm = np.full(n, 1500.0)
        self.progress_s = np.zeros(n)
        self.lateral = np.zeros(n)
        self.wall_contact = np.zeros(n, bool)
        self.checkpoints = np.zeros(n, np.int32)
        self.finished = np.zeros(n, bool)
        self.race_time_ms = np.zeros(n, np.int64)
        self.last_actions = np.zeros((n, 3), np.float32)

    def reset(self, mask: np.ndarray | None = None, lateral: np.ndarray | None = None, yaw: np.ndarray | None = None):
        m = np.ones(self.n, bool) if mask is None else np.asarray(mask, bool)
        self.pos[m] = self.track.center[self.track.start] + [1.0, 0.0]
        self.pos[m, 1] += 0.0 if lateral is None else np.clip(lateral[m], -3.0, 3.0)
        self.yaw[m] = 0.0 if yaw is None else yaw[m]
        self.vel[m] = 0.0
        self.gear[m] = 1
        self.rpm[m] = 1500.0
        self.lateral[m] = self.pos[m, 1]
        self.progress_s[m] = self.pos[m, 0]
        self.wall_contact[m] = False
        self.checkpoints[m] = 0
        self.finished[m] = False
        self.race_time_ms[m] = 0

    def step(self, actions: np.ndarray) -> None:
        a = np.asarray(actions, np.float32)
        if not np.isfinite(a).all():
            raise EvoError("non-finite action")
        a = np.clip(a, -1, 1)
        self.last_actions = a.copy()
        if self.analog:
            gas, brake = np.clip(a[:, 0], 0, 1), np.clip(a[:, 1], 0, 1)
        else:
            gas, brake = (a[:, 0] > 0).astype(np.float64), (a[:, 1] > 0).astype(np.float64)
        steer = a[:, 2]
        speed = np.maximum(self.vel[:, 0] + 4.0 * gas - 6.0 * brake - 0.5, 0.0)
        self.vel[:, 0] = speed
        self.pos[:, 0] += speed * DT
        self.pos[:, 1] -= steer * 0.8
        self.lateral[:] = self.pos[:, 1]
        self.progress_s[:] = self.pos[:, 0]
        self.yaw[:] = -0.1 * steer
        self.wall_contact[:] = np.abs(self.lateral) > 4.0
        self.gear[:] = 1 + (speed > 10)
        self.rpm[:] = 1500.0 + 400.0 * speed
        self.checkpoints[:] = (self.progress_s >= self.track.s[self.track.checkpoints[0]]).astype(np.int32)
        self.finished |= self.progress_s >= self.track.s[self.track.finish]
        self.race_time_ms += round(DT * 1000)

    def observe(self) -> None:
        pass

    def close(self) -> None:
        pass

    def speed(self) -> np.ndarray:
        return np.linalg.norm(self.vel, axis=1)

    def position3(self) -> np.ndarray:
        return np.stack([self.pos[:, 0], np.full(self.n, self.track.height), self.pos[:, 1]], axis=1)

    def lidar(self, out: np.ndarray | None = None, rows: np.ndarray | None = None) -> np.ndarray:
        x = np.clip(90.0 - self.pos[:, :1] + self.pos[:, 1:2] * np.arange(self.beams), 0.0, self.range)
        if out is None:
            return x.astype(np.float32)
        rows = slice(None) if rows is None else rows
        out[rows] = x[rows]
        return out

    def images(self, out: np.ndarray | None = None, rows: np.ndarray | None = None) -> np.ndarray:
        h, w = self.hw
        base = (self.pos[:, 0] * 10 + self.pos[:, 1] * 3).astype(np.int64)
        img = ((base[:, None, None] + np.arange(h * w).reshape(h, w)) % 256).astype(np.uint8)
        if out is None:
            return img
        rows = slice(None) if rows is None else rows
        out[rows] = img[rows]
        return out


class FakeRewards:
    """Reward = progress made; ends an episode ("wall") when a car touches a wall."""

    def __init__(self, n: int):
        self.n = n
        self.resets: list[np.ndarray] = []

    def reset(self, mask: np.ndarray) -> None:
        self.resets.append(np.asarray(mask, bool).copy())

    def __call__(self, ctx) -> RewardOutput:
        progress = (ctx.world.progress_s - ctx.prev_progress_s).astype(np.float32)
        smooth = -np.abs(ctx.action - ctx.prev_action).sum(axis=1).astype(np.float32) * 0.01
        terminate = ctx.world.wall_contact.copy()
        reason = np.where(terminate, "wall", "").astype(object)
        return RewardOutput(progress + smooth, {"progress": progress, "smooth": smooth}, terminate, reason)


def make_cfg(flavour: str = "lidar", **env) -> EvoConfig:
    cfg = EvoConfig()
    cfg.lidar.beams = 5
    cfg.camera.height, cfg.camera.width = 8, 10
    env = {"flavour": flavour, "hist_len": 3, "act_buf_len": 2, "start_lateral": 0.0, "start_yaw_deg": 0.0, **env}
    return resolve_config(cfg, **env)


def vec_env(cfg: EvoConfig, n: int, autoreset: bool = True, **track_kw) -> VecTrackEnv:
    track = straight_track(**track_kw)
    world = FakeWorld(track, n, analog=cfg.env.controls == "analog")
    return VecTrackEnv(cfg, n, track=track, source=world, rewards=FakeRewards(n), autoreset=autoreset)


def single_env(cfg: EvoConfig, render_mode: str | None = None) -> TrackEnv:
    track = straight_track()
    return TrackEnv(cfg, track=track, render_mode=render_mode, source=FakeWorld(track, 1), rewards=FakeRewards(1))


FLAVOURS = ["lidar", "lidar_progress", "full"]


# --------------------------------------------------------------------------- naive reference


class NaiveReference:
    """Per-car Python bookkeeping of observations and episode ends, one car at a time."""

    def __init__(self, cfg: EvoConfig, n: int, **track_kw):
        self.cfg, self.n = cfg, n
        self.track = straight_track(**track_kw)
        self.world = FakeWorld(self.track, n)
        self.world.reset()
        self.steps = [0] * n
        self.frames = [[self._frame(i)] * cfg.env.hist_len for i in range(n)]
        self.acts = [[np.zeros(3, np.float32)] * cfg.env.act_buf_len for _ in range(n)]

    def _frame(self, i: int) -> np.ndarray:
        if self.cfg.env.flavour == "full":
            return self.world.images()[i]
        return self.world.lidar()[i]

    def _scalars(self, i: int) -> list[float]:
        w, env = self.world, self.cfg.env
        speed = float(w.speed()[i] * 3.6)
        if env.flavour == "lidar":
            return [speed]
        if env.flavour == "lidar_progress":
            s0 = self.track.s[self.track.start]
            return [speed, min(max((w.progress_s[i] - s0) / self.track.length, 0.0), 1.0)]
        return [speed, float(w.gear[i]), min(float(w.rpm[i]), self.cfg.car.max_rpm)]  # rpm saturates at max_rpm

    def obs(self, i: int) -> tuple:
        scalars = [np.array([v], np.float32) for v in self._scalars(i)]
        hist = np.stack(self.frames[i])
        return (*scalars, hist, *[a.copy() for a in self.acts[i]])

    def step(self, actions: np.ndarray):
        """Returns per-car (obs, terminated, truncated, final_obs or None)."""
        out = []
        a = np.clip(actions, -1, 1).astype(np.float32)
        self.world.step(a)
        for i in range(self.n):
            self.steps[i] += 1
            self.frames[i] = self.frames[i][1:] + [self._frame(i)]
            if self.cfg.env.act_buf_len:
                self.acts[i] = self.acts[i][1:] + [a[i].copy()]
            term = bool(self.world.finished[i] or self.world.wall_contact[i])
            trunc = (not term) and self.steps[i] >= self.cfg.env.max_steps
            final = None
            if term or trunc:
                final = self.obs(i)
                mask = np.zeros(self.n, bool)
                mask[i] = True
                self.world.reset(mask)
                self.steps[i] = 0
                self.frames[i] = [self._frame(i)] * self.cfg.env.hist_len
                self.acts[i] = [np.zeros(3, np.float32)] * self.cfg.env.act_buf_len
            out.append((self.obs(i), term, trunc, final))
        return out


def assert_obs_equal(batched, i: int, expected: tuple) -> None:
    if isinstance(batched, np.ndarray):  # flat: the tuple's parts raveled and concatenated, as float32
        assert batched.dtype == np.float32
        np.testing.assert_allclose(batched[i], np.concatenate([np.ravel(p) for p in expected]), rtol=1e-6, atol=1e-5)
        return
    assert len(batched) == len(expected)
    for part, exp in zip(batched, expected, strict=True):
        np.testing.assert_allclose(part[i], exp, rtol=1e-6, atol=1e-5)


# --------------------------------------------------------------------------- spaces


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_spaces_follow_tmrl_layouts(flavour):
    cfg = make_cfg(flavour)
    space = tuple_observation_space(cfg)
    shapes = [s.shape for s in space.spaces]
    acts = [(3,), (3,)]
    expected = {
        "lidar": [(1,), (3, 5), *acts],
        "lidar_progress": [(1,), (1,), (3, 5), *acts],
        "full": [(1,), (1,), (1,), (3, 8, 10), *acts],
    }[flavour]
    assert shapes == expected
    if flavour == "full":
        assert space.spaces[3].dtype == np.uint8
    flat = observation_space(make_cfg(flavour, flat=True))
    assert flat.dtype == np.float32 and flat.shape == (sum(int(np.prod(s)) for s in expected),)


def test_tires_layout_has_19_beams():
    cfg = make_cfg()
    cfg.lidar.layout = "tires"
    assert tuple_observation_space(cfg).spaces[1].shape == (3, 19)


# --------------------------------------------------------------------------- gymnasium API


@pytest.mark.parametrize("flat", [False, True])
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_check_env_passes_with_fake_world(flavour, flat):
    env = single_env(make_cfg(flavour, flat=flat, start_lateral=0.5, start_yaw_deg=3.0), render_mode="rgb_array")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", message=".*not having a spec.*")
        check_env(env)


def test_vector_env_metadata_and_spaces():
    env = vec_env(make_cfg(), 4)
    assert env.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    assert env.num_envs == 4
    assert env.action_space.shape == (4, 3)
    obs, info = env.reset(seed=1)
    assert obs in env.observation_space
    assert obs[1].shape == (4, 3, 5)
    assert set(info) >= {"checkpoints", "race_time", "finished", "wall_contact", "progress", "position", "speed_kmh"}
    assert info["position"].shape == (4, 3)
    no_auto = vec_env(make_cfg(), 2, autoreset=False)
    assert no_auto.metadata["autoreset_mode"] == AutoresetMode.DISABLED
    assert VecTrackEnv.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP  # class metadata untouched


# --------------------------------------------------------------------------- buffers and auto-reset


@pytest.mark.parametrize(
    "flavour, flat, hist_len, act_buf_len",
    [
        *[(f, False, 3, 2) for f in FLAVOURS],
        ("lidar", True, 3, 2),
        ("full", True, 2, 3),
        ("lidar_progress", False, 1, 0),
    ],
)
def test_observations_and_autoreset_match_naive_reference(flavour, flat, hist_len, act_buf_len):
    n, short = 3, {"n_quads": 12, "spacing": 1.0}  # 8 m from start to finish
    cfg = make_cfg(flavour, max_steps=15, hist_len=hist_len, act_buf_len=act_buf_len, flat=flat)
    env = vec_env(cfg, n, **short)
    ref = NaiveReference(cfg, n, **short)
    obs, _ = env.reset(seed=0)
    for i in range(n):
        assert_obs_equal(obs, i, ref.obs(i))
    rng = np.random.default_rng(3)
    reasons = []
    for t in range(60):
        actions = rng.uniform(-1.2, 1.2, (n, 3)).astype(np.float32)
        actions[:, 1] -= 0.8  # mostly off the brake, so that cars reach the finish
        actions[:, 2] *= 0.3
        if t % 20 >= 13:
            actions[1:, 2] = 1.0  # cars 1 and 2 steer into the right wall ("wall" rule)
        obs, reward, term, trunc, infos = env.step(actions)
        expected = ref.step(actions)
        for i, (exp_obs, exp_term, exp_trunc, exp_final) in enumerate(expected):
            assert term[i] == exp_term and trunc[i] == exp_trunc, (t, i)
            assert_obs_equal(obs, i, exp_obs)
            if exp_final is None:
                assert "_final_obs" not in infos or not infos["_final_obs"][i]
                assert infos["end_reason"][i] == ""
            else:
                assert infos["_final_obs"][i] and infos["_final_info"][i]
                assert_obs_equal(infos["final_obs"], i, exp_final)
                reason = infos["end_reason"][i]
                assert reason == infos["final_info"]["end_reason"][i]
                assert (reason == "time_limit") == exp_trunc
                assert (reason == "finish") == bool(infos["final_info"]["finished"][i])
                assert infos["episode_steps"][i] == 0 and infos["final_info"]["episode_steps"][i] > 0
                reasons.append(reason)
    assert set(reasons) == {"time_limit", "wall", "finish"}


def test_truncation_returns_first_observation_and_final_info():
    cfg = make_cfg(max_steps=4)
    env = vec_env(cfg, 2)
    first, _ = env.reset(seed=0)
    total = np.zeros(2)
    for _ in range(4):
        obs, reward, term, trunc, infos = env.step(np.array([[1, 0, 0], [0, 0, 0]], np.float32))
        total += reward
        assert not term.any()
    assert trunc.all()
    assert list(infos["end_reason"]) == ["time_limit", "time_limit"]
    for part, f in zip(obs, first, strict=True):  # fresh episode: same as the very first observation
        np.testing.assert_array_equal(part, f)
    final = infos["final_obs"]
    assert final[0][0, 0] > 0  # car 0 was moving when its episode ended
    np.testing.assert_allclose(final[2][0], [1, 0, 0])  # its last two actions, oldest first
    np.testing.assert_allclose(final[3][0], [1, 0, 0])
    np.testing.assert_allclose(infos["final_info"]["episode_return"], total)
    assert (infos["final_info"]["episode_steps"] == 4).all()
    assert (infos["episode_steps"] == 0).all() and (infos["race_time"] == 0).all()
    assert infos["reward_terms"]["progress"].shape == (2,)


def test_termination_at_the_finish_line():
    cfg = make_cfg(max_steps=500)
    env = vec_env(cfg, 2, n_quads=8, spacing=1.0)  # 4 m from start to finish
    env.reset(seed=0)
    for _ in range(20):
        obs, reward, term, trunc, infos = env.step(np.array([[1, 0, 0], [0, 1, 0]], np.float32))
        if term[0]:
            break
    assert term[0] and not trunc[0] and not term[1]
    assert infos["end_reason"][0] == "finish" and infos["end_reason"][1] == ""
    assert infos["final_info"]["finished"][0] and infos["final_info"]["progress"][0] == 1.0
    assert not infos["finished"][0]  # the restarted car
    assert list(infos["_final_obs"]) == [True, False]


def test_manual_reset_mask_without_autoreset():
    env = vec_env(make_cfg(max_steps=2), 2, autoreset=False)
    env.reset(seed=0)
    for _ in range(2):
        *_, trunc, infos = env.step(np.array([[1, 0, 0], [1, 0, 0]], np.float32))
    assert trunc.all() and "final_obs" not in infos and infos["episode_steps"].tolist() == [2, 2]
    env.reset(options={"reset_mask": np.array([True, False])})
    assert env.core.steps.tolist() == [0, 2]
    assert env.core.rewards.resets[-1].tolist() == [True, False]


# --------------------------------------------------------------------------- determinism, actions


def rollout(env, seed: int, actions: np.ndarray):
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for a in actions:
        obs, r, term, trunc, infos = env.step(a)
        out.append((obs, r, term, trunc, infos["position"]))
    return out, env.world.pos.copy()


def test_same_seed_same_trajectory_with_start_perturbations():
    cfg = make_cfg(max_steps=6, start_lateral=0.8, start_yaw_deg=5.0)
    actions = np.random.default_rng(0).uniform(-1, 1, (15, 3, 3)).astype(np.float32)
    a, pos_a = rollout(vec_env(cfg, 3), 7, actions)
    b, pos_b = rollout(vec_env(cfg, 3), 7, actions)
    c, pos_c = rollout(vec_env(cfg, 3), 8, actions)
    np.testing.assert_array_equal(pos_a, pos_b)
    for x, y in zip(a[1:], b[1:], strict=True):
        for u, v in zip(x, y, strict=True):
            if isinstance(u, tuple):
                for p, q in zip(u, v, strict=True):
                    np.testing.assert_array_equal(p, q)
            else:
                np.testing.assert_array_equal(u, v)
    assert not np.array_equal(pos_a, pos_c)


def test_start_perturbation_is_bounded_and_sideways():
    cfg = make_cfg(start_lateral=0.8, start_yaw_deg=5.0)
    env = vec_env(cfg, 64)
    env.reset(seed=3)
    w, track = env.world, env.track
    start = track.center[track.start] + [1.0, 0.0]
    np.testing.assert_allclose(w.pos[:, 0], start[0])  # the start line runs along y here
    assert np.abs(w.pos[:, 1] - start[1]).max() <= 0.8 and np.ptp(w.pos[:, 1]) > 1.2
    assert np.abs(w.yaw).max() <= np.radians(5.0) and np.ptp(w.yaw) > np.radians(7.0)
    mask = np.zeros(64, bool)
    mask[:2] = True
    before = w.pos.copy()
    env.reset(options={"reset_mask": mask})
    np.testing.assert_array_equal(w.pos[2:], before[2:])  # only the masked cars moved
    assert not np.array_equal(w.pos[:2], before[:2])


def test_nan_action_raises_and_changes_nothing():
    cfg = make_cfg()
    good = np.array([[1, 0, 0.2], [0.5, 0, -0.3]], np.float32)
    env = vec_env(cfg, 2)
    env.reset(seed=0)
    env.step(good)
    bad = good.copy()
    bad[1, 2] = np.nan
    with pytest.raises(EvoError, match="NaN"):
        env.step(bad)
    with pytest.raises(EvoError, match="shape"):
        env.step(good[:1])
    obs, r, *_ = env.step(good)
    ref = vec_env(cfg, 2)
    ref.reset(seed=0)
    ref.step(good)
    obs_ref, r_ref, *_ = ref.step(good)
    np.testing.assert_array_equal(r, r_ref)
    for p, q in zip(obs, obs_ref, strict=True):
        np.testing.assert_array_equal(p, q)
    assert env.core.steps.tolist() == [2, 2]


def test_out_of_range_actions_are_clipped():
    cfg = make_cfg(controls="analog")
    env = vec_env(cfg, 1)
    env.reset(seed=0)
    obs, *_ = env.step(np.array([[5.0, -3.0, 2.0]], np.float32))
    np.testing.assert_array_equal(obs[-1][0], [1.0, -1.0, 1.0])
    np.testing.assert_array_equal(env.world.last_actions[0], [1.0, -1.0, 1.0])


def test_single_env_requires_reset_after_the_end():
    env = single_env(make_cfg(max_steps=2))
    with pytest.raises(EvoError, match="reset"):
        env.step(np.zeros(3, np.float32))
    env.reset()
    env.step(np.zeros(3, np.float32))
    *_, trunc, info = env.step(np.zeros(3, np.float32))
    assert trunc and info["end_reason"] == "time_limit" and isinstance(info["checkpoints"], int)
    assert info["position"].shape == (3,) and set(info["reward_terms"]) == {"progress", "smooth"}
    with pytest.raises(EvoError, match="reset"):
        env.step(np.zeros(3, np.float32))


# --------------------------------------------------------------------------- rendering, config


@pytest.mark.parametrize("mode, shape", [("rgb_array", None), ("first_person", (8, 10, 3))])
def test_render_returns_rgb_frames(mode, shape):
    env = single_env(make_cfg("full"), render_mode=mode)
    env.reset(seed=0)
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
    if shape is not None:
        assert frame.shape == shape
    else:
        assert abs(max(frame.shape[:2]) - 480) <= 1
    vec = vec_env(make_cfg(), 3)
    vec.render_mode = mode
    vec.reset(seed=0)
    assert vec.render().shape[2] == 3
    with pytest.raises(EvoError, match="render_mode"):
        single_env(make_cfg(), render_mode="human")


def test_overrides_and_config_errors():
    cfg = resolve_config(None, hist_len=2, **{"lidar.beams": 7})
    assert cfg.env.hist_len == 2 and cfg.lidar.beams == 7
    with pytest.raises(ConfigError, match="hist_len"):
        resolve_config(None, hist_len=0)
    with pytest.raises(ConfigError, match="not_a_field"):
        resolve_config(None, not_a_field=1)


def test_registered_ids():
    for env_id in ("EvoRL-Lidar-v0", "EvoRL-LidarProgress-v0", "EvoRL-Full-v0"):
        assert env_id in gym.registry
