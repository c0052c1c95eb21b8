"""EVO RL: real-time reinforcement learning for TrackMania, with a built-in simulator."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from evo_rl.config import EvoConfig
    from evo_rl.envs import TrackEnv, VecTrackEnv

__version__ = "0.1.0"


def get_environment(
    config: EvoConfig | str | Path | None = None, vector: bool = False, render_mode: str | None = None
) -> TrackEnv | VecTrackEnv:
    """A one-car :class:`~evo_rl.envs.TrackEnv`, or with ``vector`` a :class:`~evo_rl.envs.VecTrackEnv`.

    ``config`` is an :class:`~evo_rl.config.EvoConfig`, a YAML path or None (defaults).
    """
    from evo_rl.envs import get_environment as build

    return build(config, vector=vector, render_mode=render_mode)
