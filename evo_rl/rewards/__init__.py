"""Reward terms, their weighted composition, episode-end rules and reference trajectories.

``RewardManager(cfg.reward, cfg.episode, track, n_envs)`` is called by the
environment after every ``World.step`` with a :class:`StepContext` and returns a
:class:`RewardOutput`. See docs/rewards.md.
"""

from evo_rl.rewards.base import TERMS, RewardOutput, RewardTerm, StepContext
from evo_rl.rewards.manager import RewardManager
from evo_rl.rewards.reference_trajectory import (
    ReferenceTrajectory,
    centre_line,
    load_reference,
    resample,
    save_reference,
)
from evo_rl.rewards.tmrl_pickle import read_tmrl_pickle

__all__ = [
    "TERMS",
    "ReferenceTrajectory",
    "RewardManager",
    "RewardOutput",
    "RewardTerm",
    "StepContext",
    "centre_line",
    "load_reference",
    "read_tmrl_pickle",
    "resample",
    "save_reference",
]
