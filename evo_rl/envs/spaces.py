"""Observation and action spaces of the EVO RL environments (TMRL's layouts).

| flavour          | tuple, in order                                                   |
|------------------|-------------------------------------------------------------------|
| `lidar`          | speed (1,), LIDAR (hist_len, beams), act_buf_len x action (3,)     |
| `lidar_progress` | speed (1,), progress (1,), LIDAR (hist_len, beams), actions        |
| `full`           | speed (1,), gear (1,), rpm (1,), images (hist_len, H, W), actions  |

With ``env.lookahead_points`` = P > 0 a course preview (2P,) comes just before the actions: the
road's heading relative to the car at P points ahead, then its curvature there
(:mod:`evo_rl.envs.lookahead`). With ``env.flat`` the same values are concatenated, in that
order, into one float32 Box.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from evo_rl.config import EvoConfig
from evo_rl.errors import EvoError

MAX_SPEED_KMH = 1000.0  # upper bound of the speed observation, km/h
MAX_GEAR = 6.0  # upper bound of the gear observation
TIRES_BEAMS = 19  # beams of the `tires` LIDAR layout


def action_space() -> spaces.Box:
    """``[gas, brake, steer]`` in ``[-1, 1]``, float32."""
    return spaces.Box(-1.0, 1.0, (3,), np.float32)


def lidar_beams(cfg: EvoConfig) -> int:
    """Number of LIDAR beams the configured kind and layout produce (TMRL's screen LIDAR: always 19)."""
    if cfg.lidar.kind == "tmrl":
        from evo_rl.sim.screen_lidar import BEAMS

        return BEAMS
    return TIRES_BEAMS if cfg.lidar.layout == "tires" else cfg.lidar.beams


def lidar_high(cfg: EvoConfig) -> float:
    """The largest LIDAR value: ``lidar.range`` m (geometric) or the longest screen beam, px (tmrl)."""
    if cfg.lidar.kind == "tmrl":
        from evo_rl.sim.screen_lidar import max_distance

        return max_distance()
    return cfg.lidar.range


def tuple_observation_space(cfg: EvoConfig) -> spaces.Tuple:
    """The TMRL-style tuple observation space of ``cfg.env.flavour``."""
    env = cfg.env
    scalar = lambda high: spaces.Box(0.0, high, (1,), np.float32)  # noqa: E731
    parts: list[spaces.Box] = [scalar(MAX_SPEED_KMH)]
    if env.flavour == "full":
        parts += [scalar(MAX_GEAR), scalar(cfg.car.max_rpm)]
        parts.append(spaces.Box(0, 255, (env.hist_len, cfg.camera.height, cfg.camera.width), np.uint8))
    else:
        if env.flavour == "lidar_progress":
            parts.append(scalar(1.0))
        parts.append(spaces.Box(0.0, lidar_high(cfg), (env.hist_len, lidar_beams(cfg)), np.float32))
    if env.lookahead_points:
        from evo_rl.envs.lookahead import MAX_CURVATURE

        p = env.lookahead_points
        high = np.concatenate([np.full(p, np.pi), np.full(p, MAX_CURVATURE)]).astype(np.float32)
        parts.append(spaces.Box(-high, high, (2 * p,), np.float32))
    parts += [action_space() for _ in range(env.act_buf_len)]
    return spaces.Tuple(parts)


def flatten_box(space: spaces.Tuple) -> spaces.Box:
    """One float32 Box holding every part of ``space`` flattened, in tuple order."""
    boxes = [s for s in space.spaces if isinstance(s, spaces.Box)]
    if len(boxes) != len(space.spaces):
        raise EvoError("flatten_box needs a Tuple of Box spaces")
    low = np.concatenate([np.asarray(b.low, np.float32).ravel() for b in boxes])
    high = np.concatenate([np.asarray(b.high, np.float32).ravel() for b in boxes])
    return spaces.Box(low, high, dtype=np.float32)


def observation_space(cfg: EvoConfig) -> spaces.Tuple | spaces.Box:
    """The single-car observation space configured by ``cfg.env``."""
    space = tuple_observation_space(cfg)
    return flatten_box(space) if cfg.env.flat else space
