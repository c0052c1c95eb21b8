"""Demonstrations in the replay and behaviour-cloning pre-training (train.demo_episodes, train.bc_updates)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_config

from evo_rl.algos import make_agent
from evo_rl.config import EvoConfig, GeneratedTracks
from evo_rl.envs.vector import VecTrackEnv
from evo_rl.errors import ConfigError
from evo_rl.memory import ObsLayout
from evo_rl.train.collect import Collector
from evo_rl.train.imitation import ExpertActor, behaviour_cloning, check_imitation, collect_demos
from evo_rl.train.learn import Learner
from evo_rl.train.loop import Trainer
from evo_rl.train.run import create_run


def _setup(cfg: EvoConfig) -> tuple[VecTrackEnv, object, Learner, Collector]:
    env = VecTrackEnv(cfg)
    agent = make_agent(cfg, env.single_observation_space, env.single_action_space, "cpu")
    layout = ObsLayout.from_space(env.single_observation_space, cfg.env.hist_len, cfg.env.act_buf_len, "lidar")
    learner = Learner(cfg, agent, layout, env.num_envs)
    collector = Collector(env, layout, agent.actor, np.random.default_rng(0))
    collector.reset(seed=0)
    return env, agent, learner, collector


def test_the_expert_fills_the_replay_and_every_stream_ends() -> None:
    cfg = EvoConfig()
    cfg.env.n_envs = 4
    cfg.env.tracks = ["evo-mini", GeneratedTracks(seeds=(7, 9), n_blocks=6)]  # the expert drives every track
    env, _, learner, collector = _setup(cfg)
    stats, _ = collect_demos(collector, learner, cfg, 6)
    assert stats.episodes >= 6 and stats.finishes == stats.episodes  # the expert finishes every track
    assert stats.transitions == len(learner.memory)  # every step stored, each once
    assert len({t.name for t in env.world.tracks}) == 3
    assert collector.actor is not None and not isinstance(collector.actor, ExpertActor)  # the agent's actor back
    # the cut: every car's stream ended, so a new episode can start on it
    replay = learner.memory
    before = len(replay)
    env.reset(seed=5)
    collector.obs, _ = env.reset(seed=5)
    learner.add(collector.step(random=True))
    assert len(replay) >= before  # the streams took the new episodes


def test_behaviour_cloning_brings_the_actor_to_the_expert() -> None:
    cfg = EvoConfig()
    cfg.env.n_envs = 8
    cfg.env.track = "evo-mini"
    cfg.algo.sac.hidden = [64, 64]
    env, agent, learner, collector = _setup(cfg)
    collect_demos(collector, learner, cfg, 8)
    batch = learner.memory.sample(512)

    def steer_error() -> float:
        with torch.no_grad():
            a = agent.actor.act_tensor(batch.obs, test=True)
        return float((a[:, 2] - batch.act[:, 2]).abs().mean())

    torch.manual_seed(0)
    before = steer_error()
    out = behaviour_cloning(agent, learner.memory, 300, 128)
    after = steer_error()
    assert out["bc_nll_last"] < out["bc_nll_first"] - 3.0
    assert after < 0.5 * before, (before, after)


def test_imitation_settings_are_checked() -> None:
    cfg = EvoConfig()
    cfg.train.demo_episodes = 4
    with pytest.raises(ConfigError, match="off-policy replay"):
        check_imitation(cfg, on_policy=True)
    cfg.train.demo_episodes = 0
    cfg.train.bc_updates = 10
    with pytest.raises(ConfigError, match="set train.demo_episodes > 0"):
        check_imitation(cfg, on_policy=False)
    check_imitation(EvoConfig(), on_policy=True)  # nothing asked: nothing refused


def test_trainer_seeds_demonstrations_before_learning(tmp_path) -> None:
    cfg = tiny_config("train.total_steps=80", "train.demo_episodes=4", "train.bc_updates=5", "env.track=evo-mini")
    run = create_run(tmp_path, "demo", cfg)
    trainer = Trainer(cfg, run)
    c = trainer.train()
    assert c.env_steps == 80  # the demonstrations are not the agent's steps
    assert len(trainer.memory) > 80 + 4 * 30  # but they are in its replay (each demo episode is 40 steps here)
    assert any(n.startswith("demonstrations: the expert drove") for n in trainer._notes)
    assert any(n.startswith("behaviour cloning: 5 batches") for n in trainer._notes)
