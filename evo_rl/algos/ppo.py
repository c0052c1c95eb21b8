"""Proximal Policy Optimization with a clipped surrogate.

Schulman et al., "Proximal Policy Optimization Algorithms" (2017,
arXiv:1707.06347), with advantages from Generalized Advantage Estimation
(Schulman et al., "High-Dimensional Continuous Control Using Generalized
Advantage Estimation", 2016, arXiv:1506.02438). Equation numbers refer to those
papers.

Collecting a rollout with a vector environment of ``n_envs`` cars::

    rollout = agent.make_rollout(n_envs)
    for _ in range(rollout.n_steps):
        step = agent.policy_step(obs)                    # actions for all cars
        next_obs, rew, term, trunc, info = env.step(step.action)
        final_value = agent.final_values(info, trunc)    # V(final obs) where truncated
        rollout.add(obs, step.raw_action, step.log_prob, step.value, rew, term, trunc, final_value)
        obs = next_obs
    rollout.compute_returns_and_advantages(agent.value(obs))
    metrics = agent.update(rollout).metrics
    rollout.reset()
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch
from gymnasium import spaces

from evo_rl.algos.base import TrainingAgent, UpdateResult, metrics_to_floats
from evo_rl.config import EvoConfig, PPOConfig
from evo_rl.errors import ConfigError, EvoError
from evo_rl.nets.actors import GaussianActor
from evo_rl.nets.critics import ValueNetwork
from evo_rl.nets.encoder import Obs, as_batch, observation_parts
from evo_rl.nets.layers import adam


def _as_tensor(x: Any, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.to(device, dtype)
    return torch.as_tensor(np.asarray(x), device=device, dtype=dtype)


class RolloutBuffer:
    """Preallocated on-policy storage: every field is a tensor ``[n_steps, n_envs, ...]``.

    ``add`` writes one step of all cars; ``compute_returns_and_advantages`` runs
    GAE backwards over the rollout. ``dones[t]`` marks that the episode of a car
    ended at step ``t`` (terminated or truncated), so ``obs[t + 1]`` starts a new
    one; a truncated episode is bootstrapped by adding ``gamma * V(final obs)``
    to its last reward, a terminated one is not.
    """

    def __init__(
        self,
        n_steps: int,
        n_envs: int,
        obs_space: spaces.Space,
        act_dim: int,
        gamma: float,
        gae_lambda: float,
        device: str | torch.device = "cpu",
    ) -> None:
        self.n_steps, self.n_envs = n_steps, n_envs
        self.gamma, self.gae_lambda = gamma, gae_lambda
        self.device = torch.device(device)
        self.flat = isinstance(obs_space, spaces.Box)
        shape = (n_steps, n_envs)
        self.obs_parts = [
            torch.zeros(shape + p.shape, dtype=torch.from_numpy(np.zeros(0, p.dtype)).dtype, device=self.device)
            for p in observation_parts(obs_space)
        ]  # [T, E, *part shape] each
        self.actions = torch.zeros(shape + (act_dim,), device=self.device)  # [T, E, A] unclipped samples
        self.log_probs = torch.zeros(shape, device=self.device)  # [T, E]
        self.values = torch.zeros(shape, device=self.device)  # [T, E]
        self.rewards = torch.zeros(shape, device=self.device)  # [T, E] (truncation bootstrap included)
        self.dones = torch.zeros(shape, device=self.device)  # [T, E]
        self.advantages = torch.zeros(shape, device=self.device)  # [T, E]
        self.returns = torch.zeros(shape, device=self.device)  # [T, E]
        self.pos = 0
        self.ready = False

    @property
    def full(self) -> bool:
        return self.pos == self.n_steps

    def reset(self) -> None:
        """Start a new rollout (the storage is reused)."""
        self.pos = 0
        self.ready = False

    def add(
        self,
        obs: Any,
        action: Any,
        log_prob: Any,
        value: Any,
        reward: Any,
        terminated: Any,
        truncated: Any,
        final_value: Any = None,
    ) -> None:
        """Store one step of all cars (NumPy arrays or tensors with a leading ``[n_envs]`` axis).

        ``final_value`` ``[n_envs]``: ``V`` of the final observation of each car
        whose episode was truncated at this step (other entries are ignored).
        """
        if self.full:
            raise EvoError(f"the rollout holds {self.n_steps} steps already; call reset() after update()")
        t = self.pos
        for store, part in zip(self.obs_parts, (obs,) if self.flat else obs, strict=True):
            store[t] = _as_tensor(part, self.device, store.dtype)
        self.actions[t] = _as_tensor(action, self.device, torch.float32)
        self.log_probs[t] = _as_tensor(log_prob, self.device, torch.float32)
        self.values[t] = _as_tensor(value, self.device, torch.float32)
        term = _as_tensor(terminated, self.device, torch.bool)
        trunc = _as_tensor(truncated, self.device, torch.bool) & ~term
        reward = _as_tensor(reward, self.device, torch.float32)
        if final_value is not None:
            reward = reward + self.gamma * trunc * _as_tensor(final_value, self.device, torch.float32)
        self.rewards[t] = reward
        self.dones[t] = (term | trunc).float()
        self.pos += 1

    def compute_returns_and_advantages(self, last_value: Any) -> None:
        """GAE(gamma, lambda) advantages and lambda-returns (GAE paper, eq. 16).

        ``delta_t = r_t + gamma * V(s_{t+1}) * (1 - done_t) - V(s_t)``,
        ``A_t = delta_t + gamma * lambda * (1 - done_t) * A_{t+1}``, ``R_t = A_t + V(s_t)``;
        ``last_value`` ``[n_envs]`` is ``V`` of the observation after the last step.
        """
        if not self.full:
            raise EvoError(f"the rollout holds {self.pos} of {self.n_steps} steps; fill it before computing returns")
        next_value = _as_tensor(last_value, self.device, torch.float32).reshape(self.n_envs)  # [E]
        advantage = torch.zeros(self.n_envs, device=self.device)  # [E]
        for t in reversed(range(self.n_steps)):
            not_done = 1.0 - self.dones[t]
            delta = self.rewards[t] + self.gamma * next_value * not_done - self.values[t]
            advantage = delta + self.gamma * self.gae_lambda * not_done * advantage
            self.advantages[t] = advantage
            next_value = self.values[t]
        self.returns.copy_(self.advantages + self.values)
        self.ready = True

    def flat_obs(self) -> Obs:
        """The observations with time and cars merged: ``[n_steps * n_envs, ...]``."""
        parts = tuple(p.reshape(-1, *p.shape[2:]) for p in self.obs_parts)
        return parts[0] if self.flat else parts


def _select_final_obs(final: Any, idx: np.ndarray, flat: bool) -> Any:
    """Rows ``idx`` of ``info["final_obs"]``: batched (``[N, D]``, or a tuple of ``[N, ...]``
    parts) or Gymnasium's object array of per-car observations."""
    if flat:
        final = np.asarray(final)
        return np.stack([np.asarray(final[i]) for i in idx]) if final.dtype == object else final[idx]
    if isinstance(final, tuple):
        return tuple(np.asarray(part)[idx] for part in final)
    return tuple(np.stack(parts) for parts in zip(*(final[i] for i in idx), strict=True))


