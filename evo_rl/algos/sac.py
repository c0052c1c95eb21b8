"""Soft Actor-Critic.

Haarnoja et al., "Soft Actor-Critic Algorithms and Applications" (2018,
arXiv:1812.05905): twin soft Q-functions with Polyak-averaged targets, a
tanh-squashed Gaussian policy, and an entropy coefficient that is fixed or
learned towards a target entropy. Equation numbers below refer to that paper.

The two critics are one :class:`~evo_rl.nets.EnsembleQNetwork` with ``n=2``,
evaluated in one batched call.
"""

from __future__ import annotations

import torch
from gymnasium import spaces

from evo_rl.algos.base import SoftActorCriticBase, UpdateResult, metrics_to_floats, polyak_update
from evo_rl.config import EvoConfig, SACConfig
from evo_rl.memory.replay import Batch
from evo_rl.nets.encoder import Obs


class SACAgent(SoftActorCriticBase):
    """SAC training agent: ``update(batch)`` does one critic, policy and entropy step."""

    def __init__(
        self,
        obs_space: spaces.Space,
        act_space: spaces.Space,
        config: SACConfig | None = None,
        device: str | torch.device = "cpu",
        amp: bool | None = None,
        *,
        cfg: EvoConfig | None = None,
    ) -> None:
        if cfg is not None:  # the whole configuration, as make_agent passes it to every agent
            config, amp = cfg.algo.sac, cfg.algo.amp
        super().__init__(obs_space, act_space, config or SACConfig(), 2, device, amp)

    @classmethod
    def build_actor(cls, obs_space: spaces.Space, act_space: spaces.Space, cfg: EvoConfig) -> torch.nn.Module:
        """The actor of ``make_agent(cfg, ...)``, without critics or optimisers."""
        return cls.actor_of(obs_space, act_space, cfg.algo.sac)

    def next_q_value(
        self, next_obs: Obs, rew: torch.Tensor, done: torch.Tensor, discount: torch.Tensor
    ) -> torch.Tensor:
        """Soft Bellman target (eq. 3 with the clipped double-Q minimum), ``[B]``:
        ``r + discount * (1 - done) * (min_i Q_targ_i(s', a') - alpha * log pi(a'|s'))``, ``a' ~ pi(.|s')``.
        """
        alpha = self.log_alpha.detach().exp()
        with torch.no_grad(), self.autocast():
            next_action, next_log_pi = self.actor(next_obs)
            qf1_next_target, qf2_next_target = self.critic_target(next_obs, next_action).float()  # [B] each
            min_qf_next_target = torch.min(qf1_next_target, qf2_next_target) - alpha * next_log_pi
            return rew + discount * (1.0 - done) * min_qf_next_target

    def actor_loss(self, obs: Obs) -> tuple[torch.Tensor, torch.Tensor]:
        """Policy loss ``J_pi`` (eq. 7, with the reparameterised sample), and ``log pi`` ``[B]``:
        ``mean(alpha * log pi(a|s) - min_i Q_i(s, a))``, ``a = tanh(mean(s) + std(s) * eps)``, ``eps ~ N(0, I)``.
        Gradients reach the actor only (through ``a``), not the critics."""
        alpha = self.log_alpha.detach().exp()
        with self.autocast():
            pi, log_pi = self.actor(obs)
            qf1_pi, qf2_pi = self.critic(obs, pi, detach_params=True).float()  # [B] each
        return (alpha * log_pi - torch.min(qf1_pi, qf2_pi)).mean(), log_pi

    def update(self, batch: Batch) -> UpdateResult:
        obs, act, rew, next_obs, done, discount, weights = self.unpack(batch)

        # --- soft Q-function update: J_Q (eq. 2) for both critics
        next_q_value = self.next_q_value(next_obs, rew, done, discount)  # [B]
        with self.autocast():
            qf1, qf2 = self.critic(obs, act).float()  # [B] each
        qf1_loss = (weights * (qf1 - next_q_value).pow(2)).mean()
        qf2_loss = (weights * (qf2 - next_q_value).pow(2)).mean()
        qf_loss = qf1_loss + qf2_loss
        self.critic_optim.zero_grad(set_to_none=True)
        self.critic_scaler.scale(qf_loss).backward()
        self.critic_scaler.step(self.critic_optim)
        self.critic_scaler.update()
        td_error = ((qf1 + qf2) / 2 - next_q_value).detach().abs()  # [B], for replay priorities

        # --- policy update: J_pi (eq. 7) with the reparameterised sample
        alpha = self.log_alpha.detach().exp()
        actor_loss, log_pi = self.actor_loss(obs)
        self.actor_optim.zero_grad(set_to_none=True)
        self.actor_scaler.scale(actor_loss).backward()
        self.actor_scaler.step(self.actor_optim)
        self.actor_scaler.update()
        self.average_policy()

        # --- entropy coefficient update: J(alpha) (eq. 18), when learned
        alpha_loss = self.update_alpha(log_pi)

        # --- target networks: Polyak averaging
        polyak_update(self.critic_target, self.critic, self.config.tau)
        self.num_updates += 1

        metrics = {
            "qf1_loss": qf1_loss.detach(),
            "qf2_loss": qf2_loss.detach(),
            "qf1_mean": qf1.detach().mean(),
            "qf2_mean": qf2.detach().mean(),
            "next_q_value": next_q_value.mean(),
            "actor_loss": actor_loss.detach(),
            "entropy": -log_pi.detach().mean(),
            "alpha": alpha,
        }
        if alpha_loss is not None:
            metrics["alpha_loss"] = alpha_loss
        metrics.update(self.extra_metrics())
        return UpdateResult(metrics_to_floats(metrics), td_error)
