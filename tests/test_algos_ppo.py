"""PPO: GAE against a plain Python loop, truncation bootstrap, rollout storage, final observations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from gymnasium import spaces

from evo_rl.algos import PPOAgent, RolloutBuffer
from evo_rl.config import PPOConfig
from evo_rl.errors import ConfigError, EvoError

ACT = spaces.Box(-1.0, 1.0, (3,), np.float32)
LIDAR = spaces.Tuple(
    (
        spaces.Box(0.0, 1000.0, (1,), np.float32),
        spaces.Box(0.0, 100.0, (4, 19), np.float32),
        spaces.Box(-1.0, 1.0, (3,), np.float32),
    )
)


def gae_reference(rewards, values, terminated, truncated, final_values, last_value, gamma, lam):
    """GAE written out per car with Python floats, truncation handled explicitly."""
    n_steps, n_envs = len(rewards), len(rewards[0])
    advantages = [[0.0] * n_envs for _ in range(n_steps)]
    for e in range(n_envs):
        gae = 0.0
        for t in reversed(range(n_steps)):
            if terminated[t][e]:
                delta = rewards[t][e] - values[t][e]
                gae = delta
            elif truncated[t][e]:
                # the episode was cut: bootstrap from the value of its final observation
                delta = rewards[t][e] + gamma * final_values[t][e] - values[t][e]
                gae = delta
            else:
                next_value = last_value[e] if t == n_steps - 1 else values[t + 1][e]
                delta = rewards[t][e] + gamma * next_value - values[t][e]
                gae = delta + gamma * lam * gae
            advantages[t][e] = gae
    returns = [[advantages[t][e] + values[t][e] for e in range(n_envs)] for t in range(n_steps)]
    return np.array(advantages), np.array(returns)


def test_gae_matches_python_loop_with_dones_and_truncation():
    gen = np.random.default_rng(0)
    n_steps, n_envs, gamma, lam = 9, 3, 0.97, 0.9
    space = spaces.Box(-1.0, 1.0, (2,), np.float32)
    buf = RolloutBuffer(n_steps, n_envs, space, 3, gamma, lam)
    rewards = gen.normal(size=(n_steps, n_envs))
    values = gen.normal(size=(n_steps, n_envs))
    final_values = gen.normal(size=(n_steps, n_envs))
    terminated = gen.random((n_steps, n_envs)) < 0.15
    truncated = gen.random((n_steps, n_envs)) < 0.15
    truncated[4, 1] = terminated[4, 1] = True  # both at once counts as terminated
    last_value = gen.normal(size=n_envs)
    for t in range(n_steps):
        buf.add(
            np.zeros((n_envs, 2), np.float32),
            np.zeros((n_envs, 3)),
            np.zeros(n_envs),
            values[t],
            rewards[t],
            terminated[t],
            truncated[t],
            final_values[t],
        )
    assert buf.full
    buf.compute_returns_and_advantages(torch.as_tensor(last_value))
    adv, ret = gae_reference(
        rewards.tolist(),
        values.tolist(),
        terminated.tolist(),
        (truncated & ~terminated).tolist(),
        final_values.tolist(),
        last_value.tolist(),
        gamma,
        lam,
    )
    np.testing.assert_allclose(buf.advantages.numpy(), adv, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(buf.returns.numpy(), ret, rtol=1e-5, atol=1e-5)


def test_rollout_guards():
    buf = RolloutBuffer(1, 2, spaces.Box(-1.0, 1.0, (2,), np.float32), 3, 0.99, 0.95)
    with pytest.raises(EvoError, match="fill it"):
        buf.compute_returns_and_advantages(torch.zeros(2))
    row = (np.zeros((2, 2)), np.zeros((2, 3)), np.zeros(2), np.zeros(2), np.zeros(2), [False, False], [False, False])
    buf.add(*row)
    with pytest.raises(EvoError, match="reset"):
        buf.add(*row)
    buf.reset()
    buf.add(*row)
    agent = PPOAgent(LIDAR, ACT, PPOConfig(hidden=[8], n_steps=8))
    with pytest.raises(EvoError, match="compute_returns_and_advantages"):
        agent.update(agent.make_rollout(2))
    with pytest.raises(ConfigError, match="n_steps"):
        agent.make_rollout(16)


def test_rollout_stores_images_as_uint8():
    space = spaces.Tuple((spaces.Box(0, 255, (2, 40, 40), np.uint8), spaces.Box(-1.0, 1.0, (3,), np.float32)))
    buf = RolloutBuffer(4, 2, space, 3, 0.99, 0.95)
    assert buf.obs_parts[0].dtype == torch.uint8 and buf.obs_parts[0].shape == (4, 2, 2, 40, 40)
    assert buf.flat_obs()[1].shape == (8, 3)


def test_policy_step_clips_actions_and_final_values_read_both_layouts():
    torch.manual_seed(0)
    agent = PPOAgent(LIDAR, ACT, PPOConfig(hidden=[8], log_std_init=1.0))
    gen = np.random.default_rng(0)
    obs = tuple(gen.uniform(0, 1, (6, *p.shape)).astype(np.float32) for p in LIDAR.spaces)
    step = agent.policy_step(obs)
    assert step.action.shape == (6, 3) and step.action.dtype == np.float32
    assert np.all(np.abs(step.action) <= 1.0) and torch.any(step.raw_action.abs() > 1.0)
    np.testing.assert_allclose(step.action, step.raw_action.clamp(-1, 1).numpy())
    torch.testing.assert_close(step.value, agent.value(obs))

    truncated = np.array([True, False, True, False, False, True])
    has_final = np.array([True, True, True, False, False, True])
    expected = torch.where(torch.as_tensor(truncated), agent.value(obs), torch.zeros(6))
    batched = {"final_obs": obs, "_final_obs": has_final}
    per_car = np.empty(6, dtype=object)
    per_car[:] = [tuple(part[i] for part in obs) for i in range(6)]
    gymnasium_style = {"final_obs": per_car, "_final_obs": has_final}
    for info in (batched, gymnasium_style):
        torch.testing.assert_close(agent.final_values(info, truncated), expected)
    torch.testing.assert_close(agent.final_values({}, np.zeros(6, bool)), torch.zeros(6))


def test_ppo_value_clipping_and_metrics():
    torch.manual_seed(0)
    agent = PPOAgent(LIDAR, ACT, PPOConfig(hidden=[8], n_steps=32, batch_size=16, epochs=2, clip_value=0.2))
    rollout = agent.make_rollout(4)
    gen = np.random.default_rng(1)
    for _ in range(rollout.n_steps):
        obs = tuple(gen.uniform(0, 1, (4, *p.shape)).astype(np.float32) for p in LIDAR.spaces)
        step = agent.policy_step(obs)
        rollout.add(obs, step.raw_action, step.log_prob, step.value, gen.normal(size=4), [False] * 4, [False] * 4)
    rollout.compute_returns_and_advantages(agent.value(obs))
    metrics = agent.update(rollout).metrics
    assert agent.num_updates == 2 * 2  # epochs x minibatches
    assert metrics["approx_kl"] >= 0 and 0 <= metrics["clip_fraction"] <= 1
    assert all(np.isfinite(v) for v in metrics.values())


def test_ppo_losses_on_one_minibatch_equal_a_hand_computation():
    """One epoch, one minibatch: every metric is computed before the optimiser step, from the rollout and the
    current networks (perturbed after collection so that ratios differ from 1 and some are clipped)."""
    torch.manual_seed(0)
    cfg = PPOConfig(
        hidden=[8], n_steps=16, batch_size=16, epochs=1, clip=0.2, clip_value=0.1, entropy_coef=0.01, value_coef=0.5
    )
    agent = PPOAgent(LIDAR, ACT, cfg)
    rollout = agent.make_rollout(4)
    gen = np.random.default_rng(2)
    for _ in range(rollout.n_steps):
        obs = tuple(gen.uniform(0, 1, (4, *p.shape)).astype(np.float32) for p in LIDAR.spaces)
        step = agent.policy_step(obs)
        done = gen.random(4) < 0.2
        rollout.add(obs, step.raw_action, step.log_prob, step.value, gen.normal(size=4), done, [False] * 4)
    rollout.compute_returns_and_advantages(agent.value(obs))
    with torch.no_grad():  # the policy and value function moved since the rollout was collected
        agent.actor.net[-1].bias.add_(torch.tensor([0.15, -0.1, 0.05]))
        agent.actor.log_std.add_(0.02)
        agent.value_net.net[-1].bias.add_(0.15)

    obs = rollout.flat_obs()
    actions, old_log_prob = rollout.actions.reshape(-1, 3), rollout.log_probs.reshape(-1)
    returns, old_values = rollout.returns.reshape(-1), rollout.values.reshape(-1)
    adv = rollout.advantages.reshape(-1)
    with torch.no_grad():
        mean = agent.actor.net(agent.actor.encoder(obs))
        log_std = agent.actor.log_std
        new_log_prob = -((actions - mean) ** 2) / (2 * torch.exp(2 * log_std)) - log_std - 0.5 * math.log(2 * math.pi)
        new_log_prob = new_log_prob.sum(-1)
        ratio = torch.exp(new_log_prob - old_log_prob)
        adv = (adv - adv.mean()) / (adv.std(correction=0) + 1e-8)
        # L^CLIP = E[min(r A, clip(r, 1 - eps, 1 + eps) A)] (eq. 7), as a loss: its negative
        policy_loss = -torch.minimum(ratio * adv, ratio.clamp(0.8, 1.2) * adv).mean()
        value = agent.value_net(obs)
        value_clipped = old_values + (value - old_values).clamp(-0.1, 0.1)
        value_loss = 0.5 * torch.maximum((value - returns) ** 2, (value_clipped - returns) ** 2).mean()
        entropy = (0.5 + 0.5 * math.log(2 * math.pi) + log_std).sum()
        loss = policy_loss - 0.01 * entropy + 0.5 * value_loss  # eq. 9
        clip_fraction = ((ratio - 1).abs() > 0.2).float().mean()
        approx_kl = ((ratio - 1) - torch.log(ratio)).mean()
    assert 0 < clip_fraction < 1  # both branches of the clipped objective are exercised
    assert not torch.allclose(value, value_clipped)  # and value clipping

    m = agent.update(rollout).metrics
    assert agent.num_updates == 1
    expected = {
        "policy_loss": policy_loss,
        "value_loss": value_loss,
        "entropy": entropy,
        "loss": loss,
        "clip_fraction": clip_fraction,
        "approx_kl": approx_kl,
    }
    for key, value in expected.items():
        assert m[key] == pytest.approx(value.item(), rel=1e-4, abs=1e-6), key
