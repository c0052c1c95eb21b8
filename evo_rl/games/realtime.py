"""The real-time environment: a game driven through rtgym's elastic clock, with the simulator's spaces.

:class:`TrackInterface` is an rtgym ``RealTimeGymInterface`` over a
:class:`~evo_rl.envs.core.TrackCore` whose car source is a game
(:class:`~evo_rl.games.tm2020.source.TM2020Source`). rtgym keeps TMRL's timing: a control step of
``sim.dt`` (50 ms), the observation captured ``game.obs_capture`` (40 ms) into it, the last
``env.act_buf_len`` actions appended to the observation, and the game paused (inputs released)
when an episode ends. Rewards and episode rules are the reward library's, as in the simulator, and
the observation spaces are the simulator's (:func:`evo_rl.envs.spaces.observation_space`).

- :func:`make_realtime_env` returns a Gymnasium environment (:class:`RealTimeTrackEnv`): the
  rtgym environment plus what the simulator's environments report (the same ``info`` keys,
  truncation instead of termination when the game stops answering, ``env.flat``).
- :class:`RealTimeVecEnv` is that environment as a one-car vector environment with same-step
  auto-reset, the interface :class:`~evo_rl.train.loop.Trainer` drives.

Step timing (period, jitter, rtgym's "time-step timed out" warnings) is measured by
:class:`StepTiming` and reported in ``info["timing"]``.
"""

from __future__ import annotations

import time
import warnings
from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding

from evo_rl.config import EvoConfig
from evo_rl.envs.core import END_LOST, END_TIME_LIMIT, TrackCore
from evo_rl.envs.source import CarSource
from evo_rl.envs.spaces import action_space, observation_space
from evo_rl.errors import EvoError
from evo_rl.games.errors import GameConnectionError, import_game_package


