"""`VecTrackEnv`: N cars in one simulator world, stepped by one call, auto-reset in the same step."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from evo_rl.config import EvoConfig
from evo_rl.envs.core import TrackCore
from evo_rl.envs.observation import Observation
from evo_rl.envs.render import RENDER_MODES, Renderer
from evo_rl.envs.source import CarSource
from evo_rl.envs.spaces import action_space, observation_space
from evo_rl.errors import EvoError
from evo_rl.sim.track import Track


class VecTrackEnv(VectorEnv):
    """N cars on one track, stepped together (a Gymnasium vector environment).

    ``step(actions [N, 3])`` advances every car. An episode that ends (finish line
    or reward rule: ``terminated``; ``env.max_steps``: ``truncated``) restarts in
    the same call: the returned observation is the new episode's first one, the
    last one is in ``infos["final_obs"]`` (rows valid where ``infos["_final_obs"]``)
    and the last infos in ``infos["final_info"]``. With ``autoreset=False`` cars
    are only restarted by ``reset(options={"reset_mask": mask})``.
    """

    metadata: dict[str, Any] = {
        "autoreset_mode": AutoresetMode.SAME_STEP,
        "render_modes": list(RENDER_MODES),
        "render_fps": 20,
    }

    def __init__(
        self,
        cfg: EvoConfig | None = None,
        n_envs: int | None = None,
        track: Track | str | None = None,
        render_mode: str | None = None,
        *,
        autoreset: bool = True,
        source: CarSource | None = None,
        rewards: Any = None,
    ) -> None:
        self.cfg = cfg if cfg is not None else EvoConfig()
        if render_mode is not None and render_mode not in RENDER_MODES:
            raise EvoError(f"render_mode {render_mode!r} is not supported; use one of {list(RENDER_MODES)} or None")
        self.num_envs = int(n_envs if n_envs is not None else self.cfg.env.n_envs)
        if self.num_envs < 1:
            raise EvoError(f"n_envs must be at least 1, got {self.num_envs}")
        self.render_mode = render_mode
        self.autoreset = autoreset
        self.metadata = {
            **self.metadata,
            "autoreset_mode": AutoresetMode.SAME_STEP if autoreset else AutoresetMode.DISABLED,
            "render_fps": 1.0 / (source.dt if source is not None else self.cfg.sim.dt),
        }
        self.core = TrackCore(self.cfg, self.num_envs, track, source=source, rewards=rewards)
        self.single_observation_space = observation_space(self.cfg)
        self.single_action_space = action_space()
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._renderer = Renderer(self.core.track)
        self._started = False

    @property
    def world(self) -> CarSource:
        """The car source of the N cars (the simulator's ``World`` unless another was given)."""
        return self.core.world

    @property
    def max_steps(self) -> int:
        """Steps of an episode before it is truncated (:func:`~evo_rl.envs.core.step_limit`)."""
        return self.core.max_steps

    @property
    def track(self) -> Track | None:
        """The track model every car drives (None for a game source without one)."""
        return self.core.track

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Observation, dict[str, Any]]:
        """Restart all cars (or ``options["reset_mask"]`` [N] bool); ``seed`` seeds the start offsets."""
        if seed is not None and not isinstance(seed, (int, np.integer)):
            raise EvoError(f"VecTrackEnv.reset(seed=...) takes one int for all cars, got {type(seed).__name__}")
        if seed is None and self._np_random is None:
            seed = self.cfg.env.seed
        if seed is not None:
            self._np_random, self._np_random_seed = seeding.np_random(int(seed))
        mask = np.ones(self.num_envs, bool)
        if options and options.get("reset_mask") is not None:
            mask = np.asarray(options["reset_mask"], bool)
            if mask.shape != (self.num_envs,):
                raise EvoError(f"options['reset_mask'] must have shape ({self.num_envs},), got {mask.shape}")
        if not self._started and not mask.all():
            raise EvoError("the first reset() must restart every car; call reset() without reset_mask first")
        self.core.restart(mask, self.np_random)
        self._started = True
        return self.core.observation(), self.core.info()

    def step(self, actions: Any) -> tuple[Observation, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step all cars with ``actions`` [N, 3]; ended episodes restart in the same call."""
        if not self._started:
            raise EvoError("call reset() before step()")
        res = self.core.step(actions)
        infos = self.core.info()
        infos["reward_terms"] = res.terms
        infos["end_reason"] = res.end_reason
        done = res.terminated | res.truncated
        if self.autoreset and done.any():
            final_obs = self.core.observation()
            final_info = infos
            self.core.restart(done, self.np_random)
            infos = {
                **self.core.info(),
                "reward_terms": res.terms,
                "end_reason": res.end_reason,
                "final_obs": final_obs,
                "_final_obs": done.copy(),
                "final_info": final_info,
                "_final_info": done.copy(),
            }
        return self.core.observation(), res.reward, res.terminated, res.truncated, infos

    def close(self, **kwargs: Any) -> None:
        """Release the car source (a game's connections; the simulator holds none)."""
        self.core.source.close()

    def render(self) -> np.ndarray | None:
        """An RGB frame [H, W, 3] uint8 of ``render_mode`` (None when it is None)."""
        if self.render_mode is None:
            return None
        return self._renderer(self.core.world, self.render_mode)
