"""Policies (actors).

Every actor is an ``nn.Module`` (its ``state_dict`` holds only tensors, so it
saves as safetensors) with two entry points:

- ``forward(obs, deterministic=False) -> (action [B, A], log_prob [B])`` on tensor
  batches, used by the learning algorithms;
- ``act(obs, test=False) -> np.ndarray``, as TMRL's ``ActorModule.act``: NumPy
  in, NumPy out, one observation (returns ``[A]``) or a batch ``[N, ...]``
  (returns ``[N, A]``, one row per car of a vector environment); deterministic
  when ``test`` is true.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from torch import nn

from evo_rl.errors import EvoError
from evo_rl.nets.encoder import Obs, ObservationEncoder, as_batch
from evo_rl.nets.layers import init_orthogonal, mlp

LOG_STD_MIN = -20.0
LOG_STD_MAX = 2.0
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def action_dim(act_space: spaces.Space) -> int:
    """Size of a 1-D bounded ``Box`` action space."""
    if not (isinstance(act_space, spaces.Box) and len(act_space.shape) == 1):
        raise EvoError(f"action space {act_space} is not supported; EVO RL's actors need a 1-D Box")
    if not (np.all(np.isfinite(act_space.low)) and np.all(np.isfinite(act_space.high))):
        raise EvoError(f"action space {act_space} must have finite bounds")
    return int(act_space.shape[0])


class ActorModule(nn.Module):
    """Base of EVO RL actors: observation encoder, action bounds, ``act``."""

    def __init__(self, obs_space: spaces.Space, act_space: spaces.Space) -> None:
        super().__init__()
        self.act_dim = action_dim(act_space)
        self.encoder = ObservationEncoder(obs_space)
        low = torch.as_tensor(act_space.low, dtype=torch.float32)  # [A]
        high = torch.as_tensor(act_space.high, dtype=torch.float32)  # [A]
        self.register_buffer("action_low", low)
        self.register_buffer("action_high", high)
        self.register_buffer("action_scale", (high - low) / 2)
        self.register_buffer("action_bias", (high + low) / 2)

    def forward(self, obs: Obs, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def act_tensor(self, obs: Obs, test: bool = False) -> torch.Tensor:
        """Actions ``[B, A]`` within the action bounds for a tensor batch."""
        raise NotImplementedError

    @torch.no_grad()
    def act(self, obs, test: bool = False) -> np.ndarray:
        """Actions for one observation (``[A]``) or a batch (``[N, A]``), float32."""
        device = self.action_low.device
        batch, single = as_batch(obs, self.encoder.part_ndims, self.encoder.flat, device)
        action = self.act_tensor(batch, test).float().cpu().numpy()  # [N, A]
        return action[0] if single else action


class SquashedGaussianActor(ActorModule):
    """SAC's policy: a Gaussian squashed by tanh (Haarnoja et al. 2018, appendix C).

    ``u ~ N(mean(s), std(s))``, ``a = tanh(u)`` (rescaled to the action bounds),
    ``log pi(a|s) = log N(u) - sum log(1 - tanh(u)^2)`` (eq. 21).
    """

    def __init__(self, obs_space: spaces.Space, act_space: spaces.Space, hidden: Sequence[int] = (256, 256)) -> None:
        super().__init__(obs_space, act_space)
        self.net = mlp(self.encoder.out_dim, hidden, 2 * self.act_dim, "relu")
        self.register_buffer("log_scale_sum", self.action_scale.log().sum())

    def forward(self, obs: Obs, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.net(self.encoder(obs)).float().chunk(2, dim=-1)  # [B, A] each
        log_std = log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
        eps = torch.zeros_like(mean) if deterministic else torch.randn_like(mean)  # [B, A]
        u = mean + log_std.exp() * eps  # pre-squash sample
        log_prob = (-0.5 * eps.pow(2) - log_std - HALF_LOG_2PI).sum(-1)  # log N(u; mean, std), [B]
        # log(1 - tanh(u)^2) = 2 * (log 2 - u - softplus(-2u)), the numerically stable form
        log_prob = log_prob - (2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))).sum(-1) - self.log_scale_sum
        action = torch.tanh(u) * self.action_scale + self.action_bias  # [B, A]
        return action, log_prob

    def act_tensor(self, obs: Obs, test: bool = False) -> torch.Tensor:
        return self.forward(obs, deterministic=test)[0]


class GaussianActor(ActorModule):
    """PPO's policy: ``N(mean(s), exp(log_std))`` with a state-independent ``log_std``.

    Samples are unbounded (the log-probabilities PPO needs stay exact); the
    environment receives them clipped to the action bounds.
    """

    def __init__(
        self,
        obs_space: spaces.Space,
        act_space: spaces.Space,
        hidden: Sequence[int] = (64, 64),
        activation: str = "tanh",
        log_std_init: float = 0.0,
    ) -> None:
        super().__init__(obs_space, act_space)
        self.net = init_orthogonal(mlp(self.encoder.out_dim, hidden, self.act_dim, activation), out_gain=0.01)
        self.log_std = nn.Parameter(torch.full((self.act_dim,), float(log_std_init)))  # [A]

    def forward(self, obs: Obs, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.net(self.encoder(obs)).float()  # [B, A]
        eps = torch.zeros_like(mean) if deterministic else torch.randn_like(mean)
        action = mean + self.log_std.exp() * eps  # [B, A]
        log_prob = (-0.5 * eps.pow(2) - self.log_std - HALF_LOG_2PI).sum(-1)  # [B]
        return action, log_prob

    def evaluate(self, obs: Obs, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log_prob [B], entropy [B])`` of given (unclipped) actions."""
        mean = self.net(self.encoder(obs)).float()  # [B, A]
        z = (action - mean) * torch.exp(-self.log_std)
        log_prob = (-0.5 * z.pow(2) - self.log_std - HALF_LOG_2PI).sum(-1)
        entropy = (0.5 + HALF_LOG_2PI + self.log_std).sum().expand(mean.shape[0])
        return log_prob, entropy

    def act_tensor(self, obs: Obs, test: bool = False) -> torch.Tensor:
        action = self.forward(obs, deterministic=test)[0]
        return torch.maximum(torch.minimum(action, self.action_high), self.action_low)
