"""Critics: Q(s, a) networks, a stacked ensemble of them, and PPO's V(s)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from gymnasium import spaces
from torch import nn

from evo_rl.nets.actors import action_dim
from evo_rl.nets.encoder import Obs, ObservationEncoder
from evo_rl.nets.layers import init_orthogonal, mlp


class QNetwork(nn.Module):
    """One critic: ``Q(s, a) = MLP([encoder(s), a])``, output ``[B]``."""

    def __init__(self, obs_space: spaces.Space, act_space: spaces.Space, hidden: Sequence[int] = (256, 256)) -> None:
        super().__init__()
        self.encoder = ObservationEncoder(obs_space)
        self.net = mlp(self.encoder.out_dim + action_dim(act_space), hidden, 1, "relu")

    def forward(self, obs: Obs, action: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([self.encoder(obs), action], dim=1)).squeeze(-1)


class EnsembleQNetwork(nn.Module):
    """``n`` critics held as stacked parameters and evaluated in one batched call.

    Layer ``l`` of all members is one weight tensor ``[n, in, out]`` and one bias
    ``[n, 1, out]``; a forward pass is one ``baddbmm`` per layer for the whole
    ensemble. Members are initialised like ``nn.Linear`` (uniform in
    ``+-1/sqrt(in)``), independently. The observation encoder is shared by the
    members: for vector observations it has no parameters (so the members are
    fully independent critics); for images it is one CNN trained by all of them.

    ``layer_norm`` normalises every hidden layer's pre-activations over its units, with a
    learned gain and offset per member (``LayerNorm`` before ``ReLU``, as RLPD, Ball et al.
    2023, arXiv:2302.02948); it bounds the Q-values' growth from unseen actions.
    """

    def __init__(
        self,
        obs_space: spaces.Space,
        act_space: spaces.Space,
        hidden: Sequence[int] = (256, 256),
        n: int = 2,
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        self.n = n
        self.encoder = ObservationEncoder(obs_space)
        sizes = [self.encoder.out_dim + action_dim(act_space), *hidden, 1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            bound = 1.0 / math.sqrt(fan_in)
            self.weights.append(nn.Parameter(torch.empty(n, fan_in, fan_out).uniform_(-bound, bound)))  # [n, in, out]
            self.biases.append(nn.Parameter(torch.empty(n, 1, fan_out).uniform_(-bound, bound)))  # [n, 1, out]
        self.norm_gains = nn.ParameterList()
        self.norm_offsets = nn.ParameterList()
        if layer_norm:
            for size in hidden:
                self.norm_gains.append(nn.Parameter(torch.ones(n, 1, size)))  # [n, 1, hidden]
                self.norm_offsets.append(nn.Parameter(torch.zeros(n, 1, size)))

    def forward(
        self,
        obs: Obs,
        action: torch.Tensor,
        members: torch.Tensor | None = None,
        detach_params: bool = False,
    ) -> torch.Tensor:
        """Q-values ``[n, B]`` (or ``[len(members), B]`` for a subset of member indices).

        ``detach_params`` evaluates with the parameters detached: gradients then
        flow to ``action`` only (the policy loss), and no parameter gradient is
        computed.
        """
        if detach_params:
            with torch.no_grad():
                features = self.encoder(obs)
        else:
            features = self.encoder(obs)
        x = torch.cat([features, action.to(features.dtype)], dim=1)  # [B, in]
        weights, biases = list(self.weights), list(self.biases)
        gains, offsets = list(self.norm_gains), list(self.norm_offsets)
        if members is not None:
            weights, biases = [w[members] for w in weights], [b[members] for b in biases]
            gains, offsets = [g[members] for g in gains], [o[members] for o in offsets]
        if detach_params:
            weights, biases = [w.detach() for w in weights], [b.detach() for b in biases]
            gains, offsets = [g.detach() for g in gains], [o.detach() for o in offsets]
        h = torch.baddbmm(biases[0], x.expand(weights[0].shape[0], -1, -1), weights[0])  # [n, B, hidden]
        for i, (w, b) in enumerate(zip(weights[1:-1], biases[1:-1], strict=True)):
            h = torch.baddbmm(b, torch.relu(self._norm(h, gains, offsets, i)), w)  # [n, B, hidden]
        h = torch.relu(self._norm(h, gains, offsets, len(weights) - 2))
        # the output layer in float32 under autocast: Q-values (tens) to float32 precision, not bfloat16's 3 digits
        with torch.autocast(h.device.type, enabled=False):
            return torch.baddbmm(biases[-1], h.float(), weights[-1]).squeeze(-1)  # [n, B]

    @staticmethod
    def _norm(h: torch.Tensor, gains: list[torch.Tensor], offsets: list[torch.Tensor], i: int) -> torch.Tensor:
        """Hidden layer ``i``'s LayerNorm (``layer_norm``), or ``h`` unchanged."""
        return torch.addcmul(offsets[i], F.layer_norm(h, h.shape[-1:]), gains[i]) if gains else h

    @torch.no_grad()
    def load_members(self, critics: Sequence[QNetwork]) -> None:
        """Copy the weights of ``n`` separate :class:`QNetwork` s into the stack.

        The encoder is copied from the first critic (it has parameters only for
        image observations, where the ensemble shares one).
        """
        if len(critics) != self.n:
            raise ValueError(f"load_members needs {self.n} critics, got {len(critics)}")
        self.encoder.load_state_dict(critics[0].encoder.state_dict())
        for i, critic in enumerate(critics):
            linears = [m for m in critic.net if isinstance(m, nn.Linear)]
            for layer, w, b in zip(linears, self.weights, self.biases, strict=True):
                w[i].copy_(layer.weight.T)
                b[i, 0].copy_(layer.bias)


class ValueNetwork(nn.Module):
    """PPO's state value ``V(s)``, output ``[B]``."""

    def __init__(self, obs_space: spaces.Space, hidden: Sequence[int] = (64, 64), activation: str = "tanh") -> None:
        super().__init__()
        self.encoder = ObservationEncoder(obs_space)
        self.net = init_orthogonal(mlp(self.encoder.out_dim, hidden, 1, activation), out_gain=1.0)

    def forward(self, obs: Obs) -> torch.Tensor:
        return self.net(self.encoder(obs)).squeeze(-1)
