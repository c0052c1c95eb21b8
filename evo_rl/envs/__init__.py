"""Gymnasium environments over the built-in simulator.

Importing this package registers ``EvoRL-Lidar-v0``, ``EvoRL-LidarProgress-v0`` and
``EvoRL-Full-v0``: ``gymnasium.make("EvoRL-Lidar-v0", config=cfg, hist_len=2)``
builds a :class:`TrackEnv`, ``gymnasium.make_vec(..., num_envs=16)`` a :class:`VecTrackEnv`.
"""

from evo_rl.envs.factory import ENV_IDS, get_environment, register_envs, resolve_config
from evo_rl.envs.single import TrackEnv
from evo_rl.envs.vector import VecTrackEnv

register_envs()

__all__ = ["ENV_IDS", "TrackEnv", "VecTrackEnv", "get_environment", "register_envs", "resolve_config"]
