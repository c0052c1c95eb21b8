"""Randomized Ensembled Double Q-learning with SAC (REDQ-SAC).

Chen et al., "Randomized Ensembled Double Q-Learning: Learning Fast Without a
Model" (ICLR 2021, arXiv:2101.05982), Algorithm 1:

- an ensemble of ``N`` critics, each trained towards the same target;
- the target takes the minimum over a random subset of ``M`` target critics
  (eq. 1): ``y = r + gamma * (min_{i in M} Q_targ_i(s', a') - alpha * log pi(a'|s'))``;
- ``G`` critic updates per policy update (the update-to-data ratio);
- the policy maximises the mean of all ``N`` critics (eq. 2).

The ensemble is one :class:`~evo_rl.nets.EnsembleQNetwork`: the ``N`` critics are
stacked parameters evaluated in one batched call, with one optimiser. One
``update(batch)`` is one critic update; every ``G``-th call also updates the
policy (and the entropy coefficient when it is learned), as TMRL's REDQ-SAC.
"""

from __future__ import annotations

import torch
from gymnasium import spaces

from evo_rl.algos.base import SoftActorCriticBase, UpdateResult, metrics_to_floats, polyak_update
from evo_rl.config import EvoConfig, REDQConfig
from evo_rl.memory.replay import Batch
from evo_rl.nets.encoder import Obs


class REDQAgent(SoftActorCriticBase):
    """REDQ-SAC training agent (see the module docstring)."""

    config: REDQConfig

    def __init__(
        self,
        obs_space: spaces.Space,
        act_space: spaces.Space,
        config: REDQConfig | None = None,
        device: str | torch.device = "cpu",
        amp: bool | None = None,
        *,
        cfg: EvoConfig | None = None,
    ) -> None:
        if cfg is not None:  # the whole configuration, as make_agent passes it to every agent
            config, amp = cfg.algo.redq, cfg.algo.amp
        config = config or REDQConfig()
        super().__init__(obs_space, act_space, config, config.n_critics, device, amp)

    @classmethod
    def build_actor(cls, obs_space: spaces.Space, act_space: spaces.Space, cfg: EvoConfig) -> torch.nn.Module:
        """The actor of ``make_agent(cfg, ...)``, without critics or optimisers."""
        return cls.actor_of(obs_space, act_space, cfg.algo.redq)

    def sample_members(self) -> torch.Tensor:
        """``M`` distinct critic indices drawn uniformly from the ``N``, ``[M]``."""
        return torch.randperm(self.config.n_critics, device=self.device)[: self.config.m_target]

    def next_q_value(
        self, next_obs: Obs, rew: torch.Tensor, done: torch.Tensor, discount: torch.Tensor, members: torch.Tensor
    ) -> torch.Tensor:
        """REDQ target (eq. 1) over the target critics ``members``, ``[B]``."""
        alpha = self.log_alpha.detach().exp()
        with torch.no_grad(), self.autocast():
            next_action, next_log_pi = self.actor(next_obs)
            qf_next_target = self.critic_target(next_obs, next_action, members=members).float()  # [M, B]
            min_qf_next_target = qf_next_target.min(dim=0).values - alpha * next_log_pi  # [B]
            return rew + discount * (1.0 - done) * min_qf_next_target

    def actor_loss(self, obs: Obs) -> tuple[torch.Tensor, torch.Tensor]:
        """Policy loss (eq. 2) against the mean of all ``N`` critics, and ``log pi`` ``[B]``:
        ``mean(alpha * log pi(a|s) - mean_i Q_i(s, a))``, ``a ~ pi(.|s)`` reparameterised."""
        alpha = self.log_alpha.detach().exp()
        with self.autocast():
            pi, log_pi = self.actor(obs)
            qf_pi = self.critic(obs, pi, detach_params=True).float().mean(dim=0)  # [B]
        return (alpha * log_pi - qf_pi).mean(), log_pi

    def update(self, batch: Batch) -> UpdateResult:
        cfg = self.config
        obs, act, rew, next_obs, done, discount, weights = self.unpack(batch)

        # --- critic update: every Q_i regresses on the same target y
        next_q_value = self.next_q_value(next_obs, rew, done, discount, self.sample_members())  # [B]
        with self.autocast():
            qf = self.critic(obs, act).float()  # [N, B]
        qf_loss = (weights * (qf - next_q_value).pow(2)).mean(dim=1).sum()  # sum of the N critics' losses
        self.critic_optim.zero_grad(set_to_none=True)
        self.critic_scaler.scale(qf_loss).backward()
        self.critic_scaler.step(self.critic_optim)
        self.critic_scaler.update()
        td_error = (qf.detach().mean(dim=0) - next_q_value).abs()  # [B], for replay priorities
        polyak_update(self.critic_target, self.critic, cfg.tau)
        self.num_updates += 1

        metrics = {
            "qf_loss": qf_loss.detach() / cfg.n_critics,
            "qf_mean": qf.detach().mean(),
            "qf_std": qf.detach().std(dim=0).mean(),
            "next_q_value": next_q_value.mean(),
        }
        metrics.update(self.extra_metrics())
        if self.num_updates % cfg.q_updates_per_policy_update != 0:
            return UpdateResult(metrics_to_floats(metrics), td_error)

        # --- policy update: maximise the ensemble mean minus the entropy term (eq. 2)
        alpha = self.log_alpha.detach().exp()
        actor_loss, log_pi = self.actor_loss(obs)
        self.actor_optim.zero_grad(set_to_none=True)
        self.actor_scaler.scale(actor_loss).backward()
        self.actor_scaler.step(self.actor_optim)
        self.actor_scaler.update()
        self.average_policy()

        # --- entropy coefficient update, as SAC, when learned
        alpha_loss = self.update_alpha(log_pi)

        metrics.update(actor_loss=actor_loss.detach(), entropy=-log_pi.detach().mean(), alpha=alpha)
        if alpha_loss is not None:
            metrics["alpha_loss"] = alpha_loss
        return UpdateResult(metrics_to_floats(metrics), td_error)
