"""Start-up checks of ``evo-rl train``: what a configuration needs, checked before a run folder exists.

A validated :class:`~evo_rl.config.EvoConfig` can still fail to train: its track
may not exist, a reward term may not import or may need data the simulator lacks,
the device may be absent, the replay memory may not fit in RAM. The Trainer would
find these out after the run folder was created, leaving a folder that blocks the
run's name. :func:`check_startup` finds them first, cheaply (it builds the track
and the reward terms, imports custom components, and computes sizes; it steps
nothing and allocates no memory), and reports all of them in one
:class:`~evo_rl.errors.ConfigError`. ``evo-rl config show`` runs the same checks.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces
from pydantic import ValidationError

from evo_rl.config import EvoConfig
from evo_rl.errors import ConfigError, EvoError

BUILTIN_ON_POLICY = {"ppo"}
"""Built-in algorithms that train from their own rollout instead of the replay memory."""


def check_startup(cfg: EvoConfig, new_run: bool = True) -> None:
    """Raise :class:`ConfigError` listing every reason ``cfg`` cannot start training here.

    ``new_run``: also check that ``train.runs_dir`` exists or can be created (a
    resumed run already has its folder).
    """
    problems: list[str] = []

    def check(fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except EvoError as e:
            problems.append(str(e))
            return None

    track = check(_track, cfg)
    if track is not None or (cfg.env.track is None and cfg.env.source != "sim"):
        check(_rewards, cfg, track)
    check(_reward_discount, cfg)
    agent_class = check(_agent_class, cfg)
    device = check(_device, cfg)
    if device is not None:
        check(_amp, cfg, device)
        if agent_class is not None:
            on_policy = agent_class.on_policy  # OnPolicyAgent / OffPolicyAgent (evo_rl.algos.agent_class)
            check(_memory_fits, cfg, on_policy, device)
    if new_run:
        check(check_runs_dir, cfg.train.runs_dir)
    if problems:
        if len(problems) == 1:
            raise ConfigError(f"cannot start training: {problems[0]}")
        raise ConfigError("cannot start training:\n" + "\n".join(f"- {p}" for p in problems))


# --------------------------------------------------------------------------- environment


def _track(cfg: EvoConfig) -> Any:
    from evo_rl.sim.catalog import get_track

    if cfg.env.track is None:
        if cfg.env.source == "sim":
            raise ConfigError("env.track is null, but the simulator needs a track: name one (`evo-rl tracks list`)")
        return None
    try:
        return get_track(cfg.env.track)
    except EvoError as e:
        raise ConfigError(f"env.track = {cfg.env.track!r}: {e}") from None


def _rewards(cfg: EvoConfig, track: Any) -> None:
    """Build the reward terms as the environment will: names, imports, parameters, needs, reference."""
    from evo_rl.envs.core import FLAVOUR_FIX
    from evo_rl.envs.observation import flavour_needs
    from evo_rl.envs.source import require
    from evo_rl.rewards import RewardManager

    name, provides = source_fields(cfg, track is not None)
    require(name, provides, flavour_needs(cfg), f"env.flavour: {cfg.env.flavour}", FLAVOUR_FIX)
    RewardManager(cfg.reward, cfg.episode, track, cfg.env.n_envs, source=name, provides=provides)


def source_fields(cfg: EvoConfig, has_track: bool) -> tuple[str, frozenset[str]]:
    """The name of the car source ``env.source`` names and what it provides, without opening it."""
    if cfg.env.source == "sim":
        from evo_rl.sim.world import World

        return World.name, World.provides
    if cfg.env.source == "tmnf":
        from evo_rl.games.tmnf import source as tmnf

        return tmnf.TMNFSource.name, tmnf.provides(cfg, has_track, virtual=cfg.game.input == "virtual")
    from evo_rl.games.tm2020.source import provides, source_name

    return source_name(cfg), provides(cfg, has_track)


def _algo_gamma(cfg: EvoConfig) -> tuple[str, float] | None:
    """``(field path, value)`` of the configured built-in algorithm's discount; None for a custom agent."""
    name = cfg.algo.name
    if name not in ("sac", "redq", "ppo"):
        return None
    return f"algo.{name}.gamma", float(getattr(cfg.algo, name).gamma)


def _reward_discount(cfg: EvoConfig) -> None:
    """``potential_progress`` shapes the reward without changing the best policy only with the algorithm's gamma."""
    from evo_rl.rewards.base import TERMS

    algo = _algo_gamma(cfg)
    term_cls = TERMS.get("potential_progress")
    if algo is None or term_cls is None:
        return
    field, gamma = algo
    for i, term in enumerate(cfg.reward):
        if term.term != "potential_progress":
            continue
        given = term.params.get("gamma")
        try:
            value = float(term_cls.Params(**term.params).model_dump()["gamma"])
        except ValidationError:  # bad params: the reward check reports them
            continue
        if not math.isclose(value, gamma, rel_tol=0.0, abs_tol=1e-12):
            origin = "" if given is not None else " (the term's default)"
            raise ConfigError(
                f"reward[{i}] (potential_progress): params.gamma is {value}{origin} but the algorithm discounts "
                f"with {field} = {gamma}; potential-based shaping needs the same discount (docs/rewards.md), "
                f"so set reward[{i}].params.gamma: {gamma}"
            )


