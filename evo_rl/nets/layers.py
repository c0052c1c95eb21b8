"""Small building blocks shared by actors and critics."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh}


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int, activation: str = "relu") -> nn.Sequential:
    """``Linear -> act`` for each hidden size, then a final ``Linear`` to ``out_dim``."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation {activation!r} is not one of {sorted(ACTIVATIONS)}")
    layers: list[nn.Module] = []
    for size in hidden:
        layers += [nn.Linear(in_dim, size), ACTIVATIONS[activation]()]
        in_dim = size
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


def init_orthogonal(net: nn.Sequential, hidden_gain: float = 2**0.5, out_gain: float = 1.0) -> nn.Sequential:
    """Orthogonal weights and zero biases, as is usual for PPO (Engstrom et al. 2020)."""
    linears = [m for m in net if isinstance(m, nn.Linear)]
    for i, layer in enumerate(linears):
        nn.init.orthogonal_(layer.weight, gain=out_gain if i == len(linears) - 1 else hidden_gain)
        nn.init.zeros_(layer.bias)
    return net


def adam(params: Iterable[Any], lr: float, **kwargs: Any) -> torch.optim.Adam:
    """Adam with the multi-tensor ("foreach") implementation on every device: one kernel per operation over all
    parameter tensors. PyTorch picks it by default on CUDA only; on the CPU, one step over six 256x256 tensors takes
    0.74 ms against 0.96 ms for the per-tensor loop (one thread)."""
    return torch.optim.Adam(params, lr=lr, foreach=True, **kwargs)