class PolicyStep(NamedTuple):
    """What ``PPOAgent.policy_step`` returns for a batch of ``N`` observations."""

    action: np.ndarray  # [N, A] float32, clipped to the action bounds: send this to the env
    raw_action: torch.Tensor  # [N, A] the unclipped sample: store this in the rollout
    log_prob: torch.Tensor  # [N]
    value: torch.Tensor  # [N]


class PPOAgent(TrainingAgent):
    """PPO training agent: ``update(rollout)`` runs ``epochs`` passes of minibatch steps."""

    on_policy = True

    @staticmethod
    def actor_of(obs_space: spaces.Space, act_space: spaces.Space, config: PPOConfig) -> GaussianActor:
        return GaussianActor(obs_space, act_space, config.hidden, config.activation, config.log_std_init)

    @classmethod
    def build_actor(cls, obs_space: spaces.Space, act_space: spaces.Space, cfg: EvoConfig) -> torch.nn.Module:
        """The actor of ``make_agent(cfg, ...)``, without the value network or the optimiser."""
        return cls.actor_of(obs_space, act_space, cfg.algo.ppo)

    def __init__(
        self,
        obs_space: spaces.Space,
        act_space: spaces.Space,
        config: PPOConfig | None = None,
        device: str | torch.device = "cpu",
        amp: bool | None = None,
        *,
        cfg: EvoConfig | None = None,
    ) -> None:
        if cfg is not None:  # the whole configuration, as make_agent passes it to every agent
            config, amp = cfg.algo.ppo, cfg.algo.amp
        super().__init__(obs_space, act_space, device, amp)
        self.config = cfg = config or PPOConfig()
        self.actor = self.actor_of(obs_space, act_space, cfg).to(self.device)
        self.value_net = ValueNetwork(obs_space, cfg.hidden, cfg.activation).to(self.device)
        self.optim = adam(
            [
                {"params": self.actor.parameters(), "lr": cfg.lr},
                {"params": self.value_net.parameters(), "lr": cfg.lr_value or cfg.lr},
            ],
            cfg.lr,
            eps=1e-5,
        )
        self.scaler = self.grad_scaler()

    def make_rollout(self, n_envs: int) -> RolloutBuffer:
        """Storage for ``n_steps // n_envs`` steps of ``n_envs`` cars (``n_steps`` counts all cars)."""
        if self.config.n_steps < n_envs:
            raise ConfigError(
                f"algo.ppo.n_steps ({self.config.n_steps}) counts steps over all cars and must be at least "
                f"env.n_envs ({n_envs}); raise n_steps or lower n_envs"
            )
        return RolloutBuffer(
            self.config.n_steps // n_envs,
            n_envs,
            self.obs_space,
            self.actor.act_dim,
            self.config.gamma,
            self.config.gae_lambda,
            self.device,
        )

    @torch.no_grad()
    def policy_step(self, obs: Any) -> PolicyStep:
        """Sample actions for a batch of NumPy observations (one row per car)."""
        batch, _ = as_batch(obs, self.actor.encoder.part_ndims, self.actor.encoder.flat, self.device)
        with self.autocast():
            raw_action, log_prob = self.actor(batch)
            value = self.value_net(batch).float()
        clipped = torch.maximum(torch.minimum(raw_action, self.actor.action_high), self.actor.action_low)
        return PolicyStep(clipped.cpu().numpy().astype(np.float32), raw_action, log_prob, value)

    @torch.no_grad()
    def value(self, obs: Any) -> torch.Tensor:
        """``V(s)`` ``[N]`` of a batch of NumPy (or tensor) observations."""
        batch, _ = as_batch(obs, self.actor.encoder.part_ndims, self.actor.encoder.flat, self.device)
        with self.autocast():
            return self.value_net(batch).float()

    def final_values(self, info: dict, truncated: Any) -> torch.Tensor:
        """``V(final obs)`` ``[N]`` for the cars truncated this step, zeros elsewhere.

        Reads the vector environment's ``info["final_obs"]`` / ``info["_final_obs"]``.
        """
        trunc = np.asarray(truncated, dtype=bool)  # [N]
        values = torch.zeros(trunc.shape[0], device=self.device)  # [N]
        if not trunc.any():
            return values
        idx = np.flatnonzero(np.asarray(info["_final_obs"], dtype=bool) & trunc)
        obs = _select_final_obs(info["final_obs"], idx, self.actor.encoder.flat)
        values[torch.as_tensor(idx, device=self.device)] = self.value(obs)
        return values

    def update(self, rollout: RolloutBuffer) -> UpdateResult:
        cfg = self.config
        if not rollout.ready:
            raise EvoError("call rollout.compute_returns_and_advantages(last_value) before agent.update(rollout)")
        b_obs = rollout.flat_obs()
        b_actions = rollout.actions.reshape(-1, rollout.actions.shape[-1])  # [T*E, A]
        b_log_probs = rollout.log_probs.reshape(-1)  # [T*E]
        b_advantages = rollout.advantages.reshape(-1)
        b_returns = rollout.returns.reshape(-1)
        b_values = rollout.values.reshape(-1)
        n = b_log_probs.shape[0]

        sums = torch.zeros(6, device=self.device)  # running sums of the metrics below
        steps = 0
        for _ in range(cfg.epochs):
            perm = torch.randperm(n, device=self.device)
            for start in range(0, n, cfg.batch_size):
                mb = perm[start : start + cfg.batch_size]
                mb_obs = b_obs[mb] if isinstance(b_obs, torch.Tensor) else tuple(p[mb] for p in b_obs)
                with self.autocast():
                    new_log_prob, entropy = self.actor.evaluate(mb_obs, b_actions[mb])
                    new_value = self.value_net(mb_obs).float()
                log_ratio = new_log_prob - b_log_probs[mb]
                ratio = log_ratio.exp()
                advantages = b_advantages[mb]
                if cfg.normalize_advantage:
                    advantages = (advantages - advantages.mean()) / (advantages.std(correction=0) + 1e-8)

                # clipped surrogate objective L^CLIP (PPO paper, eq. 7), as a loss to minimise
                pg_loss1 = -advantages * ratio
                pg_loss2 = -advantages * ratio.clamp(1.0 - cfg.clip, 1.0 + cfg.clip)
                pg_loss = torch.max(pg_loss1, pg_loss2).mean()

                # value loss (squared error, optionally clipped around the rollout's values)
                if cfg.clip_value is None:
                    v_loss = 0.5 * (new_value - b_returns[mb]).pow(2).mean()
                else:
                    v_clipped = b_values[mb] + (new_value - b_values[mb]).clamp(-cfg.clip_value, cfg.clip_value)
                    v_loss = (
                        0.5 * torch.max((new_value - b_returns[mb]).pow(2), (v_clipped - b_returns[mb]).pow(2)).mean()
                    )

                entropy_loss = entropy.mean()
                loss = pg_loss - cfg.entropy_coef * entropy_loss + cfg.value_coef * v_loss  # eq. 9

                self.optim.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                self.scaler.unscale_(self.optim)
                torch.nn.utils.clip_grad_norm_(
                    [p for group in self.optim.param_groups for p in group["params"]], cfg.max_grad_norm
                )
                self.scaler.step(self.optim)
                self.scaler.update()

                with torch.no_grad():
                    approx_kl = ((ratio - 1.0) - log_ratio).mean()  # unbiased KL(old || new) estimator
                    clip_fraction = ((ratio - 1.0).abs() > cfg.clip).float().mean()
                    sums += torch.stack([pg_loss, v_loss, entropy_loss, approx_kl, clip_fraction, loss]).detach()
                steps += 1
                self.num_updates += 1

        names = ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction", "loss")
        metrics = dict(zip(names, sums / steps, strict=True))
        explained = 1.0 - (b_returns - b_values).var() / b_returns.var().clamp_min(1e-8)
        metrics.update(explained_variance=explained, std=self.actor.log_std.detach().exp().mean())
        return UpdateResult(metrics_to_floats(metrics))

    def checkpoint_items(self) -> dict[str, Any]:
        return {"actor": self.actor, "value_net": self.value_net, "optim": self.optim, "scaler": self.scaler}
