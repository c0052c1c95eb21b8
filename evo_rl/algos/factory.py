"""Build the training agent a configuration names."""

from __future__ import annotations

from typing import Any

import torch
from gymnasium import spaces

from evo_rl.algos.base import OffPolicyAgent, OnPolicyAgent, TrainingAgent, resolve_device
from evo_rl.algos.ppo import PPOAgent
from evo_rl.algos.redq import REDQAgent
from evo_rl.algos.sac import SACAgent
from evo_rl.config import EvoConfig, import_object
from evo_rl.errors import ConfigError

AGENTS: dict[str, type[TrainingAgent]] = {"sac": SACAgent, "redq": REDQAgent, "ppo": PPOAgent}


def protocol_members(protocol: type) -> tuple[list[str], list[str]]:
    """``(methods, attributes)`` a protocol asks for, in the order it declares them."""
    methods = [name for name, value in vars(protocol).items() if not name.startswith("_") and callable(value)]
    attributes = [name for name in protocol.__annotations__ if name != "on_policy"]
    return methods, attributes


def _missing(members: list[str], where: Any) -> list[str]:
    return [name for name in members if not hasattr(where, name)]


def agent_class(name: str) -> type:
    """The class ``algo.name`` names (``sac``, ``redq``, ``ppo`` or ``module:Class``), checked against
    the protocol its ``on_policy`` flag chooses: a :class:`ConfigError` names the class and what it lacks."""
    if name in AGENTS:
        return AGENTS[name]
    if ":" not in name:
        raise ConfigError(f"algo.name {name!r} is neither {', '.join(AGENTS)} nor an import path module:Class")
    cls = import_object(name, "algo.name")
    if not isinstance(cls, type):
        raise ConfigError(f"algo.name {name!r} does not name a class")
    on_policy = getattr(cls, "on_policy", None)
    if not isinstance(on_policy, bool):
        raise ConfigError(
            f"algo.name {name!r}: class {cls.__qualname__} needs a class attribute on_policy = False "
            "(OffPolicyAgent) or True (OnPolicyAgent); see docs/algorithms.md"
        )
    protocol = OnPolicyAgent if on_policy else OffPolicyAgent
    missing = _missing(protocol_members(protocol)[0], cls)
    if missing:
        raise ConfigError(
            f"algo.name {name!r}: class {cls.__qualname__} has on_policy = {on_policy} but lacks the "
            f"{protocol.__name__} method{'s' if len(missing) > 1 else ''} {', '.join(missing)}; see docs/algorithms.md"
        )
    return cls


def make_agent(
    cfg: EvoConfig, obs_space: spaces.Space, act_space: spaces.Space, device: str | torch.device = "auto"
) -> OffPolicyAgent | OnPolicyAgent:
    """The agent of ``cfg.algo.name``: ``sac``, ``redq``, ``ppo`` or an import path ``module:Class``.

    Every agent, built-in or custom, is constructed the same way:
    ``Class(obs_space, act_space, cfg=cfg, device=device)`` with the whole configuration
    (built-in agents read their own section, ``cfg.algo.sac``...) and ``device`` resolved to a
    :class:`torch.device` (``"auto"``: CUDA when available). The class must implement
    :class:`OffPolicyAgent` or :class:`OnPolicyAgent`, as its ``on_policy`` flag says: its
    methods are checked before it is built, its attributes (``actor``, ``device``...) after.
    """
    cls = agent_class(cfg.algo.name)
    agent = cls(obs_space, act_space, cfg=cfg, device=resolve_device(device))
    protocol = OnPolicyAgent if cls.on_policy else OffPolicyAgent
    missing = _missing(protocol_members(protocol)[1], agent)
    if missing:
        raise ConfigError(
            f"algo.name {cfg.algo.name!r}: the {cls.__qualname__} it built lacks the {protocol.__name__} "
            f"attribute{'s' if len(missing) > 1 else ''} {', '.join(missing)}; see docs/algorithms.md"
        )
    return agent


def make_actor(
    cfg: EvoConfig, obs_space: spaces.Space, act_space: spaces.Space, device: str | torch.device = "cpu"
) -> torch.nn.Module:
    """The actor alone of ``make_agent(cfg, ...)`` (same parameter names and shapes): what rollout
    workers and policy files need. A class without a ``build_actor`` classmethod is built whole."""
    cls = agent_class(cfg.algo.name)
    builder = getattr(cls, "build_actor", None)
    if builder is None:
        return make_agent(cfg, obs_space, act_space, device).actor
    return builder(obs_space, act_space, cfg).to(resolve_device(device))