# --------------------------------------------------------------------------- agent and device


def _agent_class(cfg: EvoConfig) -> Any:
    from evo_rl.algos.factory import agent_class

    return agent_class(cfg.algo.name)  # checked against the agent protocols


def _device(cfg: EvoConfig) -> Any:
    """The torch device ``train.device`` resolves to, refusing devices this machine lacks."""
    import torch

    from evo_rl.algos.base import resolve_device

    text = cfg.train.device
    try:
        device = resolve_device(text)
    except (RuntimeError, ValueError) as e:
        raise ConfigError(
            f"train.device = {text!r} is not a torch device ({e}); use auto, cpu, cuda or cuda:N"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            built = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "built without CUDA"
            raise ConfigError(
                f"train.device = {text!r}, but torch finds no CUDA device on this machine (torch {torch.__version__}, "
                f"{built}); set train.device: cpu, or auto to use CUDA where there is one"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ConfigError(
                f"train.device = {text!r}, but this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}"
            )
    elif device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError(f"train.device = {text!r}, but torch has no MPS device here; set train.device: cpu")
    return device


def _amp(cfg: EvoConfig, device: Any) -> None:
    if cfg.algo.amp and device.type not in ("cuda", "cpu"):
        raise ConfigError(
            f"algo.amp = true needs a CUDA device or the CPU, but train.device = {cfg.train.device!r} runs on "
            f"{device}; set algo.amp to null"
        )


# --------------------------------------------------------------------------- memory


def _memory_fits(cfg: EvoConfig, on_policy: bool, device: Any) -> None:
    """The replay memory (off-policy) or the rollout (PPO on the CPU) fits in the RAM available now."""
    from evo_rl.envs.spaces import observation_space
    from evo_rl.memory.replay import available_memory

    space = observation_space(cfg)
    n = cfg.env.n_envs
    if on_policy:
        if cfg.algo.name not in BUILTIN_ON_POLICY or device.type != "cpu":
            return
        steps = cfg.algo.ppo.n_steps // n * n
        parts = space.spaces if isinstance(space, spaces.Tuple) else (space,)
        obs = sum(math.prod(p.shape or ()) * np.dtype(p.dtype).itemsize for p in parts)
        need = steps * (obs + 3 * 4 + 6 * 4)  # observation, action, log-prob, value, reward, done, advantage, return
        what, field, amount = "the PPO rollout", "algo.ppo.n_steps", cfg.algo.ppo.n_steps
    else:
        from evo_rl.memory import ObsLayout, ReplayMemory

        mem = cfg.memory
        layout = ObsLayout.from_space(space, cfg.env.hist_len, cfg.env.act_buf_len, cfg.env.flavour)
        rows = -(-mem.capacity // n)  # steps kept per car, as ReplayMemory rounds them
        min_rows = layout.lookback + mem.nstep + 2
        if rows < min_rows:
            raise ConfigError(
                f"memory.capacity = {mem.capacity} is too small for env.n_envs = {n} cars with memory.nstep = "
                f"{mem.nstep} and a history of {layout.lookback} steps; set memory.capacity to at least "
                f"{min_rows * n}"
            )
        need = ReplayMemory.nbytes(layout, rows * n, mem.prioritized)
        what, field, amount = "the replay memory", "memory.capacity", mem.capacity
    avail = available_memory()
    if avail is not None and need > avail:
        raise ConfigError(
            f"{field} = {amount}: {what} needs {_gib(need)} of RAM for {cfg.env.flavour} observations of "
            f"env.n_envs = {n} cars, but only {_gib(avail)} is available; lower {field} to at most "
            f"{max(1, int(amount * avail / need))}"
        )


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


# --------------------------------------------------------------------------- run folder


def check_runs_dir(runs_dir: str | Path) -> None:
    """Raise :class:`ConfigError` unless ``train.runs_dir`` is a writable folder or can be created."""
    p = Path(runs_dir)
    if p.exists():
        if not p.is_dir():
            raise ConfigError(f"train.runs_dir = {str(runs_dir)!r} is a file, not a folder; choose another runs_dir")
        if not os.access(p, os.W_OK | os.X_OK):
            raise ConfigError(
                f"train.runs_dir = {str(runs_dir)!r}: the folder is not writable; choose another runs_dir"
            )
        return
    parent = p.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(
            f"train.runs_dir = {str(runs_dir)!r} cannot be created: {parent} is a file; choose another runs_dir"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(
            f"train.runs_dir = {str(runs_dir)!r} cannot be created: {parent} is not writable; choose another runs_dir"
        )
