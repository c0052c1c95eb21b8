"""Learning algorithms: SAC, REDQ-SAC and PPO (see docs/algorithms.md)."""

from evo_rl.algos.base import Batch, OffPolicyAgent, OnPolicyAgent, TrainingAgent, UpdateResult
from evo_rl.algos.factory import AGENTS, agent_class, make_actor, make_agent
from evo_rl.algos.ppo import PolicyStep, PPOAgent, RolloutBuffer
from evo_rl.algos.redq import REDQAgent
from evo_rl.algos.sac import SACAgent
from evo_rl.algos.state import flatten_state, load_state, save_state, unflatten_state

__all__ = [
    "AGENTS",
    "Batch",
    "OffPolicyAgent",
    "OnPolicyAgent",
    "PPOAgent",
    "PolicyStep",
    "REDQAgent",
    "RolloutBuffer",
    "SACAgent",
    "TrainingAgent",
    "UpdateResult",
    "agent_class",
    "flatten_state",
    "load_state",
    "make_actor",
    "make_agent",
    "save_state",
    "unflatten_state",
]
