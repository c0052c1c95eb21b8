"""The live stack end to end against the virtual TrackMania 2020: the car source, the real-time
environment (rtgym), the Gymnasium ids and the trainer with ``env.source: tm2020``.

The virtual game runs at 5x (``game.time_scale``), so a 48 s lap takes about 10 s of real time
through the same real-time code a real game uses.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from evo_rl.config import EvoConfig, RewardTermConfig
from evo_rl.envs.core import END_LOST
from evo_rl.envs.source import CarSource
from evo_rl.envs.spaces import observation_space
from evo_rl.errors import ConfigError
from evo_rl.games.realtime import RealTimeVecEnv, make_realtime_env
from evo_rl.games.tm2020.source import open_source
from evo_rl.games.tm2020.virtual import VirtualTM2020
from evo_rl.sim.world import World
from evo_rl.train.policy import PRETRAINED, load_policy

SCALE = 5.0


def game_config(game: VirtualTM2020, cfg: EvoConfig | None = None, **game_fields) -> EvoConfig:
    cfg = (cfg or EvoConfig()).model_copy(deep=True)
    cfg.env.source = "tm2020"
    cfg.game.input = "virtual"
    cfg.game.port = game.port
    cfg.game.input_port = game.input_port
    cfg.game.time_scale = game.time_scale
    for key, value in game_fields.items():
        setattr(cfg.game, key, value)
    return cfg


@pytest.fixture
def game():
    with VirtualTM2020("evo-test", port=0, time_scale=SCALE) as g:
        yield g


def test_sources_implement_the_contract(game) -> None:
    cfg = game_config(game)
    source = open_source(cfg)
    try:
        assert isinstance(source, CarSource)
        assert isinstance(World(source.track, 2), CarSource)
        assert source.realtime and not World.realtime
        # with the virtual game's track as the track model, it reports what the simulator reports but the frames
        assert source.provides >= {"position", "heading", "speed", "race_time", "checkpoints", "finish", "track"}
        assert "frames" not in source.provides and "lidar" in source.provides
        source.reset()
        assert source.race_time_ms.dtype == np.int64 and source.race_time_ms[0] < 300
        before = source.position3()
        for _ in range(2000):  # each observe() waits for the next record: one 10 ms game frame
            source.step(np.array([[1.0, 0.0, 0.0]], np.float32))
            source.observe()
            if source.race_time_ms[0] > 1000:
                break
        after = source.position3()
        assert after[0, 0] - before[0, 0] > 0.5  # evo-test starts along +x
        # the geometric LIDAR from telemetry equals the simulator's for the same pose
        sim = World(source.track, 1)
        sim.pos[0] = after[0, [0, 2]]
        sim.yaw[0] = source.yaw[0]
        sim.quad[0] = source.quad[0]
        np.testing.assert_allclose(source.lidar(), sim.lidar(), atol=1e-4)
        assert source.progress_s[0] > source.track.s[source.track.start]
    finally:
        source.close()


def test_observation_spaces_are_the_simulators(game) -> None:
    for flavour in ("lidar", "lidar_progress"):
        cfg = game_config(game)
        cfg.env.flavour = flavour
        env = make_realtime_env(config=cfg)
        try:
            assert env.observation_space == observation_space(cfg)
            obs, info = env.reset(seed=0)
            assert env.observation_space.contains(obs)
            obs, reward, terminated, truncated, info = env.step(np.array([1.0, 0.0, 0.0], np.float32))
            assert env.observation_space.contains(obs)
            assert set(info) >= {"race_time_ms", "progress", "checkpoints", "end_reason", "reward_terms", "timing"}
            assert np.isfinite(reward) and not terminated and not truncated
        finally:
            env.close()


def test_gymnasium_id_builds_the_real_time_env(game) -> None:
    import evo_rl.envs  # noqa: F401 - registers the ids

    env = gym.make("EvoRL-TM2020-Lidar-v0", config=game_config(game))
    try:
        obs, _ = env.reset(seed=0)
        assert len(obs) == 4 and obs[1].shape == (4, 19)
    finally:
        env.close()


def test_the_shipped_policy_finishes_a_lap_in_real_time(game) -> None:
    policy = load_policy(PRETRAINED)
    env = make_realtime_env(config=game_config(game, policy.cfg))
    try:
        obs, _ = env.reset(seed=0)
        for _ in range(env.interface.core.max_steps):
            obs, _, terminated, truncated, info = env.step(policy.actor.act(tuple(o[None] for o in obs), test=True)[0])
            if terminated or truncated:
                break
        assert terminated and not truncated and info["end_reason"] == "finish"
        assert info["finished"] and info["progress"] == 1.0
        assert 40.0 < info["race_time"] < 60.0 and info["race_time_ms"] % game.frame_ms == 0
        assert info["timing"]["period_ms"] == pytest.approx(1000 * 0.05 / SCALE, rel=0.1)
    finally:
        env.close()


def test_an_episode_that_ends_respawns_the_car(game) -> None:
    cfg = game_config(game)
    cfg.episode.no_progress_seconds = 2.0
    env = make_realtime_env(config=cfg)
    try:
        obs, info = env.reset(seed=0)
        start = info["position"]
        for _ in range(400):  # brake in place: no progress for 2 s ends the episode
            obs, _, terminated, truncated, info = env.step(np.array([-1.0, 1.0, 0.0], np.float32))
            if terminated or truncated:
                break
        assert terminated and info["end_reason"] == "no_progress" and not info["finished"]
        obs, info = env.reset(seed=1)
        assert info["race_time_ms"] < 300 and info["episode_steps"] == 0
        np.testing.assert_allclose(info["position"], start, atol=0.5)
    finally:
        env.close()


def test_a_game_that_stops_ends_the_episode_as_truncated_and_comes_back() -> None:
    game = VirtualTM2020("evo-test", port=0, time_scale=SCALE).start()
    port, input_port = game.port, game.input_port
    cfg = game_config(game, record_timeout=0.5, reconnect_timeout=10.0)
    env = RealTimeVecEnv(make_realtime_env(config=cfg), autoreset=False)
    try:
        env.reset(seed=0)
        for _ in range(5):
            env.step(np.array([[1.0, 0.0, 0.0]], np.float32))
        game.stop()
        for _ in range(50):
            _, _, terminated, truncated, infos = env.step(np.array([[1.0, 0.0, 0.0]], np.float32))
            if truncated[0] or terminated[0]:
                break
        assert truncated[0] and not terminated[0], "a lost game is a cut episode, not a terminal state"
        assert infos["end_reason"][0] == END_LOST and not infos["finished"][0]
        assert "no record" in infos["game_error"]
        # the game restarts on the same ports: the next episode reconnects and drives
        game = VirtualTM2020("evo-test", port=port, input_port=input_port, time_scale=SCALE).start()
        obs, info = env.reset()
        assert info["race_time_ms"][0] < 300
        _, _, terminated, truncated, infos = env.step(np.array([[1.0, 0.0, 0.0]], np.float32))
        assert not (terminated[0] or truncated[0])
    finally:
        env.close()
        game.stop()


def test_default_config_works_with_a_game_and_no_track_model(game) -> None:
    cfg = game_config(game)
    cfg.env.track = None
    # LIDAR needs a track model or the game's picture: refused at start-up, naming the flavour and the source
    with pytest.raises(ConfigError, match=r"env.flavour: lidar needs lidar.*'tm2020'.*track model"):
        make_realtime_env(config=cfg)
    # pixels need no track model, but the default reward needs the car's place on a track
    cfg.env.flavour = "full"
    cfg.game.screen = "virtual"
    with pytest.raises(ConfigError, match=r"progress_distance.*needs track.*'tm2020'"):
        make_realtime_env(config=cfg)
    # without a track model, no_progress_seconds counts metres driven; checkpoints and time still work
    cfg.reward = [RewardTermConfig(term="time_penalty", weight=0.1), RewardTermConfig(term="checkpoint")]
    cfg.episode.no_progress_seconds = 1.0
    env = make_realtime_env(config=cfg)
    try:
        obs, info = env.reset(seed=0)
        assert env.observation_space.contains(obs) and obs[3].shape == (4, 64, 64) and obs[3].std() > 0
        for _ in range(200):  # brake in place: 1 s without driving a metre ends the episode
            obs, _, terminated, truncated, info = env.step(np.array([-1.0, 1.0, 0.0], np.float32))
            if terminated or truncated:
                break
        assert terminated and info["end_reason"] == "no_progress"
        assert set(info["reward_terms"]) == {"time_penalty", "checkpoint"}
    finally:
        env.close()


def test_tmrl_lidar_from_the_virtual_games_window() -> None:
    from evo_rl.sim.screen_lidar import max_distance

    with VirtualTM2020("evo-test", port=0, time_scale=SCALE) as game:
        cfg = game_config(game, screen="virtual")
        cfg.lidar.kind = "tmrl"
        env = make_realtime_env(config=cfg)
        try:
            obs, _ = env.reset(seed=0)
            assert env.observation_space == observation_space(cfg) and env.observation_space.contains(obs)
            for _ in range(10):
                obs, *_ = env.step(np.array([1.0, 0.0, 0.0], np.float32))
            lidar = obs[1][-1]  # [19] px, the newest frame
            # the same function over the same picture the game sent: the cockpit view of the car at that frame
            assert lidar.shape == (19,) and 0 < lidar.min() and lidar.max() <= max_distance()
            # near the middle of the start straight: the lower beams meet both borders at about the same
            # distance, the one straight up sees past the end of the road (TMRL's no-border value)
            assert lidar[5] < lidar[9] and lidar[13] < lidar[9]
            assert abs(lidar[5] - lidar[13]) < 0.2 * lidar[5]
        finally:
            env.close()


def test_tmrl_protocol_episode_and_respawn_through_the_input_backend() -> None:
    """TMRL's plugin: no commands, no heading or race time; respawn is the game's button."""
    with VirtualTM2020("evo-test", port=0, protocol="tmrl", time_scale=SCALE) as game:
        cfg = game_config(game, protocol="tmrl", screen="virtual")
        cfg.lidar.kind = "tmrl"
        env = make_realtime_env(config=cfg)
        try:
            assert env.source.name == "tm2020-tmrl" and "race_time" not in env.source.provides
            obs, info = env.reset(seed=0)
            start = info["position"]
            for _ in range(40):
                obs, reward, terminated, truncated, info = env.step(np.array([1.0, 0.0, 0.0], np.float32))
            assert info["position"][0] - start[0] > 2.0 and info["progress"] > 0 and not (terminated or truncated)
            assert env.source.yaw[0] == pytest.approx(0.0, abs=0.05)  # heading from the motion: along +x
            obs, info = env.reset(seed=1)  # the respawn button, then a record at rest back at the start
            np.testing.assert_allclose(info["position"], start, atol=0.5)
            assert info["speed_kmh"] < 2.0
        finally:
            env.close()
    # a term that needs what TMRL's plugin does not send is refused at start-up
    with VirtualTM2020("evo-test", port=0, protocol="tmrl", time_scale=SCALE) as game:
        cfg = game_config(game, protocol="tmrl", screen="virtual")
        cfg.lidar.kind = "tmrl"
        cfg.reward = [RewardTermConfig(term="checkpoint")]
        with pytest.raises(ConfigError, match=r"term 'checkpoint' needs checkpoints.*'tm2020-tmrl'"):
            make_realtime_env(config=cfg)


def test_bench_realtime_and_capture_report_their_figures() -> None:
    from evo_rl.bench.capture import run_virtual_screen
    from evo_rl.bench.realtime import run

    out = run(steps=60, time_scale=SCALE)
    assert out["bench"] == "realtime" and out["nominal_period_ms"] == pytest.approx(10.0)
    for key in ("period_ms", "jitter_p50_ms", "jitter_p99_ms", "timeouts_per_1000", "latency_p50_ms", "act_ms"):
        assert np.isfinite(out[key]) and out[key] >= 0, key
    assert out["latency_p50_ms"] > 0  # the telemetry's own delivery at least
    cap = run_virtual_screen(frames=5, time_scale=SCALE)
    assert (cap["height"], cap["width"]) == (488, 958) and cap["capture_ms"]["mean"] > 0


def test_focusing_the_game_window_warns_where_it_cannot(monkeypatch) -> None:
    from evo_rl.games import window
    from evo_rl.games.errors import GameError
    from evo_rl.games.tm2020 import source

    def no_window(*args, **kwargs):
        raise GameError("no window system here")

    monkeypatch.setattr(window, "prepare_window", no_window)
    with pytest.warns(UserWarning, match="not focused.*no window system here"):
        source._focus_game_window(EvoConfig())
    sized = []
    monkeypatch.setattr(window, "prepare_window", lambda w, h: sized.append((w, h)) or {})
    source._focus_game_window(EvoConfig())
    assert sized == [(958, 488)]
