"""SAC, REDQ-SAC and PPO agents: targets against direct computations, updates on every
observation flavour, learned entropy, checkpoint state round trips, factory and presets."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from gymnasium import spaces

from evo_rl.algos import (
    Batch,
    OffPolicyAgent,
    OnPolicyAgent,
    PPOAgent,
    REDQAgent,
    SACAgent,
    UpdateResult,
    agent_class,
    flatten_state,
    load_state,
    make_agent,
    save_state,
    unflatten_state,
)
from evo_rl.algos.base import resolve_amp
from evo_rl.config import EvoConfig, PPOConfig, REDQConfig, SACConfig, load_config
from evo_rl.errors import CheckpointError, ConfigError

ACT = spaces.Box(-1.0, 1.0, (3,), np.float32)
PREV_ACTIONS = (spaces.Box(-1.0, 1.0, (3,), np.float32), spaces.Box(-1.0, 1.0, (3,), np.float32))
FLAVOURS = {
    "lidar": spaces.Tuple(
        (spaces.Box(0.0, 1000.0, (1,), np.float32), spaces.Box(0.0, 100.0, (4, 19), np.float32), *PREV_ACTIONS)
    ),
    "lidar_progress": spaces.Tuple(
        (
            spaces.Box(0.0, np.inf, (1,), np.float32),
            spaces.Box(0.0, 1.0, (1,), np.float32),
            spaces.Box(0.0, 100.0, (4, 19), np.float32),
            *PREV_ACTIONS,
        )
    ),
    "full": spaces.Tuple(
        (
            spaces.Box(0.0, 1000.0, (1,), np.float32),
            spaces.Box(0.0, 6.0, (1,), np.float32),
            spaces.Box(0.0, 11000.0, (1,), np.float32),
            spaces.Box(0, 255, (4, 64, 64), np.uint8),
            *PREV_ACTIONS,
        )
    ),
    "flat": spaces.Box(-1.0, 100.0, (83,), np.float32),
}
LIDAR = FLAVOURS["lidar"]
HIDDEN = [32, 32]


def random_obs(space: spaces.Space, n: int, gen: np.random.Generator):
    def part(p: spaces.Box) -> torch.Tensor:
        high = np.where(np.isfinite(p.high), p.high, 300.0)
        return torch.as_tensor((gen.uniform(p.low, high, (n, *p.shape))).astype(p.dtype))

    return part(space) if isinstance(space, spaces.Box) else tuple(part(p) for p in space.spaces)


def random_batch(space: spaces.Space, n: int = 16, seed: int = 0, **extra) -> Batch:
    gen = np.random.default_rng(seed)
    return Batch(
        obs=random_obs(space, n, gen),
        act=torch.as_tensor(gen.uniform(-1, 1, (n, 3)), dtype=torch.float32),
        rew=torch.as_tensor(gen.normal(size=n), dtype=torch.float32),
        next_obs=random_obs(space, n, gen),
        terminated=torch.as_tensor(gen.random(n) < 0.3, dtype=torch.float32),
        **extra,
    )


def linear_stack(x: torch.Tensor, layers: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """A plain MLP (ReLU between layers) from explicit (weight [in, out], bias [out]) pairs."""
    for i, (w, b) in enumerate(layers):
        x = x @ w + b
        if i < len(layers) - 1:
            x = torch.relu(x)
    return x.squeeze(-1)


def member_q(ensemble, obs, action, i: int) -> torch.Tensor:
    layers = [(w[i], b[i, 0]) for w, b in zip(ensemble.weights, ensemble.biases, strict=True)]
    return linear_stack(torch.cat([ensemble.encoder(obs), action], dim=1), layers)


# --------------------------------------------------------------------------- targets


def test_sac_next_q_value_matches_direct_computation():
    torch.manual_seed(0)
    agent = SACAgent(LIDAR, ACT, SACConfig(hidden=HIDDEN, alpha=0.3))
    batch = random_batch(LIDAR, discount=torch.full((16,), 0.9**3))
    torch.manual_seed(5)
    got = agent.next_q_value(batch.next_obs, batch.rew, batch.terminated, batch.discount)
    with torch.no_grad():
        torch.manual_seed(5)  # the same sampled next actions
        next_action, next_log_pi = agent.actor(batch.next_obs)
        q1 = member_q(agent.critic_target, batch.next_obs, next_action, 0)
        q2 = member_q(agent.critic_target, batch.next_obs, next_action, 1)
        expected = batch.rew + 0.9**3 * (1 - batch.terminated) * (torch.minimum(q1, q2) - 0.3 * next_log_pi)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_redq_next_q_value_with_a_fixed_subset_matches_direct_computation():
    torch.manual_seed(0)
    agent = REDQAgent(LIDAR, ACT, REDQConfig(hidden=HIDDEN, n_critics=5, m_target=3, alpha=0.1))
    with torch.no_grad():  # make the target critics differ from the online ones
        for p in agent.critic_target.parameters():
            p.add_(0.05 * torch.randn_like(p))
    batch = random_batch(LIDAR)
    members = torch.tensor([4, 0, 2])
    discount = torch.full((16,), 0.99)
    torch.manual_seed(7)
    got = agent.next_q_value(batch.next_obs, batch.rew, batch.terminated, discount, members)
    with torch.no_grad():
        torch.manual_seed(7)
        next_action, next_log_pi = agent.actor(batch.next_obs)
        qs = [member_q(agent.critic_target, batch.next_obs, next_action, i) for i in (4, 0, 2)]
        min_q = torch.minimum(torch.minimum(qs[0], qs[1]), qs[2])
        expected = batch.rew + 0.99 * (1 - batch.terminated) * (min_q - 0.1 * next_log_pi)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    subset = agent.sample_members()
    assert subset.shape == (3,) and len(set(subset.tolist())) == 3 and int(subset.max()) < 5


def test_batch_discount_and_importance_weights_are_used():
    torch.manual_seed(0)
    agent = SACAgent(LIDAR, ACT, SACConfig(hidden=HIDDEN))
    batch = random_batch(LIDAR, discount=torch.zeros(16), weights=torch.zeros(16))
    torch.testing.assert_close(
        agent.next_q_value(batch.next_obs, batch.rew, batch.terminated, batch.discount), batch.rew
    )
    critic_before = [p.clone() for p in agent.critic.parameters()]
    result = agent.update(batch)  # zero importance weights: the critics do not move
    for before, after in zip(critic_before, agent.critic.parameters(), strict=True):
        torch.testing.assert_close(before, after)
    assert result.td_error is not None and result.td_error.shape == (16,)


def squashed_gaussian_by_hand(actor, obs, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """SAC's policy written out (appendix C): ``u = mean + std * eps``, ``a = tanh(u)``,
    ``log pi(a|s) = log N(u; mean, std) - sum log(1 - tanh(u)^2)`` (action bounds [-1, 1])."""
    layers = [(m.weight.T, m.bias) for m in actor.net if isinstance(m, torch.nn.Linear)]
    out = actor.encoder(obs)
    for i, (w, b) in enumerate(layers):
        out = out @ w + b
        if i < len(layers) - 1:
            out = torch.relu(out)
    mean, log_std = out[:, :3], out[:, 3:].clamp(-20.0, 2.0)
    std = log_std.exp()
    u = mean + std * eps
    a = torch.tanh(u)
    log_normal = (-((u - mean) ** 2) / (2 * std**2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
    return a, log_normal - torch.log(1 - a**2).sum(-1)


def test_sac_actor_and_alpha_losses_match_the_papers_equations():
    torch.manual_seed(0)
    agent = SACAgent(LIDAR, ACT, SACConfig(hidden=HIDDEN, alpha=0.2, learn_entropy=True, target_entropy=-2.5))
    obs = random_batch(LIDAR, n=16, seed=3).obs
    torch.manual_seed(11)
    actor_loss, log_pi = agent.actor_loss(obs)
    alpha_loss = agent.alpha_loss(log_pi)
    alpha_loss.backward()

    torch.manual_seed(11)
    eps = torch.randn(16, 3)  # the same noise the actor drew
    with torch.no_grad():
        a, log_pi_hand = squashed_gaussian_by_hand(agent.actor, obs, eps)
        q1, q2 = (member_q(agent.critic, obs, a, i) for i in (0, 1))
        # J_pi = E[alpha log pi(a|s) - min_i Q_i(s, a)] (eq. 7, clipped double Q)
        expected_actor = (0.2 * log_pi_hand - torch.minimum(q1, q2)).mean()
        # J(alpha) = E[-alpha log pi(a|s) - alpha H_target] (eq. 18) with alpha = exp(log_alpha), H_target = 2.5;
        # minimised over log_alpha, whose gradient is -(E[log pi] + target_entropy)
        expected_alpha = -(math.log(0.2) * (log_pi_hand + -2.5)).mean()
    torch.testing.assert_close(log_pi.detach(), log_pi_hand, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(actor_loss.detach(), expected_actor, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(alpha_loss.detach(), expected_alpha, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(agent.log_alpha.grad, -(log_pi_hand.mean() - 2.5), rtol=1e-4, atol=1e-4)

    # the actor loss reaches the actor's parameters only, through the action
    agent.actor.zero_grad()
    agent.critic.zero_grad()
    agent.actor_loss(obs)[0].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in agent.actor.parameters())
    assert all(p.grad is None or not p.grad.any() for p in agent.critic.parameters())


def test_sac_update_is_the_papers_losses_in_order():
    """One update: critic step on J_Q with the pre-update target, then J_pi with the stepped critic and the
    pre-update actor, then J(alpha); the TD error is the pre-step twin mean's distance to the target."""
    torch.manual_seed(0)
    agent = SACAgent(LIDAR, ACT, SACConfig(hidden=HIDDEN, alpha=0.3, learn_entropy=True, tau=0.1))
    batch = random_batch(LIDAR, n=16, seed=4)
    before = copy.deepcopy(agent)
    torch.manual_seed(21)
    result = agent.update(batch)

    torch.manual_seed(21)
    eps_next, eps = torch.randn(16, 3), torch.randn(16, 3)  # next_q_value's draw, then the policy's
    with torch.no_grad():
        next_a, next_log_pi = squashed_gaussian_by_hand(before.actor, batch.next_obs, eps_next)
        q_next = torch.minimum(*(member_q(before.critic_target, batch.next_obs, next_a, i) for i in (0, 1)))
        y = batch.rew + 0.99 * (1 - batch.terminated) * (q_next - 0.3 * next_log_pi)  # default gamma 0.99
        qf1, qf2 = (member_q(before.critic, batch.obs, batch.act, i) for i in (0, 1))
        a, log_pi = squashed_gaussian_by_hand(before.actor, batch.obs, eps)
        q_pi = torch.minimum(*(member_q(agent.critic, batch.obs, a, i) for i in (0, 1)))  # after the critic step
    m = result.metrics
    assert m["qf1_loss"] == pytest.approx(((qf1 - y) ** 2).mean().item(), rel=1e-4)
    assert m["qf2_loss"] == pytest.approx(((qf2 - y) ** 2).mean().item(), rel=1e-4)
    assert m["next_q_value"] == pytest.approx(y.mean().item(), rel=1e-4, abs=1e-5)
    assert m["actor_loss"] == pytest.approx((0.3 * log_pi - q_pi).mean().item(), rel=1e-4, abs=1e-5)
    assert m["alpha_loss"] == pytest.approx(-(math.log(0.3) * (log_pi - 6.0)).mean().item(), rel=1e-4)  # target -6
    assert m["entropy"] == pytest.approx(-log_pi.mean().item(), rel=1e-4, abs=1e-5)
    torch.testing.assert_close(result.td_error, ((qf1 + qf2) / 2 - y).abs(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("algo", ["sac", "redq"])
def test_target_critics_move_by_exactly_tau(algo):
    torch.manual_seed(0)
    if algo == "sac":
        agent = SACAgent(LIDAR, ACT, SACConfig(hidden=HIDDEN, tau=0.25))
    else:
        agent = REDQAgent(LIDAR, ACT, REDQConfig(hidden=HIDDEN, tau=0.25, n_critics=4))
    for i in range(2):  # the second update starts from targets that differ from the critics
        target_before = [p.clone() for p in agent.critic_target.parameters()]
        agent.update(random_batch(LIDAR, n=8, seed=i))
        pairs = zip(target_before, agent.critic_target.parameters(), agent.critic.parameters(), strict=True)
        for old, new, online in pairs:
            torch.testing.assert_close(new, 0.75 * old + 0.25 * online, rtol=0, atol=1e-6)
            assert not torch.equal(new, old)


@pytest.mark.parametrize("algo", ["sac", "redq"])
def test_critic_loss_falls_on_a_fixed_batch(algo):
    """With discount 0 the target is the reward: repeated updates on one batch regress the critics onto it."""
    torch.manual_seed(0)
    if algo == "sac":
        agent = SACAgent(LIDAR, ACT, SACConfig(hidden=HIDDEN, lr_critic=3e-3))
        key = "qf1_loss"
    else:
        agent = REDQAgent(LIDAR, ACT, REDQConfig(hidden=HIDDEN, lr_critic=3e-3, n_critics=4))
        key = "qf_loss"
    batch = random_batch(LIDAR, n=32, seed=5, discount=torch.zeros(32))
    losses = [agent.update(batch).metrics[key] for _ in range(150)]
    assert losses[0] > 0.3  # rewards ~ N(0, 1), critics start near 0
    assert losses[-1] < 0.1 * losses[0]
    assert max(losses[-10:]) < min(losses[:10])


def test_redq_updates_the_policy_every_g_th_call_only():
    torch.manual_seed(0)
    agent = REDQAgent(LIDAR, ACT, REDQConfig(hidden=HIDDEN, n_critics=4, q_updates_per_policy_update=3))
    for call in range(1, 7):
        actor_before = [p.clone() for p in agent.actor.parameters()]
        metrics = agent.update(random_batch(LIDAR, n=8, seed=call)).metrics
        moved = any(not torch.equal(b, p) for b, p in zip(actor_before, agent.actor.parameters(), strict=True))
        assert moved == (call % 3 == 0) == ("actor_loss" in metrics), call
    assert agent.num_updates == 6


# --------------------------------------------------------------------------- updates on every flavour


def make_test_agent(algo: str, space: spaces.Space, amp: bool | None = None):
    if algo == "sac":
        return SACAgent(space, ACT, SACConfig(hidden=HIDDEN), amp=amp)
    if algo == "redq":
        return REDQAgent(space, ACT, REDQConfig(hidden=HIDDEN, n_critics=4, q_updates_per_policy_update=2), amp=amp)
    return PPOAgent(space, ACT, PPOConfig(hidden=HIDDEN, n_steps=16, batch_size=8, epochs=2), amp=amp)


def run_updates(agent, space: spaces.Space, n: int = 2) -> list[dict[str, float]]:
    if not isinstance(agent, PPOAgent):
        return [agent.update(random_batch(space, n=8, seed=i)).metrics for i in range(n)]
    gen = np.random.default_rng(0)
    rollout = agent.make_rollout(n_envs=4)
    for _ in range(rollout.n_steps):
        obs = random_obs(space, 4, gen)
        obs = obs.numpy() if isinstance(obs, torch.Tensor) else tuple(o.numpy() for o in obs)
        step = agent.policy_step(obs)
        done = gen.random(4) < 0.2
        rollout.add(obs, step.raw_action, step.log_prob, step.value, gen.normal(size=4), done, ~done)
    rollout.compute_returns_and_advantages(agent.value(obs))
    return [agent.update(rollout).metrics]


@pytest.mark.parametrize("flavour", list(FLAVOURS))
@pytest.mark.parametrize("algo", ["sac", "redq", "ppo"])
def test_update_runs_and_changes_parameters(algo, flavour):
    torch.manual_seed(0)
    space = FLAVOURS[flavour]
    agent = make_test_agent(algo, space)
    nets = {"actor": agent.actor, "critic": getattr(agent, "critic", None) or agent.value_net}
    before = {name: [p.detach().clone() for p in net.parameters()] for name, net in nets.items()}
    metrics = run_updates(agent, space)
    for name, net in nets.items():
        changed = [not torch.equal(b, p) for b, p in zip(before[name], net.parameters(), strict=True)]
        assert all(changed), f"{algo}/{flavour}: some {name} parameters did not change"
    for m in metrics:
        assert m and all(np.isfinite(v) for v in m.values())
    if algo == "sac":
        assert {"qf1_loss", "qf2_loss", "actor_loss", "alpha", "entropy", "alpha_loss"} <= set(metrics[-1])
    elif algo == "redq":
        assert "actor_loss" not in metrics[0] and {"qf_loss", "actor_loss", "alpha"} <= set(metrics[1])
    else:
        assert {"policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction"} <= set(metrics[0])
    assert agent.actor.act(space.sample(), test=True).shape == (3,)


@pytest.mark.parametrize("target_entropy, direction", [(50.0, 1.0), (-50.0, -1.0)])
def test_redq_learned_alpha_rises_below_the_target_entropy_and_falls_above(target_entropy, direction):
    """A target entropy far above (below) the policy's: every alpha step pushes log_alpha up (down), and
    Adam's steps on a gradient of steady sign are ``lr`` each."""
    torch.manual_seed(0)
    cfg = REDQConfig(
        hidden=HIDDEN,
        n_critics=6,
        q_updates_per_policy_update=1,
        learn_entropy=True,
        lr_entropy=1e-2,
        target_entropy=target_entropy,
    )
    agent = REDQAgent(LIDAR, ACT, cfg)
    log_alphas = [math.log(0.2)]
    for i in range(20):
        agent.update(random_batch(LIDAR, n=8, seed=i))
        log_alphas.append(agent.log_alpha.item())
    steps = np.diff(log_alphas) * direction
    np.testing.assert_allclose(steps, 1e-2, rtol=1e-3)


def test_fixed_entropy_keeps_alpha():
    agent = SACAgent(LIDAR, ACT, SACConfig(hidden=HIDDEN, learn_entropy=False, alpha=0.05))
    for i in range(3):
        metrics = agent.update(random_batch(LIDAR, n=8, seed=i)).metrics
    assert "alpha_loss" not in metrics and metrics["alpha"] == pytest.approx(0.05)


# --------------------------------------------------------------------------- checkpoint state


def assert_nested_equal(a, b):
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a.cpu(), b.cpu())
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            assert_nested_equal(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_nested_equal(x, y)
    else:
        assert a == b or (a != a and b != b)  # NaN == NaN here


def test_flatten_unflatten_round_trip_of_odd_values():
    state = {"a": {0: torch.ones(2), 1: [1, 2.5, None, "x", True]}, "b": (0.9, 0.999), "c": float("inf")}
    tensors, meta = flatten_state(state)
    assert set(tensors) == {"a/0"}
    import json

    assert_nested_equal(unflatten_state(tensors, json.loads(json.dumps(meta))), state)


@pytest.mark.parametrize("algo", ["sac", "redq", "ppo"])
def test_agent_state_round_trip_gives_identical_outputs_and_optimizers(algo, tmp_path):
    torch.manual_seed(0)
    agent = make_test_agent(algo, LIDAR)
    run_updates(agent, LIDAR, n=3)
    path = tmp_path / "agent.safetensors"
    save_state(path, agent.state_dict())

    torch.manual_seed(123)  # a differently initialised agent
    restored = make_test_agent(algo, LIDAR)
    restored.load_state_dict(load_state(path))
    assert_nested_equal(restored.state_dict(), agent.state_dict())
    assert restored.num_updates == agent.num_updates

    obs = random_batch(LIDAR, n=5, seed=9).obs
    np.testing.assert_array_equal(
        restored.actor.act(tuple(o.numpy() for o in obs), test=True),
        agent.actor.act(tuple(o.numpy() for o in obs), test=True),
    )
    # both continue identically from the same random state
    torch.manual_seed(1)
    m1 = run_updates(agent, LIDAR, n=2)
    torch.manual_seed(1)
    m2 = run_updates(restored, LIDAR, n=2)
    assert m1 == m2


# --------------------------------------------------------------------------- factory, presets, devices


@pytest.mark.parametrize("name, cls", [("sac", SACAgent), ("redq", REDQAgent), ("ppo", PPOAgent)])
def test_make_agent_builds_the_named_algorithm(name, cls):
    cfg = load_config(None, [f"algo.name={name}", f"algo.{name}.hidden=[8]"])
    agent = make_agent(cfg, LIDAR, ACT, device="cpu")
    assert type(agent) is cls and agent.device == torch.device("cpu") and not agent.amp


class CustomAgent(SACAgent):
    """A custom off-policy agent, constructed exactly as the built-in ones are."""

    def __init__(self, obs_space, act_space, cfg, device):
        super().__init__(obs_space, act_space, device=device, cfg=cfg)
        self.cfg = cfg


class NoFlagAgent:
    def __init__(self, obs_space, act_space, cfg, device):
        self.device = device


class HalfAgent:
    """Says it is off-policy but lacks what the trainer calls."""

    on_policy = False

    def __init__(self, obs_space, act_space, cfg, device):
        self.device = device

    def update(self, batch):
        return UpdateResult({})


class NoRolloutAgent(HalfAgent):
    on_policy = True


class NoGammaAgent(HalfAgent):
    """Has the methods but not the discount the replay needs."""

    def __init__(self, obs_space, act_space, cfg, device):
        self.actor = SACAgent(obs_space, act_space, SACConfig(hidden=[8])).actor
        self.device = torch.device(device)

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def test_make_agent_imports_a_custom_class_and_reports_bad_names():
    cfg = load_config(None, [f"algo.name={__name__}:CustomAgent", "algo.sac.hidden=[16]"])
    agent = make_agent(cfg, LIDAR, ACT, device="cpu")
    assert isinstance(agent, CustomAgent) and agent.cfg is cfg
    assert isinstance(agent, OffPolicyAgent) and not isinstance(agent, OnPolicyAgent)
    assert agent.config.hidden == [16]  # built from its section of the whole config, as SACAgent is
    assert agent_class(f"{__name__}:CustomAgent") is CustomAgent

    def error(name: str) -> str:
        with pytest.raises(ConfigError) as info:
            make_agent(load_config(None, [f"algo.name={name}"]), LIDAR, ACT, device="cpu")
        return str(info.value)

    assert error(f"{__name__}:HalfAgent") == (
        f"algo.name '{__name__}:HalfAgent': class HalfAgent has on_policy = False but lacks the OffPolicyAgent "
        "methods state_dict, load_state_dict; see docs/algorithms.md"
    )
    assert "class NoRolloutAgent has on_policy = True but lacks the OnPolicyAgent methods make_rollout, " in error(
        f"{__name__}:NoRolloutAgent"
    )
    assert error(f"{__name__}:NoGammaAgent") == (
        f"algo.name '{__name__}:NoGammaAgent': the NoGammaAgent it built lacks the OffPolicyAgent attribute gamma; "
        "see docs/algorithms.md"
    )
    assert "class NoFlagAgent needs a class attribute on_policy = False" in error(f"{__name__}:NoFlagAgent")
    assert "does not name a class" in error(f"{__name__}:random_batch")
    assert "cannot import" in error("no_such_module:Agent")
    assert "is neither sac, redq, ppo nor an import path" in error("dqn")


def test_built_in_agents_follow_their_protocol_and_take_the_whole_config():
    for name, protocol in (("sac", OffPolicyAgent), ("redq", OffPolicyAgent), ("ppo", OnPolicyAgent)):
        cfg = load_config(
            None,
            [
                f"algo.name={name}",
                f"algo.{name}.hidden=[8]",
                f"algo.{name}.lr_{'actor' if name != 'ppo' else 'value'}=0.002",
            ],
        )
        agent = make_agent(cfg, LIDAR, ACT, device="cpu")
        assert isinstance(agent, protocol) and agent.on_policy is (protocol is OnPolicyAgent)
        assert agent.config is getattr(cfg.algo, name)


def test_presets_fill_unset_fields_and_explicit_values_win():
    cfg = load_config(None, ["algo.preset=tmrl-redq", "algo.redq.lr_actor=0.001"])
    redq = cfg.algo.redq
    assert cfg.algo.name == "redq"
    assert (redq.gamma, redq.alpha, redq.learn_entropy, redq.target_entropy) == (0.995, 0.37, False, -7.0)
    assert (redq.n_critics, redq.m_target, redq.q_updates_per_policy_update) == (10, 2, 20)
    assert redq.lr_actor == 0.001 and redq.lr_critic == 5e-5
    sac = load_config(None, ["algo.preset=tmrl-sac"]).algo.sac
    assert (sac.gamma, sac.tau, sac.lr_actor, sac.lr_critic, sac.alpha) == (0.995, 0.005, 1e-5, 5e-5, 0.01)
    ppo = EvoConfig.model_validate({"algo": {"preset": "ppo-000"}}).algo
    assert ppo.name == "ppo" and (ppo.ppo.n_steps, ppo.ppo.batch_size, ppo.ppo.max_grad_norm) == (2048, 64, 0.5)


def test_amp_is_off_on_cpu_by_default_and_bfloat16_when_asked():
    assert resolve_amp(None, torch.device("cpu")) is False
    assert resolve_amp(None, torch.device("cuda")) is True
    assert resolve_amp(True, torch.device("cpu")) is True
    with pytest.raises(ConfigError, match="algo.amp"):
        resolve_amp(True, torch.device("mps"))
    agent = SACAgent(LIDAR, ACT, SACConfig(hidden=HIDDEN), amp=True)
    assert agent.amp and agent.amp_dtype == torch.bfloat16
    assert not agent.critic_scaler.is_enabled()  # bfloat16 needs no loss scaling
    with agent.autocast():  # the critics' output layer stays float32: Q-values keep float32 precision
        q = agent.critic(tuple(torch.rand(8, *p.shape) for p in LIDAR.spaces), torch.zeros(8, 3))
    assert q.dtype == torch.float32


@pytest.mark.parametrize("algo", ["sac", "redq", "ppo"])
def test_bfloat16_on_the_cpu_computes_the_same_losses(algo):
    """``algo.amp: true`` on the CPU: bfloat16 products give the float32 updates to bfloat16 precision."""
    runs = []
    for amp in (False, True):
        torch.manual_seed(0)
        agent = make_test_agent(algo, FLAVOURS["lidar"], amp=amp)
        assert agent.amp is amp
        torch.manual_seed(1)
        runs.append(run_updates(agent, FLAVOURS["lidar"], n=2))
    for fp32, bf16 in zip(*runs, strict=True):
        assert fp32.keys() == bf16.keys()
        for key in fp32:
            assert bf16[key] == pytest.approx(fp32[key], rel=5e-2, abs=1e-2), key


@pytest.mark.parametrize("algo", ["sac", "redq", "ppo"])
def test_mixed_precision_path_computes_the_same_losses(algo):
    """The CUDA AMP code path (float16 autocast + GradScaler), exercised on the CPU: the same updates as
    in float32 to float16 precision, with the gradient scaler active."""
    runs = []
    for amp in (False, True):
        torch.manual_seed(0)
        agent = make_test_agent(algo, FLAVOURS["full"])
        if amp:
            agent.amp, agent.amp_dtype = True, torch.float16  # CUDA's float16 path; the maths is the same on the CPU
            for name in ("actor_scaler", "critic_scaler", "scaler"):
                if hasattr(agent, name):
                    setattr(agent, name, torch.amp.GradScaler("cpu", enabled=True))
        torch.manual_seed(1)
        runs.append(run_updates(agent, FLAVOURS["full"], n=2))
    scaler = getattr(agent, "critic_scaler", None) or agent.scaler
    assert scaler.is_enabled() and scaler.get_scale() > 1.0
    for fp32, fp16 in zip(*runs, strict=True):
        assert fp32.keys() == fp16.keys()
        for key in fp32:
            assert fp16[key] == pytest.approx(fp32[key], rel=1e-2, abs=1e-3), key


def test_loading_a_state_saved_with_other_settings_names_what_is_missing():
    fixed = SACAgent(LIDAR, ACT, SACConfig(hidden=HIDDEN, learn_entropy=False))
    learned = SACAgent(LIDAR, ACT, SACConfig(hidden=HIDDEN, learn_entropy=True))
    with pytest.raises(CheckpointError, match="alpha_optim"):
        learned.load_state_dict(fixed.state_dict())
