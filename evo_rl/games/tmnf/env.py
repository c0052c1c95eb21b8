"""Gymnasium entry points of TMNF (``EvoRL-TMNF-*-v0``): the simulator's environments over TMNF instances."""

from __future__ import annotations

from typing import Any

from evo_rl.envs.factory import resolve_config
from evo_rl.envs.single import TrackEnv
from evo_rl.envs.vector import VecTrackEnv
from evo_rl.errors import ConfigError
from evo_rl.games.tmnf.source import open_source


def make_tmnf_env(flavour: str | None = None, config: Any = None, **overrides: Any) -> TrackEnv:
    """One car in the first instance of ``game.ports``."""
    if flavour is not None:
        overrides["flavour"] = flavour
    cfg = resolve_config(config, **overrides)
    cfg.env.source = "tmnf"
    source = open_source(cfg, cfg.game.ports[:1], virtual=cfg.game.input == "virtual", speed=cfg.game.speed)
    return TrackEnv(cfg, source=source)


def make_tmnf_vec_env(
    num_envs: int | None = None,
    flavour: str | None = None,
    config: Any = None,
    autoreset: bool = True,
    **overrides: Any,
) -> VecTrackEnv:
    """``num_envs`` cars (default: one per instance of ``game.ports``), stepped together."""
    if flavour is not None:
        overrides["flavour"] = flavour
    cfg = resolve_config(config, **overrides)
    cfg.env.source = "tmnf"
    ports = cfg.game.ports if num_envs is None else cfg.game.ports[:num_envs]
    if num_envs is not None and len(ports) < num_envs:
        raise ConfigError(f"{num_envs} cars need {num_envs} TMNF instances; game.ports lists {len(cfg.game.ports)}")
    source = open_source(cfg, ports, virtual=cfg.game.input == "virtual", speed=cfg.game.speed)
    return VecTrackEnv(cfg, n_envs=len(ports), source=source, autoreset=autoreset)