class StepTiming:
    """Periods between observations, s, over the last ``window`` steps, and time-outs.

    A step times out as in rtgym: it came more than ``timeout_factor`` control steps late, so rtgym
    gave up its elastic clock ("time-step timed out") and started a new one.
    """

    def __init__(self, period: float, timeout_factor: float = 1.0, window: int = 1000) -> None:
        self.period = period
        self.limit = period * (1.0 + timeout_factor)  # s between observations beyond which a step timed out
        self.periods: deque[float] = deque(maxlen=window)
        self.timeouts = 0
        self.steps = 0
        self._last: float | None = None

    def tick(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.periods.append(now - self._last)
            self.timeouts += now - self._last > self.limit
        self._last = now
        self.steps += 1

    def restart(self) -> None:
        """Episode boundaries pause the clock: the next period is not measured."""
        self._last = None

    def summary(self) -> dict[str, float]:
        """Mean period, p50 / p99 jitter (|period - nominal|) in ms, time-outs per 1000 steps."""
        if not self.periods:
            return {"period_ms": 0.0, "jitter_p50_ms": 0.0, "jitter_p99_ms": 0.0, "timeouts_per_1000": 0.0}
        d = np.asarray(self.periods)
        jitter = np.abs(d - self.period) * 1000.0
        return {
            "period_ms": float(d.mean() * 1000.0),
            "jitter_p50_ms": float(np.percentile(jitter, 50)),
            "jitter_p99_ms": float(np.percentile(jitter, 99)),
            "timeouts_per_1000": 1000.0 * self.timeouts / max(self.steps, 1),
        }


class TrackInterface:
    """rtgym's ``RealTimeGymInterface`` for a car source: ``send_control`` sends, the capture scores."""

    def __init__(self, cfg: EvoConfig, source: CarSource) -> None:
        if not source.realtime or source.n_envs != 1:
            raise EvoError(f"the real-time environment drives one real-time car, got source {source.name!r}")
        inner = cfg.model_copy(deep=True)
        inner.env.act_buf_len = 0  # rtgym appends the action buffer itself
        inner.env.flat = False
        self.cfg = cfg
        self.core = TrackCore(inner, 1, source=source)
        self.source = source
        self.rng = np.random.default_rng(cfg.env.seed)
        self._sent: np.ndarray | None = None  # the action of the running step
        self.last_step: Any = None  # the StepResult of the last capture
        self.lost: str | None = None  # why the game stopped answering, in the running episode
        self.error: BaseException | None = None  # an error on rtgym's step thread, raised by the wrapper
        self.observed_at = 0.0  # time.monotonic() when the last observation was built

    # rtgym's interface --------------------------------------------------------

    def get_observation_space(self) -> spaces.Tuple:
        space = observation_space(self.core.cfg)
        assert isinstance(space, spaces.Tuple)
        return space

    def get_action_space(self) -> spaces.Box:
        return action_space()

    def get_default_action(self) -> np.ndarray:
        return np.zeros(3, np.float32)

    def send_control(self, control: Any) -> None:
        if self.lost is not None or self.error is not None:
            return
        try:
            self._sent = self.core.apply(np.asarray(control, np.float32).reshape(1, 3))
        except GameConnectionError as e:
            self.lost = str(e)
        except BaseException as e:  # noqa: BLE001 - on rtgym's step thread: re-raised by the wrapper
            self.error = e

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[list, dict]:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.lost = None
        self._sent = None
        deadline = time.monotonic() + self.cfg.game.reconnect_timeout
        while True:
            try:
                self.core.restart(np.ones(1, bool), self.rng)
                return self._obs(), self._info()
            except GameConnectionError as e:
                if time.monotonic() > deadline:
                    raise GameConnectionError(
                        f"the game did not come back within game.reconnect_timeout = "
                        f"{self.cfg.game.reconnect_timeout:g} s: {e}"
                    ) from e

    def get_obs_rew_terminated_info(self) -> tuple[list, float, bool, dict]:
        """Runs on rtgym's step thread: an exception there would leave rtgym waiting forever, so every
        error ends the episode and :class:`RealTimeTrackEnv` raises it on the caller's thread."""
        try:
            return self._capture()
        except BaseException as e:  # noqa: BLE001 - re-raised by RealTimeTrackEnv.step
            self.error = e
            return self._obs(), 0.0, True, {"end_reason": "error"}

    def _capture(self) -> tuple[list, float, bool, dict]:
        if self.lost is None and self._sent is not None:
            try:
                self.last_step = self.core.settle(self._sent)
                self.observed_at = time.monotonic()
            except GameConnectionError as e:
                self.lost = str(e)
        if self.lost is not None:  # end the episode; the wrapper reports it as truncated, not as a lap
            info = {**self._info(), "end_reason": END_LOST, "game_error": self.lost, "reward_terms": {}}
            return self._obs(), 0.0, True, info
        res = self.last_step
        info = {**self._info(), "end_reason": str(res.end_reason[0]), "reward_terms": _row(res.terms)}
        if bool(res.truncated[0]):
            info["end_reason"] = END_TIME_LIMIT
        return self._obs(), float(res.reward[0]), bool(res.terminated[0] or res.truncated[0]), info

    def wait(self) -> None:
        """Between episodes: let go of the controls (the car rolls to a stop), as TMRL does."""
        try:
            self.source.step(np.zeros((1, 3), np.float32))
        except GameConnectionError:
            pass

    def render(self) -> None:
        pass

    # helpers ------------------------------------------------------------------

    def _obs(self) -> list:
        return [part[0] for part in self.core.observation()]

    def _info(self) -> dict[str, Any]:
        return _row(self.core.info())


def _row(batched: dict[str, Any]) -> dict[str, Any]:
    """Car 0 of batched arrays, as Python scalars (arrays for vectors such as ``position``)."""
    return {k: (v[0].item() if np.ndim(v) == 1 else np.asarray(v)[0].copy()) for k, v in batched.items()}


class RealTimeTrackEnv(gym.Wrapper):
    """The rtgym environment over a :class:`TrackInterface`, reporting like the simulator's environments.

    An episode the game cut (it stopped answering) is *truncated*, ``end_reason`` ``"game_lost"``, and
    ``info["game_error"]`` says what to check; the next ``reset`` waits for the game to come back.
    """

    def __init__(self, cfg: EvoConfig, source: CarSource) -> None:
        rtgym = import_game_package("rtgym", "the real-time environment")
        self.cfg = cfg
        self.interface = TrackInterface(cfg, source)
        step = cfg.sim.dt / cfg.game.time_scale  # real seconds per control step
        config = dict(rtgym.DEFAULT_CONFIG_DICT)
        config.update(
            interface=lambda: self.interface,
            time_step_duration=step,
            start_obs_capture=min(cfg.game.obs_capture / cfg.game.time_scale, step),
            time_step_timeout_factor=cfg.game.timeout_factor,
            ep_max_length=self.interface.core.max_steps,
            act_buf_len=cfg.env.act_buf_len,
            act_in_obs=True,
            reset_act_buf=True,
            wait_on_done=True,
            benchmark=False,
        )
        # rtgym warns from its timing thread on every time-out; StepTiming counts them (info["timing"])
        warnings.filterwarnings("ignore", message="Time-step timed out", category=UserWarning)
        # rtgym's RealTimeEnv: one thread per control step, joined by the next step (nothing outlives close())
        super().__init__(rtgym.envs.RealTimeEnv(config))
        self.timing = StepTiming(step, cfg.game.timeout_factor)
        self.observation_space = observation_space(cfg)
        self.action_space = action_space()
        self.metadata = {"render_modes": [], "render_fps": 1.0 / cfg.sim.dt}

    @property
    def source(self) -> CarSource:
        return self.interface.source

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        obs, info = self.env.reset(seed=seed, options=options)
        self.timing.restart()
        return self._format(obs), info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        a = np.asarray(action, np.float32).reshape(3)
        obs, reward, terminated, truncated, info = self.env.step(a)
        if self.interface.error is not None:
            error, self.interface.error = self.interface.error, None
            raise error
        self.timing.tick()
        reason = info.get("end_reason", "")
        if reason in (END_LOST, END_TIME_LIMIT):
            terminated, truncated = False, True
        elif truncated and not terminated:
            info["end_reason"] = END_TIME_LIMIT
        info["timing"] = self.timing.summary()
        return self._format(obs), float(reward), bool(terminated), bool(truncated), info

    def _format(self, obs: tuple) -> Any:
        parts = [np.asarray(x, dtype=s.dtype).reshape(s.shape) for x, s in zip(obs, _parts(self.cfg), strict=True)]
        if self.cfg.env.flat:
            return np.concatenate([x.ravel().astype(np.float32) for x in parts])
        return tuple(parts)

    def close(self) -> None:
        try:
            self.env.unwrapped.stop()  # type: ignore[attr-defined]  # joins rtgym's step thread
        finally:
            self.interface.source.close()


def _parts(cfg: EvoConfig) -> list[spaces.Box]:
    tuple_cfg = cfg.model_copy(deep=True)
    tuple_cfg.env.flat = False
    space = observation_space(tuple_cfg)
    assert isinstance(space, spaces.Tuple)
    return list(space.spaces)  # type: ignore[arg-type]


class RealTimeVecEnv:
    """A :class:`RealTimeTrackEnv` as a one-car vector environment (same-step auto-reset, batched infos).

    Quacks like :class:`~evo_rl.envs.vector.VecTrackEnv` for the trainer and the evaluator.
    """

    num_envs = 1

    def __init__(self, env: RealTimeTrackEnv, autoreset: bool = True) -> None:
        self.env = env
        self.cfg = env.cfg
        self.autoreset = autoreset
        self.single_observation_space = env.observation_space
        self.single_action_space = env.action_space
        self.observation_space = gym.vector.utils.batch_space(env.observation_space, 1)
        self.action_space = gym.vector.utils.batch_space(env.action_space, 1)
        self.np_random, _ = seeding.np_random(self.cfg.env.seed)
        self.track = env.interface.core.track
        self.max_steps = env.interface.core.max_steps

    @property
    def world(self) -> CarSource:
        return self.env.source

    @property
    def timing(self) -> StepTiming:
        return self.env.timing

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        if seed is not None:
            self.np_random, _ = seeding.np_random(int(seed))
        obs, info = self.env.reset(seed=seed)
        return _batch(obs), _batch_info(info)

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict]:
        obs, reward, terminated, truncated, info = self.env.step(np.asarray(actions, np.float32).reshape(3))
        infos = _batch_info(info)
        done = np.array([terminated or truncated])
        if done[0] and self.autoreset:
            final_obs = _batch(obs)
            obs, new_info = self.env.reset()
            infos = {
                **_batch_info(new_info),
                "reward_terms": infos["reward_terms"],
                "end_reason": infos["end_reason"],
                "final_obs": final_obs,
                "_final_obs": done.copy(),
                "final_info": infos,
                "_final_info": done.copy(),
            }
        return _batch(obs), np.array([reward], np.float32), np.array([terminated]), np.array([truncated]), infos

    def close(self) -> None:
        self.env.close()


