"""Building environments from a config: `get_environment` and the Gymnasium entry points."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evo_rl.config import EvoConfig, apply_overrides, load_config, validate_config
from evo_rl.envs.single import TrackEnv
from evo_rl.envs.vector import VecTrackEnv
from evo_rl.errors import ConfigError

ENV_IDS = {
    "lidar": "EvoRL-Lidar-v0",
    "lidar_progress": "EvoRL-LidarProgress-v0",
    "full": "EvoRL-Full-v0",
}
# TrackMania Nations Forever in lock-step (evo_rl.games.tmnf.env; instances on game.ports)
TMNF_ENV_IDS = {
    "lidar": "EvoRL-TMNF-Lidar-v0",
    "lidar_progress": "EvoRL-TMNF-LidarProgress-v0",
    "full": "EvoRL-TMNF-Full-v0",
}
# TrackMania 2020 in real time (evo_rl.games.realtime; the game's settings come from the config's `game` section)
TM2020_ENV_IDS = {
    "lidar": "EvoRL-TM2020-Lidar-v0",
    "lidar_progress": "EvoRL-TM2020-LidarProgress-v0",
    "full": "EvoRL-TM2020-Full-v0",
}


def resolve_config(config: EvoConfig | str | Path | dict | None = None, **overrides: Any) -> EvoConfig:
    """An :class:`EvoConfig` from a config, a YAML path, a dict or None (defaults), plus overrides.

    Override keys are ``env`` fields (``hist_len=2``) or ``section.key`` paths
    (``**{"lidar.beams": 9}``).
    """
    if config is None:
        cfg = EvoConfig()
    elif isinstance(config, EvoConfig):
        cfg = config
    elif isinstance(config, (str, Path)):
        cfg = load_config(config)
    elif isinstance(config, dict):
        cfg = validate_config(config, "config dict")
    else:
        raise ConfigError(f"config must be an EvoConfig, a YAML path, a dict or None, got {type(config).__name__}")
    if not overrides:
        return cfg
    paths = {key if "." in key else f"env.{key}": value for key, value in overrides.items()}
    return validate_config(apply_overrides(cfg.model_dump(), paths), "environment overrides")


def make_track_env(
    flavour: str | None = None,
    config: EvoConfig | str | Path | dict | None = None,
    render_mode: str | None = None,
    track: Any = None,
    **overrides: Any,
) -> TrackEnv:
    """Gymnasium entry point: a :class:`TrackEnv` of ``flavour`` (default: the config's)."""
    if flavour is not None:
        overrides["flavour"] = flavour
    return TrackEnv(resolve_config(config, **overrides), track=track, render_mode=render_mode)


def make_vec_track_env(
    num_envs: int | None = None,
    flavour: str | None = None,
    config: EvoConfig | str | Path | dict | None = None,
    render_mode: str | None = None,
    track: Any = None,
    **overrides: Any,
) -> VecTrackEnv:
    """Gymnasium vector entry point (``gymnasium.make_vec``): a :class:`VecTrackEnv` of ``num_envs`` cars."""
    if flavour is not None:
        overrides["flavour"] = flavour
    return VecTrackEnv(resolve_config(config, **overrides), n_envs=num_envs, track=track, render_mode=render_mode)


def get_environment(
    config: EvoConfig | str | Path | None = None, vector: bool = False, render_mode: str | None = None
) -> TrackEnv | VecTrackEnv:
    """A :class:`TrackEnv` (one car) or, with ``vector``, a :class:`VecTrackEnv` of ``env.n_envs`` cars."""
    cfg = resolve_config(config)
    if vector:
        return VecTrackEnv(cfg, render_mode=render_mode)
    return TrackEnv(cfg, render_mode=render_mode)


def register_envs() -> None:
    """Register the Gymnasium ids (idempotent)."""
    import gymnasium

    for flavour, env_id in ENV_IDS.items():
        if env_id in gymnasium.registry:
            continue
        gymnasium.register(
            env_id,
            entry_point="evo_rl.envs.factory:make_track_env",
            vector_entry_point="evo_rl.envs.factory:make_vec_track_env",
            kwargs={"flavour": flavour},
            disable_env_checker=False,
        )
    for flavour, env_id in TMNF_ENV_IDS.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(
                env_id,
                entry_point="evo_rl.games.tmnf.env:make_tmnf_env",
                vector_entry_point="evo_rl.games.tmnf.env:make_tmnf_vec_env",
                kwargs={"flavour": flavour},
                disable_env_checker=True,  # the checker would step a game with random actions
            )
    for flavour, env_id in TM2020_ENV_IDS.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(
                env_id,
                entry_point="evo_rl.games.realtime:make_realtime_env",
                kwargs={"flavour": flavour},
                disable_env_checker=True,  # the checker would step a live game with random actions
            )
