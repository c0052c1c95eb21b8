"""The learning half of off-policy training: a replay memory and an agent's updates.

A :class:`Learner` takes :class:`~evo_rl.train.collect.Transitions` from any subset of cars at
any time (a local collector's every step, or a rollout worker's batch whenever it arrives),
performs gradient updates on sampled batches, and hands out its actor's weights.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from evo_rl.config import EvoConfig
from evo_rl.memory import ObsLayout, ReplayMemory
from evo_rl.train.collect import Transitions


class Learner:
    """Replay memory of ``n_cars`` car streams plus an off-policy agent."""

    def __init__(self, cfg: EvoConfig, agent: Any, layout: ObsLayout, n_cars: int) -> None:
        self.cfg = cfg
        self.agent = agent
        self.batch_size = cfg.memory.batch_size
        self.prioritized = cfg.memory.prioritized
        gamma = agent.gamma  # the algorithm's discount, for n-step returns (OffPolicyAgent.gamma)
        self.memory = ReplayMemory.from_config(cfg.memory, layout, n_cars, gamma, str(agent.device), cfg.train.seed)

    def add(self, tr: Transitions, cars: np.ndarray | None = None) -> None:
        """Store one step of ``cars`` (all cars when None; ``tr`` has one row per car)."""
        self.memory.add_frames(
            tr.frames, tr.action, tr.reward, tr.terminated, tr.truncated, tr.final_frames, None, cars
        )

    def ready(self) -> bool:
        """Enough transitions stored to sample a batch."""
        return len(self.memory) >= self.batch_size

    def update(self) -> dict[str, float]:
        """One gradient update on a sampled batch (and its priorities); returns its metrics."""
        batch = self.memory.sample(self.batch_size)
        result = self.agent.update(batch)
        if self.prioritized and result.td_error is not None and batch.indices is not None:
            self.memory.update_priorities(batch.indices, result.td_error)
        return result.metrics

    def actor_weights(self) -> dict[str, torch.Tensor]:
        """The actor's parameters and buffers, detached on the CPU (what workers load)."""
        return {k: v.detach().to("cpu").contiguous() for k, v in self.agent.actor.state_dict().items()}


def lr_factor(schedule: str, final: float, fraction: float) -> float:
    """The learning-rate multiplier of ``train.lr_schedule`` when ``fraction`` (0..1) of the run is done:
    1 throughout (constant), or from 1 down to ``final`` along a straight line (linear) or a half cosine."""
    fraction = min(max(fraction, 0.0), 1.0)
    if schedule == "linear":
        return 1.0 - (1.0 - final) * fraction
    if schedule == "cosine":
        return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * fraction))
    return 1.0


def scale_learning_rates(agent: Any, factor: float) -> None:
    """Set every optimiser of ``agent`` to ``factor`` times its configured rates.

    The optimisers are the agent's checkpoint items (a :class:`~evo_rl.algos.TrainingAgent`) or
    its attributes. Each parameter group keeps its configured rate as ``initial_lr`` (as PyTorch's
    schedulers do), which its checkpoint carries, so a resumed run goes on from where it was.
    """
    items = agent.checkpoint_items() if hasattr(agent, "checkpoint_items") else vars(agent)
    for item in items.values():
        if isinstance(item, torch.optim.Optimizer):
            for group in item.param_groups:
                group.setdefault("initial_lr", group["lr"])
                group["lr"] = group["initial_lr"] * factor
