"""Build the training agent a configuration names."""

from __future__ import annotations

import torch
from gymnasium import spaces

from evo_rl.algos.base import TrainingAgent
from evo_rl.algos.ppo import PPOAgent
from evo_rl.algos.redq import REDQAgent
from evo_rl.algos.sac import SACAgent
from evo_rl.config import EvoConfig, import_object
from evo_rl.errors import ConfigError

AGENTS: dict[str, type[TrainingAgent]] = {"sac": SACAgent, "redq": REDQAgent, "ppo": PPOAgent}


def make_agent(
    cfg: EvoConfig, obs_space: spaces.Space, act_space: spaces.Space, device: str | torch.device = "auto"
) -> TrainingAgent:
    """The agent of ``cfg.algo.name``: ``sac``, ``redq``, ``ppo`` or an import path ``module:Class``.

    Built-in agents take their own section (``cfg.algo.sac``...). A class named by
    import path is called as ``Class(obs_space, act_space, cfg=cfg, device=device)``
    with the whole configuration.
    """
    name = cfg.algo.name
    if name in AGENTS:
        return AGENTS[name](obs_space, act_space, getattr(cfg.algo, name), device=device, amp=cfg.algo.amp)
    if ":" not in name:
        raise ConfigError(f"algo.name {name!r} is neither {', '.join(AGENTS)} nor an import path module:Class")
    agent_class = import_object(name, "algo.name")
    if not callable(agent_class):
        raise ConfigError(f"algo.name {name!r} does not name a class")
    return agent_class(obs_space, act_space, cfg=cfg, device=device)
