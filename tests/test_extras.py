"""The optional techniques: DrQ image shifts, RND intrinsic reward, parameter-space noise."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_config

from evo_rl.algos import make_agent
from evo_rl.algos.extras import RND, ParamNoiseActor, augment, random_shift
from evo_rl.config import EvoConfig
from evo_rl.envs.spaces import observation_space
from evo_rl.errors import ConfigError
from evo_rl.train.loop import Trainer
from evo_rl.train.run import create_run


def test_random_shift_moves_each_image_within_the_pad() -> None:
    torch.manual_seed(0)
    x = torch.arange(2 * 3 * 12 * 12, dtype=torch.float32).reshape(2, 3, 12, 12)
    assert torch.equal(random_shift(x, 0), x)
    y = random_shift(x, 2)
    assert y.shape == x.shape and y.dtype == x.dtype
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="replicate")
    for b in range(2):  # each image is the padded image cropped at one offset, the same for its channels
        hits = [
            (dx, dy)
            for dx in range(5)
            for dy in range(5)
            if torch.equal(padded[b, :, dy : dy + 12, dx : dx + 12], y[b])
        ]
        assert len(hits) == 1
    shifts = {tuple(random_shift(x[:1], 3)[0, 0, 0, :2].tolist()) for _ in range(30)}
    assert len(shifts) > 3  # the offsets vary
    images = torch.randint(0, 255, (4, 2, 8, 8), dtype=torch.uint8)
    speed = torch.rand(4, 1)
    out = augment((speed, images), [1], 2)
    assert out[0] is speed and out[1].dtype == torch.uint8 and out[1].shape == images.shape


def test_rnd_novelty_falls_where_the_agent_has_been() -> None:
    torch.manual_seed(0)
    cfg = EvoConfig()
    space = observation_space(cfg)
    rnd = RND(space, lr=1e-3)
    seen = tuple(torch.as_tensor(np.stack([s.sample() for _ in range(64)])) for s in space.spaces)
    first = rnd.error(seen).mean().item()
    for _ in range(200):
        rnd.intrinsic(seen)
    after = rnd.error(seen).mean().item()
    new = tuple(torch.as_tensor(np.stack([s.sample() for _ in range(64)])) * 0.5 for s in space.spaces)
    assert after < 0.2 * first  # the visited states are no longer novel
    assert rnd.error(new).mean().item() > 2 * after  # unvisited ones still are


def _batch(agent, space, n: int = 16):
    from evo_rl.memory.replay import Batch

    obs = tuple(torch.as_tensor(np.stack([s.sample() for _ in range(n)])) for s in space.spaces)
    return Batch(obs=obs, act=torch.rand(n, 3) * 2 - 1, rew=torch.rand(n), next_obs=obs, terminated=torch.zeros(n))


@pytest.mark.parametrize("algo", ["sac", "redq"])
def test_rnd_reward_in_the_update_and_the_checkpoint(algo: str) -> None:
    cfg = EvoConfig()
    cfg.algo.name = algo
    cfg.algo.sac.rnd_weight = 0.5
    cfg.algo.redq.rnd_weight = 0.5
    cfg.algo.sac.hidden = cfg.algo.redq.hidden = [32, 32]
    space = observation_space(cfg)
    from evo_rl.envs.spaces import action_space

    agent = make_agent(cfg, space, action_space(), "cpu")
    metrics = agent.update(_batch(agent, space)).metrics
    assert metrics["intrinsic_reward"] > 0
    state = agent.state_dict()
    assert "rnd" in state and "rnd_optim" in state
    other = make_agent(cfg, space, action_space(), "cpu")
    other.load_state_dict(state)
    for a, b in zip(agent.rnd.state_dict().values(), other.rnd.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_drq_needs_images_and_shifts_them_in_updates() -> None:
    from evo_rl.envs.spaces import action_space

    cfg = EvoConfig()
    cfg.algo.sac.drq_pad = 4
    with pytest.raises(ConfigError, match="drq_pad shifts image observations"):
        make_agent(cfg, observation_space(cfg), action_space(), "cpu")
    cfg.env.flavour = "full"
    cfg.camera.width = cfg.camera.height = 40
    space = observation_space(cfg)
    agent = make_agent(cfg, space, action_space(), "cpu")
    batch = _batch(agent, space, 8)
    obs, *_ = agent.unpack(batch)
    assert not torch.equal(obs[3], batch.obs[3])  # the images moved
    assert torch.equal(obs[0], batch.obs[0])  # the speed did not
    assert np.isfinite(agent.update(batch).metrics["qf1_loss"])


def test_parameter_noise_perturbs_and_adapts() -> None:
    from evo_rl.envs.spaces import action_space

    cfg = EvoConfig()
    cfg.algo.sac.hidden = [32, 32]
    space = observation_space(cfg)
    actor = make_agent(cfg, space, action_space(), "cpu").actor
    obs = tuple(np.stack([s.sample() for _ in range(32)]) for s in space.spaces)
    noisy = ParamNoiseActor(actor, target=10.0, interval=1)  # a distance it cannot reach: the noise grows
    assert not np.allclose(noisy.act(obs, test=True), actor.act(obs, test=True))
    s0 = noisy.sigma
    for _ in range(5):
        noisy.act(obs, test=True)
    assert noisy.sigma > s0 and noisy.distance > 0
    quiet = ParamNoiseActor(actor, target=1e-6, interval=1)  # a distance it always exceeds: the noise shrinks
    for _ in range(5):
        quiet.act(obs, test=True)
    assert quiet.sigma < s0
    steady = ParamNoiseActor(actor, target=0.1, interval=1000)
    a1, a2 = steady.act(obs), steady.act(obs)
    assert steady.sigma == s0  # no new draw inside an interval
    assert a1.shape == a2.shape == (32, 3)


def test_trainer_acts_with_parameter_noise(tmp_path) -> None:
    cfg = tiny_config("train.total_steps=80", "train.param_noise=0.2")
    trainer = Trainer(cfg, create_run(tmp_path, "pn", cfg))
    assert isinstance(trainer.collector.actor, ParamNoiseActor)
    c = trainer.train()
    assert c.env_steps == 80 and c.updates > 0
