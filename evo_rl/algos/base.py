"""What every EVO RL training agent shares: the trainer's protocols, devices, mixed precision, checkpoints.

The trainer talks to an agent through one of two protocols, chosen by the agent's
class attribute ``on_policy``: :class:`OffPolicyAgent` (learns from replay
batches: SAC, REDQ-SAC) and :class:`OnPolicyAgent` (learns from its own rollouts:
PPO). Both are built as ``Class(obs_space, act_space, cfg=cfg, device=device)``
(:func:`evo_rl.algos.make_agent`), and ``update`` returns an :class:`UpdateResult`.
:class:`TrainingAgent` is the base class of the built-in agents (it mirrors TMRL's
``TrainingAgent``): ``actor`` is the current policy and ``get_actor()`` a detached
CPU copy for acting elsewhere; ``state_dict()`` / ``load_state_dict()`` cover every
network, target network, optimiser, gradient scaler and counter; see
:mod:`evo_rl.algos.state` to store them as safetensors without pickle.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar, NamedTuple, Protocol, TypeVar, runtime_checkable

import torch
from gymnasium import spaces
from torch import nn

from evo_rl.algos.extras import RND, DynamicsModel, augment, image_parts
from evo_rl.config import SACConfig
from evo_rl.errors import CheckpointError, ConfigError
from evo_rl.memory.replay import Batch
from evo_rl.nets.actors import LOG_STD_MAX, LOG_STD_MIN, ActorModule, SquashedGaussianActor
from evo_rl.nets.critics import EnsembleQNetwork
from evo_rl.nets.encoder import Obs, to_device
from evo_rl.nets.layers import adam


class UpdateResult(NamedTuple):
    """What one ``update`` returns to the trainer."""

    metrics: dict[str, float]  # losses, entropy, Q-values... as floats, averaged into the logs
    td_error: torch.Tensor | None = None  # [B] |TD error| of each batch sample: the replay's new priorities


@runtime_checkable
class OffPolicyAgent(Protocol):
    """What the trainer uses of an off-policy agent (SAC, REDQ-SAC or a custom one).

    Per car-step of all cars it calls ``actor.act(obs [N, ...], test=False) -> [N, 3]``
    (after ``train.start_steps`` random steps) and then pays ``train.updates_per_step``
    updates per car-step, one ``update(memory.sample(B))`` each; with prioritised replay
    ``UpdateResult.td_error`` becomes the sampled transitions' priorities.
    """

    on_policy: ClassVar[bool]  # False
    actor: ActorModule  # the policy: act() for the cars and evaluation, saved in policy files
    device: torch.device  # where the replay puts its batches
    gamma: float  # discount of the replay's n-step returns (each batch's discount = gamma^k)

    def update(self, batch: Batch) -> UpdateResult:
        """One gradient update on a replay batch (tensors may be on another device)."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue learning (checkpoints): nested dicts of tensors and plain values."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned (resume)."""
        ...


@runtime_checkable
class OnPolicyAgent(Protocol):
    """What the trainer uses of an on-policy agent (PPO or a custom one).

    Per step of all cars: ``step = policy_step(obs)``, ``env.step(step.action)``,
    ``rollout.add(obs, step.raw_action, step.log_prob, step.value, rew, term, trunc,
    final_values(info, trunc))``; when ``rollout.full``:
    ``rollout.compute_returns_and_advantages(value(next_obs))``, ``update(rollout)``,
    ``rollout.reset()``. The trainer counts ``num_updates`` before and after ``update``.
    """

    on_policy: ClassVar[bool]  # True
    actor: ActorModule  # the policy: act() for evaluation, saved in policy files
    device: torch.device
    num_updates: int  # gradient steps so far (PPO: minibatch steps)

    def make_rollout(self, n_envs: int) -> Any:
        """Rollout storage for ``n_envs`` cars, with ``add``, ``full``,
        ``compute_returns_and_advantages`` and ``reset`` (e.g. :class:`~evo_rl.algos.RolloutBuffer`)."""
        ...

    def policy_step(self, obs: Any) -> Any:
        """Actions for a batch of observations: ``.action`` [N, A] (for the env), ``.raw_action``,
        ``.log_prob``, ``.value`` (e.g. :class:`~evo_rl.algos.PolicyStep`)."""
        ...

    def value(self, obs: Any) -> torch.Tensor:
        """``V(s)`` [N] of a batch of observations."""
        ...

    def final_values(self, info: dict, truncated: Any) -> torch.Tensor:
        """``V(final obs)`` [N] of the cars truncated this step (zeros elsewhere), to bootstrap them."""
        ...

    def update(self, rollout: Any) -> UpdateResult:
        """Learn from a full rollout whose returns and advantages are computed."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue learning (checkpoints)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned (resume)."""
        ...


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` is CUDA when available, else CPU."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_amp(amp: bool | None, device: torch.device) -> bool:
    """Mixed precision is on by default with CUDA (float16), off on the CPU, where ``amp: true`` means bfloat16
    matrix products (fast on CPUs with native bfloat16, e.g. AVX512-BF16 or AMX); other devices have none."""
    if amp is None:
        return device.type == "cuda"
    if amp and device.type not in ("cuda", "cpu"):
        raise ConfigError(
            f"algo.amp=true needs a CUDA device or the CPU, but the agent runs on {device}; set algo.amp to null"
        )
    return amp


def polyak_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """``target <- (1 - tau) * target + tau * source``, all parameters in one fused call."""
    with torch.no_grad():
        torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)


M = TypeVar("M", bound=nn.Module)


def frozen_copy(module: M) -> M:
    """A deep copy with ``requires_grad`` off (target networks)."""
    target = copy.deepcopy(module)
    target.requires_grad_(False)
    return target


CLONE_LIMIT = 0.995  # behaviour cloning: actions at +-1 are cloned as tanh(u) = +-0.995 (u = +-3)


class TrainingAgent:
    """Base class of EVO RL's agents (see the module docstring)."""

    actor: ActorModule
    on_policy: ClassVar[bool] = False  # True for agents that learn from their own rollouts (OnPolicyAgent)

    def __init__(
        self, obs_space: spaces.Space, act_space: spaces.Space, device: str | torch.device, amp: bool | None
    ) -> None:
        self.obs_space = obs_space
        self.act_space = act_space
        self.device = resolve_device(device)
        self.amp = resolve_amp(amp, self.device)
        self.amp_dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16  # of autocast, when amp
        self.num_updates = 0

    def autocast(self) -> torch.autocast:
        """The mixed-precision context of the forward passes (a no-op when AMP is off): float16 on CUDA,
        bfloat16 on the CPU."""
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype, enabled=self.amp)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """Loss scaling for float16 (CUDA); bfloat16 has float32's range and needs none."""
        return torch.amp.GradScaler(self.device.type, enabled=self.amp and self.amp_dtype == torch.float16)

    def update(self, batch: Any) -> UpdateResult:
        """One learning step; returns its metrics (and the TD error, off-policy)."""
        raise NotImplementedError

    @property
    def policy(self) -> ActorModule:
        """The policy that evaluations and policy files use: the actor (SAC and REDQ: or its average)."""
        return self.actor

    def get_actor(self) -> ActorModule:
        """A CPU copy of the current policy without gradients, for workers and evaluation."""
        actor = copy.deepcopy(self.actor).to("cpu")
        actor.requires_grad_(False)
        return actor

    def checkpoint_items(self) -> dict[str, Any]:
        """Everything a checkpoint holds: modules, optimisers, scalers and tensors, by name."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Nested state of every checkpoint item plus the update counter."""
        state: dict[str, Any] = {}
        for name, item in self.checkpoint_items().items():
            state[name] = item.detach().clone() if isinstance(item, torch.Tensor) else item.state_dict()
        state["num_updates"] = torch.tensor(self.num_updates, dtype=torch.int64)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        items = self.checkpoint_items()
        missing = sorted(set(items) - set(state))
        if missing:
            raise CheckpointError(
                f"the saved agent state lacks {', '.join(missing)}: it was saved by another algorithm "
                "or with other settings (e.g. algo.*.learn_entropy); load it with the config it was trained with"
            )
        for name, item in items.items():
            if isinstance(item, torch.Tensor):
                with torch.no_grad():
                    item.copy_(state[name])
            else:
                item.load_state_dict(state[name])
        self.num_updates = int(state["num_updates"])


def metrics_to_floats(metrics: dict[str, torch.Tensor]) -> dict[str, float]:
    """Convert detached scalar tensors to floats with one device synchronisation."""
    values = torch.stack([v.detach().float().reshape(()) for v in metrics.values()]).tolist()
    return dict(zip(metrics, values, strict=True))


class SoftActorCriticBase(TrainingAgent):
    """What SAC and REDQ-SAC share: a tanh-Gaussian actor, ``n_critics`` critics in one
    stacked ensemble with a Polyak-averaged target copy, Adam optimisers, and the
    entropy coefficient ``alpha = exp(log_alpha)``, fixed or learned (Haarnoja et al.
    2018, arXiv:1812.05905, eq. 18)."""

    @staticmethod
    def actor_of(obs_space: spaces.Space, act_space: spaces.Space, config: SACConfig) -> SquashedGaussianActor:
        """The actor network alone (a rollout worker needs no critics and no optimisers)."""
        return SquashedGaussianActor(obs_space, act_space, config.hidden)

    def __init__(
        self,
        obs_space: spaces.Space,
        act_space: spaces.Space,
        config: SACConfig,
        n_critics: int,
        device: str | torch.device,
        amp: bool | None,
    ) -> None:
        super().__init__(obs_space, act_space, device, amp)
        self.config = cfg = config
        self.actor = self.actor_of(obs_space, act_space, cfg).to(self.device)
        self.critic = EnsembleQNetwork(obs_space, act_space, cfg.hidden, n_critics, cfg.critic_layer_norm).to(
            self.device
        )
        self.critic_target = frozen_copy(self.critic)
        self.actor_optim = adam(self.actor.parameters(), cfg.lr_actor)
        self.critic_optim = adam(self.critic.parameters(), cfg.lr_critic)
        self.actor_scaler = self.grad_scaler()
        self.critic_scaler = self.grad_scaler()
        # -2 nats per action dimension: with SAC's usual -1 the policy learned to drive with its own noise late in a run
        # (docs/training.md, "How well it learns")
        self.target_entropy = cfg.target_entropy if cfg.target_entropy is not None else -2.0 * self.actor.act_dim
        self.log_alpha = torch.tensor(cfg.alpha, device=self.device).log().requires_grad_(cfg.learn_entropy)
        self.alpha_optim = adam([self.log_alpha], cfg.lr_entropy) if cfg.learn_entropy else None
        self._drq_parts = image_parts(obs_space) if cfg.drq_pad > 0 else []
        if cfg.drq_pad > 0 and not self._drq_parts:
            raise ConfigError("algo.sac.drq_pad shifts image observations, and these have none: set env.flavour: full")
        self.rnd = RND(obs_space, lr=cfg.rnd_lr).to(self.device) if cfg.rnd_weight > 0 else None
        self._intrinsic = torch.zeros((), device=self.device)  # mean intrinsic reward of the last batch
        self.model = (
            DynamicsModel(obs_space, self.actor.act_dim, max(cfg.hidden), cfg.model_lr).to(self.device)
            if cfg.model_ratio > 0
            else None
        )
        self._model_metrics: dict[str, torch.Tensor] = {}
        # algo.sac.policy_average: a Polyak average of the actor's weights for evaluation (Nikishin et al.,
        # "Improving Stability in Deep Reinforcement Learning with Weight Averaging", 2018)
        self.actor_average = frozen_copy(self.actor) if cfg.policy_average > 0 else None
        self.averaged = torch.zeros((), dtype=torch.int64)  # actor steps averaged so far

    @property
    def policy(self) -> ActorModule:
        """The averaged actor once it has averaged a step (``algo.sac.policy_average``), else the actor."""
        return self.actor_average if self.actor_average is not None and int(self.averaged) > 0 else self.actor

    def average_policy(self) -> None:
        """After each actor step: ``average <- average + w * (actor - average)``, ``w = max(rate, 1 / k)`` at the
        k-th step (the plain mean of the first ``1 / rate`` steps, so it starts at the actor: behaviour cloning or
        an ``--init`` actor included), then the exponential average of rate ``algo.sac.policy_average``."""
        if self.actor_average is None:
            return
        self.averaged += 1
        polyak_update(self.actor_average, self.actor, max(self.config.policy_average, 1.0 / int(self.averaged)))

    def cloning_loss(self, batch: Batch) -> torch.Tensor:
        """Behaviour cloning: the mean negative log-likelihood of the batch's actions under the policy, up to a
        constant (of the tanh-Gaussian's pre-squash value ``atanh(a)``; actions at the bounds count as
        ``+-CLONE_LIMIT``)."""
        obs = to_device(batch.obs, self.device)
        action = batch.act.to(self.device, torch.float32)  # [B, A]
        actor: Any = self.actor  # a SquashedGaussianActor: net, encoder, action_scale, action_bias
        mean, log_std = actor.net(actor.encoder(obs)).float().chunk(2, dim=-1)  # [B, A] each
        log_std = log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
        a = ((action - actor.action_bias) / actor.action_scale).clamp(-CLONE_LIMIT, CLONE_LIMIT)
        u = torch.atanh(a)  # [B, A]
        return (0.5 * ((u - mean) / log_std.exp()).pow(2) + log_std).sum(-1).mean()

    def extra_metrics(self) -> dict[str, torch.Tensor]:
        """Metrics of the optional techniques (RND's mean intrinsic reward, the Dyna model's loss and the
        fraction of imagined transitions)."""
        metrics = {"intrinsic_reward": self._intrinsic} if self.rnd is not None else {}
        return metrics | self._model_metrics

    @property
    def gamma(self) -> float:
        """The discount factor (``OffPolicyAgent.gamma``: the replay's n-step returns use it)."""
        return self.config.gamma

    def unpack(
        self, batch: Batch
    ) -> tuple[Obs, torch.Tensor, torch.Tensor, Obs, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(obs, act, rew, next_obs, done, discount, weights)`` on the agent's device.

        ``discount`` is the batch's (n-step aware) ``[B]`` or ``gamma``; ``weights`` the
        batch's importance-sampling weights or ones.
        """

        def vector(t: torch.Tensor) -> torch.Tensor:  # [B] float32 on the agent's device
            return t.to(self.device, torch.float32, non_blocking=True).reshape(-1)

        rew, done = vector(batch.rew), vector(batch.terminated)
        discount, weights = batch.discount, batch.weights
        discount = torch.full_like(rew, self.config.gamma) if discount is None else vector(discount)
        weights = torch.ones_like(rew) if weights is None else vector(weights)
        act = batch.act.to(self.device, torch.float32, non_blocking=True)  # [B, A]
        obs, next_obs = to_device(batch.obs, self.device), to_device(batch.next_obs, self.device)
        if self.model is not None:
            act, rew, next_obs, done, discount, weights = self.dyna(obs, act, rew, next_obs, done, discount, weights)
        if self._drq_parts:  # DrQ: independent random shifts of the images
            obs = augment(obs, self._drq_parts, self.config.drq_pad)
            next_obs = augment(next_obs, self._drq_parts, self.config.drq_pad)
        if self.rnd is not None:  # RND: the novelty of the next observation, as reward
            intrinsic = self.rnd.intrinsic(next_obs)
            self._intrinsic = intrinsic.mean().detach()
            rew = rew + self.config.rnd_weight * intrinsic
        return obs, act, rew, next_obs, done, discount, weights

    def dyna(
        self,
        obs: Obs,
        act: torch.Tensor,
        rew: torch.Tensor,
        next_obs: Obs,
        done: torch.Tensor,
        discount: torch.Tensor,
        weights: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, Obs, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Dyna (``algo.sac.model_ratio``): one model step on the real batch, then, once the model has had
        ``model_warmup`` steps, its first ``model_ratio * B`` rows (a random sample) get the current policy's
        actions and the model's next observations, rewards and terminations, with ``discount = gamma`` and
        weight 1. Returns ``(act, rew, next_obs, done, discount, weights)``."""
        assert self.model is not None
        loss = self.model.learn(obs, act, rew, next_obs, done)
        k = (
            int(round(self.config.model_ratio * rew.shape[0]))
            if int(self.model.count) > self.config.model_warmup
            else 0
        )
        self._model_metrics = {"model_loss": loss, "imagined": torch.tensor(k / rew.shape[0])}
        if k == 0:
            return act, rew, next_obs, done, discount, weights
        first = obs[:k] if isinstance(obs, torch.Tensor) else tuple(o[:k] for o in obs)
        with torch.no_grad():
            action, _ = self.actor(first)
        imagined, reward, terminated = self.model.imagine(first, action)

        def join(new: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
            return torch.cat([new.to(real.dtype), real[k:]])

        if isinstance(next_obs, torch.Tensor):
            next_obs = join(imagined, next_obs)  # type: ignore[arg-type]
        else:
            next_obs = tuple(join(i, n) for i, n in zip(imagined, next_obs, strict=True))
        gamma = torch.full_like(reward, self.config.gamma)
        return (
            join(action, act),
            join(reward, rew),
            next_obs,
            join(terminated, done),
            join(gamma, discount),
            join(torch.ones_like(reward), weights),
        )

    def alpha_loss(self, log_pi: torch.Tensor) -> torch.Tensor:
        """Entropy-coefficient loss ``J(alpha) = E[-alpha log pi(a|s) - alpha H_target]`` (eq. 18), with
        ``H_target = -target_entropy`` and ``alpha`` parameterised as ``log alpha`` (as the authors' code):
        ``mean(-log_alpha * (log pi + target_entropy))``; its gradient raises alpha while the policy's
        entropy ``-log pi`` is below the target and lowers it above."""
        return -(self.log_alpha * (log_pi.detach() + self.target_entropy)).mean()

    def update_alpha(self, log_pi: torch.Tensor) -> torch.Tensor | None:
        """One step on :meth:`alpha_loss` when alpha is learned; returns the loss, or None when alpha is fixed."""
        if self.alpha_optim is None:
            return None
        alpha_loss = self.alpha_loss(log_pi)
        self.alpha_optim.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_optim.step()
        return alpha_loss.detach()

    def checkpoint_items(self) -> dict[str, Any]:
        items: dict[str, Any] = {
            "actor": self.actor,
            "critic": self.critic,
            "critic_target": self.critic_target,
            "actor_optim": self.actor_optim,
            "critic_optim": self.critic_optim,
            "actor_scaler": self.actor_scaler,
            "critic_scaler": self.critic_scaler,
            "log_alpha": self.log_alpha,
        }
        if self.alpha_optim is not None:
            items["alpha_optim"] = self.alpha_optim
        if self.rnd is not None:
            items["rnd"] = self.rnd
            items["rnd_optim"] = self.rnd.optim
        if self.model is not None:
            items["model"] = self.model
            items["model_optim"] = self.model.optim
        if self.actor_average is not None:
            items["actor_average"] = self.actor_average
            items["averaged"] = self.averaged
        return items
