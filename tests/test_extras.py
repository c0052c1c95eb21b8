"""The optional techniques: DrQ image shifts, RND intrinsic reward, parameter-space noise, the Dyna model,
the averaged policy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_config

from evo_rl.algos import make_agent
from evo_rl.algos.extras import RND, DynamicsModel, ParamNoiseActor, augment, random_shift
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


def _toy_world(n: int, gen: torch.Generator):
    """A known one-step world over a (speed, LIDAR) observation: the speed grows with the first action,
    the beams shift by the second, the reward is the new speed and a speed above 0.9 ends the episode."""
    from gymnasium import spaces

    space = spaces.Tuple((spaces.Box(0.0, 1.0, (1,), np.float32), spaces.Box(0.0, 10.0, (2, 3), np.float32)))
    speed = torch.rand(n, 1, generator=gen)
    beams = torch.rand(n, 2, 3, generator=gen) * 5 + 2.5
    act = torch.rand(n, 2, generator=gen) * 2 - 1
    next_speed = (speed + 0.1 * act[:, :1]).clamp(0.0, 1.0)
    next_beams = beams + act[:, 1, None, None]
    rew = next_speed[:, 0]
    return space, (speed, beams), act, rew, (next_speed, next_beams), (next_speed[:, 0] > 0.9).float()


def test_dynamics_model_learns_a_known_world() -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    space, *_ = _toy_world(1, gen)
    model = DynamicsModel(space, act_dim=2, hidden=64, lr=1e-3)
    for _ in range(1500):
        _, obs, act, rew, nxt, term = _toy_world(128, gen)
        model.learn(obs, act, rew, nxt, term)
    _, obs, act, rew, nxt, term = _toy_world(512, gen)
    (speed, beams), reward, done = model.imagine(obs, act)
    assert speed.shape == (512, 1) and beams.shape == (512, 2, 3)
    # errors far below the changes themselves (0.05 for the speed, 0.5 m for the beams)
    assert (speed - nxt[0]).abs().mean() < 0.01 and (beams - nxt[1]).abs().mean() < 0.1
    assert (reward - rew).abs().mean() < 0.02
    assert (done == term).float().mean() > 0.95
    assert float(speed.min()) >= 0.0 and float(speed.max()) <= 1.0  # within the space's bounds


@pytest.mark.parametrize("algo", ["sac", "redq"])
def test_dyna_mixes_imagined_transitions_into_the_batch(algo: str) -> None:
    from evo_rl.envs.spaces import action_space

    cfg = EvoConfig()
    cfg.algo.name = algo
    for sac in (cfg.algo.sac, cfg.algo.redq):
        sac.hidden, sac.model_ratio, sac.model_warmup = [32, 32], 0.25, 2
    space = observation_space(cfg)
    agent = make_agent(cfg, space, action_space(), "cpu")
    batch = _batch(agent, space, 16)
    for step in range(4):
        obs, act, rew, next_obs, done, discount, weights = agent.unpack(batch)
        k = 4 if step >= 2 else 0  # after model_warmup model steps, a quarter of the batch is imagined
        assert agent._model_metrics["imagined"] == k / 16
        for o, real in zip(obs, batch.obs, strict=True):
            assert torch.equal(o, real)  # every row starts from a real state
        assert torch.equal(act[k:], batch.act[k:]) and torch.equal(rew[k:], batch.rew[k:])
        assert torch.equal(next_obs[1][k:], batch.next_obs[1][k:])
        if k:
            assert not torch.equal(act[:k], batch.act[:k]) and not torch.equal(next_obs[1][:k], batch.next_obs[1][:k])
            assert torch.all(discount[:k] == cfg.algo.sac.gamma) and torch.all(weights == 1)
    metrics = agent.update(batch).metrics
    assert metrics["imagined"] == 0.25 and np.isfinite(metrics["model_loss"])
    state = agent.state_dict()
    assert "model" in state and "model_optim" in state
    other = make_agent(cfg, space, action_space(), "cpu")
    other.load_state_dict(state)
    assert int(other.model.count) == int(agent.model.count) == 5


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["memory.nstep=3"], "memory.nstep is 3"),
        (["memory.prioritized=true"], "no replay priorities"),
    ],
)
def test_dyna_refuses_what_it_cannot_learn(overrides: list[str], message: str) -> None:
    from evo_rl.config import load_config

    with pytest.raises(ConfigError, match=message):
        load_config(None, ["algo.sac.model_ratio=0.5", *overrides])
    load_config(None, ["algo.sac.model_ratio=0.5", "algo.name=ppo", *overrides])  # not SAC: nothing to refuse


def test_dyna_needs_vector_observations_and_trains(tmp_path) -> None:
    from evo_rl.envs.spaces import action_space

    cfg = EvoConfig()
    cfg.algo.sac.model_ratio = 0.5
    cfg.env.flavour = "full"
    cfg.camera.width = cfg.camera.height = 40
    with pytest.raises(ConfigError, match="model of vector observations"):
        make_agent(cfg, observation_space(cfg), action_space(), "cpu")
    cfg = tiny_config("train.total_steps=120", "algo.sac.model_ratio=0.5", "algo.sac.model_warmup=4")
    c = Trainer(cfg, create_run(tmp_path, "dyna", cfg)).train()
    assert c.env_steps == 120 and c.updates > 4


def test_a_worker_acts_with_parameter_noise_on_each_new_set_of_weights() -> None:
    from evo_rl.dist import wire
    from evo_rl.dist.worker import Worker
    from evo_rl.train.collect import Collector, exploring_actor
    from evo_rl.train.policy import build_actor

    cfg = tiny_config("train.param_noise=0.2")
    actor = build_actor(cfg).eval()
    assert exploring_actor(actor, 0.0, 0) is actor
    worker = Worker(cfg, 0)  # not connected: only its weight loading is exercised
    worker.cfg, worker.actor = cfg, actor
    env = type("Cars", (), {"num_envs": 4})()
    worker.collector = Collector(env, None, exploring_actor(actor, 0.2, 0), np.random.default_rng(0))  # type: ignore[arg-type]
    noisy = worker.collector.actor
    assert isinstance(noisy, ParamNoiseActor)
    space = observation_space(cfg)
    obs = tuple(np.stack([s.sample() for _ in range(4)]) for s in space.spaces)
    noisy.act(obs)
    first = noisy._noisy
    trained = build_actor(cfg)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(1.0)
    data = wire.weights_to_bytes({k: v.detach() for k, v in trained.state_dict().items()}, {"version": "3"})
    msg = wire.decode(wire.encode("weights", {"version": 3}, {"safetensors": np.frombuffer(data, np.uint8)}))
    worker._load_weights(msg)
    assert worker.version == 3 and noisy._noisy is None  # the next step perturbs the new weights
    noisy.act(obs)
    assert noisy._noisy is not first
    clean = dict(actor.named_parameters())
    for name, p in noisy._noisy.named_parameters():  # close to the new weights, not the old ones
        assert (p - clean[name]).abs().mean() < 0.5 * (p - dict(first.named_parameters())[name]).abs().mean()


@pytest.mark.parametrize("algo", ["sac", "redq"])
def test_the_averaged_policy_follows_the_actor_and_is_checkpointed(algo: str) -> None:
    from evo_rl.envs.spaces import action_space

    cfg = EvoConfig()
    cfg.algo.name = algo
    for section in (cfg.algo.sac, cfg.algo.redq):
        section.hidden, section.policy_average = [32, 32], 0.25
    cfg.algo.redq.q_updates_per_policy_update = 1
    space = observation_space(cfg)
    agent = make_agent(cfg, space, action_space(), "cpu")
    assert agent.policy is agent.actor  # nothing averaged yet
    torch.manual_seed(0)
    snapshots = []
    for _ in range(6):
        agent.update(_batch(agent, space))
        snapshots.append([p.detach().clone() for p in agent.actor.parameters()])
    assert agent.policy is agent.actor_average and int(agent.averaged) == 6
    # steps 1-4 are the plain mean (weights 1, 1/2, 1/3, 1/4), then the rate 0.25: mean of 1-4, then two EMA steps
    expected = [sum(s[i] for s in snapshots[:4]) / 4 for i in range(len(snapshots[0]))]
    for s in snapshots[4:]:
        expected = [e + 0.25 * (x - e) for e, x in zip(expected, s, strict=True)]
    for e, p in zip(expected, agent.actor_average.parameters(), strict=True):
        assert torch.allclose(e, p, atol=1e-6)
        assert not p.requires_grad
    assert not torch.equal(snapshots[-1][0], next(agent.actor_average.parameters()))  # not the actor itself
    state = agent.state_dict()
    other = make_agent(cfg, space, action_space(), "cpu")
    other.load_state_dict(state)
    assert int(other.averaged) == 6
    for a, b in zip(agent.actor_average.parameters(), other.actor_average.parameters(), strict=True):
        assert torch.equal(a, b)


def test_trainer_evaluates_and_saves_the_averaged_policy(tmp_path) -> None:
    from evo_rl.train.policy import load_policy

    cfg = tiny_config("train.total_steps=120", "algo.sac.policy_average=0.01")
    trainer = Trainer(cfg, create_run(tmp_path, "avg", cfg))
    trainer.train()
    agent = trainer.agent
    assert int(agent.averaged) > 0 and trainer.policy is agent.actor_average
    saved = load_policy(trainer.run.policy_path).actor.state_dict()
    for name, value in agent.actor_average.state_dict().items():
        assert torch.equal(saved[name], value), name
    assert any(not torch.equal(saved[n], v) for n, v in agent.actor.state_dict().items())  # not the trained actor


def test_dyna_uses_one_step_returns_unless_told_otherwise() -> None:
    from evo_rl.config import load_config

    assert load_config(None, []).memory.nstep == 3  # the default: 3-step returns
    assert load_config(None, ["algo.sac.model_ratio=0.25"]).memory.nstep == 1  # the model learns one step
    assert load_config(None, ["algo.sac.model_ratio=0.25", "memory.nstep=1"]).memory.nstep == 1
