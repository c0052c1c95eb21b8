"""Build the training agent a configuration names."""

from __future__ import annotations

from typing import Any

import torch
from gymnasium import spaces

from evo_rl.algos.base import OffPolicyAgent, OnPolicyAgent, TrainingAgent
from evo_rl.algos.ppo import PPOAgent
from evo_rl.algos.redq import REDQAgent
from evo_rl.algos.sac import SACAgent
from evo_rl.config import EvoConfig, import_object
from evo_rl.errors import ConfigError

AGENTS: dict[str, type[TrainingAgent]] = {"sac": SACAgent, "redq": REDQAgent, "ppo": PPOAgent}


def make_agent(
    cfg: EvoConfig, obs_space: spaces.Space, act_space: spaces.Space, device: str | torch.device = "auto"
) -> OffPolicyAgent | OnPolicyAgent:
    """The agent of ``cfg.algo.name``: ``sac``, ``redq``, ``ppo`` or an import path ``module:Class``.

    Every agent, built-in or custom, is constructed the same way:
    ``Class(obs_space, act_space, cfg=cfg, device=device)`` with the whole configuration
    (built-in agents read their own section, ``cfg.algo.sac``...). The result must implement
    :class:`OffPolicyAgent` or :class:`OnPolicyAgent` as its ``on_policy`` flag says.
    """
    name = cfg.algo.name
    if name in AGENTS:
        agent_class: Any = AGENTS[name]
    elif ":" not in name:
        raise ConfigError(f"algo.name {name!r} is neither {', '.join(AGENTS)} nor an import path module:Class")
    else:
        agent_class = import_object(name, "algo.name")
        if not isinstance(agent_class, type):
            raise ConfigError(f"algo.name {name!r} does not name a class")
    agent = agent_class(obs_space, act_space, cfg=cfg, device=device)
    check_agent(agent, f"algo.name {name!r}")
    return agent


def check_agent(agent: Any, where: str) -> None:
    """Refuse an agent that lacks what the trainer calls, naming the class and the missing members."""
    on_policy = getattr(type(agent), "on_policy", None)
    if not isinstance(on_policy, bool):
        raise ConfigError(
            f"{where}: class {type(agent).__qualname__} needs a class attribute on_policy = True or False "
            "(subclass evo_rl.algos.TrainingAgent, or see docs/algorithms.md)"
        )
    protocol = OnPolicyAgent if on_policy else OffPolicyAgent
    members = [*protocol.__annotations__, *(m for m in vars(protocol) if not m.startswith("_"))]
    missing = sorted(m for m in members if not hasattr(agent, m))
    if missing:
        raise ConfigError(
            f"{where}: class {type(agent).__qualname__} is an {'on' if on_policy else 'off'}-policy agent "
            f"but lacks {', '.join(missing)} (see {protocol.__name__} in docs/algorithms.md)"
        )
