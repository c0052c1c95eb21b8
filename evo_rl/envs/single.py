"""`TrackEnv`: one car on a track, a plain Gymnasium environment (no auto-reset)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from evo_rl.config import EvoConfig
from evo_rl.envs.core import TrackCore
from evo_rl.envs.observation import Observation
from evo_rl.envs.render import RENDER_MODES, Renderer
from evo_rl.envs.source import CarSource
from evo_rl.envs.spaces import action_space, observation_space
from evo_rl.errors import EvoError
from evo_rl.sim.track import Track


def _row(obs: Observation) -> Observation:
    """Car 0 of a batched observation."""
    return obs[0] if isinstance(obs, np.ndarray) else tuple(part[0] for part in obs)


def _row_info(info: dict[str, Any]) -> dict[str, Any]:
    """Car 0 of batched infos, as Python scalars (arrays for vectors such as ``position``)."""
    out: dict[str, Any] = {}
    for key, value in info.items():
        if isinstance(value, dict):
            out[key] = _row_info(value)
        elif value.ndim > 1:
            out[key] = value[0].copy()
        else:
            out[key] = value[0].item()
    return out


class TrackEnv(gym.Env):
    """One car driving a track of the built-in simulator.

    Observations follow ``cfg.env.flavour`` (TMRL's layouts, see
    :mod:`evo_rl.envs.spaces`); actions are ``[gas, brake, steer]`` in ``[-1, 1]``.
    After ``terminated`` or ``truncated`` call ``reset()``.
    """

    metadata: dict[str, Any] = {"render_modes": list(RENDER_MODES), "render_fps": 20}

    def __init__(
        self,
        cfg: EvoConfig | None = None,
        track: Track | str | None = None,
        render_mode: str | None = None,
        *,
        source: CarSource | None = None,
        rewards: Any = None,
    ) -> None:
        self.cfg = cfg if cfg is not None else EvoConfig()
        if render_mode is not None and render_mode not in RENDER_MODES:
            raise EvoError(f"render_mode {render_mode!r} is not supported; use one of {list(RENDER_MODES)} or None")
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": 1.0 / (source.dt if source is not None else self.cfg.sim.dt)}
        self.core = TrackCore(self.cfg, 1, track, source=source, rewards=rewards)
        self.observation_space = observation_space(self.cfg)
        self.action_space = action_space()
        self._renderer = Renderer(self.core.track)
        self._ended = True

    @property
    def world(self) -> CarSource:
        """The car source (the simulator's ``World`` unless another was given)."""
        return self.core.world

    @property
    def track(self) -> Track | None:
        """The track the car drives."""
        return self.core.track

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Observation, dict]:
        """Put the car on the start line; ``seed`` seeds the random start offset (``env.seed`` at first)."""
        if seed is None and self._np_random is None:
            seed = self.cfg.env.seed
        super().reset(seed=seed)
        self.core.restart(np.ones(1, bool), self.np_random)
        self._ended = False
        return _row(self.core.observation()), _row_info(self.core.info())

    def step(self, action: Any) -> tuple[Observation, float, bool, bool, dict[str, Any]]:
        """Apply ``action`` [3] for one control step (50 ms by default)."""
        if self._ended:
            raise EvoError("the episode has ended (or never started); call reset() before step()")
        a = np.asarray(action, dtype=np.float32)
        if a.shape != (3,):
            raise EvoError(f"action must have shape (3,) as [gas, brake, steer], got {a.shape}")
        res = self.core.step(a[None])
        info = self.core.info()
        info["reward_terms"] = res.terms
        info["end_reason"] = res.end_reason
        terminated, truncated = bool(res.terminated[0]), bool(res.truncated[0])
        self._ended = terminated or truncated
        return _row(self.core.observation()), float(res.reward[0]), terminated, truncated, _row_info(info)

    def close(self) -> None:
        """Release the car source (a game's connections; the simulator holds none)."""
        self.core.source.close()

    def render(self) -> np.ndarray | None:
        """An RGB frame [H, W, 3] uint8 of ``render_mode`` (None when it is None)."""
        if self.render_mode is None:
            return None
        return self._renderer(self.core.world, self.render_mode)