def _batch(obs: Any) -> Any:
    if isinstance(obs, np.ndarray):
        return obs[None]
    return tuple(np.asarray(x)[None] for x in obs)


def _batch_info(info: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in info.items():
        if k == "reward_terms":
            out[k] = {name: np.array([x], np.float32) for name, x in v.items()}
        elif k == "end_reason":
            out[k] = np.array([v], dtype=str)
        elif k in ("timing", "game_error"):
            out[k] = v
        else:
            out[k] = np.asarray(v)[None]
    out.setdefault("end_reason", np.array([""], dtype=str))
    out.setdefault("reward_terms", {})
    return out


def make_realtime_env(
    flavour: str | None = None, config: Any = None, source: CarSource | None = None, **overrides: Any
) -> RealTimeTrackEnv:
    """Gymnasium entry point (``EvoRL-TM2020-*-v0``): the real-time TrackMania 2020 environment of ``flavour``.

    ``config`` as :func:`evo_rl.envs.factory.resolve_config`; without ``source`` one is opened from
    ``cfg.game`` (:func:`evo_rl.games.tm2020.source.open_source`).
    """
    from evo_rl.envs.factory import resolve_config
    from evo_rl.games.tm2020.source import open_source

    if flavour is not None:
        overrides["flavour"] = flavour
    cfg = resolve_config(config, **overrides)
    cfg.env.n_envs = 1
    if source is not None:
        return RealTimeTrackEnv(cfg, source)
    opened = open_source(cfg)
    try:
        return RealTimeTrackEnv(cfg, opened)
    except BaseException:
        opened.close()  # a refused config must not keep the game's one telemetry connection
        raise


def open_vec_env(cfg: EvoConfig) -> RealTimeVecEnv:
    """The game ``cfg.env.source`` names as a one-car vector environment (the trainer's)."""
    if cfg.env.source != "tm2020":
        raise EvoError(f"env.source {cfg.env.source!r} is not a real-time game; known: tm2020")
    return RealTimeVecEnv(make_realtime_env(config=cfg))
