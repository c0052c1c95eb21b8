"""``evo-rl bench learner``: gradient updates per second of SAC, REDQ-SAC or PPO.

Observations are TM20LIDAR-sized (speed ``(1,)``, LIDAR history ``(4, 19)``,
two previous actions ``(3,)``: 83 numbers), networks 256x256 MLPs, batches of
256 sampled from a filled in-memory pool of random transitions. Stable-Baselines3's
SAC update (``SAC.train`` on a filled ``ReplayBuffer``, same sizes, flat 83-number
observations, float32) is measured in the same run as a reference. For PPO,
``updates_per_s`` counts minibatch gradient steps. ``amp`` runs EVO RL's agents in mixed
precision (``algo.amp``: bfloat16 on the CPU, float16 on CUDA); by default as ``algo.amp: null``
(on with CUDA only). SB3 runs in float32 (it has no mixed precision).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

HIDDEN = [256, 256]
POOL = 20_000


def _lidar_spaces():
    from gymnasium import spaces

    obs_space = spaces.Tuple(
        (
            spaces.Box(0.0, 1000.0, (1,), np.float32),  # speed, km/h
            spaces.Box(0.0, 100.0, (4, 19), np.float32),  # LIDAR history, m
            spaces.Box(-1.0, 1.0, (3,), np.float32),  # previous actions, oldest first
            spaces.Box(-1.0, 1.0, (3,), np.float32),
        )
    )
    act_space = spaces.Box(-1.0, 1.0, (3,), np.float32)
    return obs_space, act_space


def _measure(parts: dict[str, tuple[Callable[[], Any], int]], seconds: float, rounds: int = 5) -> dict[str, float]:
    """Updates per second of each part: ``step()`` does ``per_call`` updates.

    The parts are timed in turn for ``rounds`` rounds of ``seconds / rounds`` each,
    so a load change on the machine affects them alike; the median round counts.
    """
    for step, _ in parts.values():  # warm-up
        step()
    rates: dict[str, list[float]] = {name: [] for name in parts}
    for _ in range(rounds):
        for name, (step, per_call) in parts.items():
            calls = 0
            start = time.perf_counter()
            while True:
                step()
                calls += 1
                elapsed = time.perf_counter() - start
                if elapsed >= seconds / rounds:
                    break
            rates[name].append(calls * per_call / elapsed)
    return {name: float(np.median(r)) for name, r in rates.items()}


def _replay_sampler(obs_space, batch_size: int, device):
    """A function returning a random :class:`~evo_rl.memory.Batch` from a preallocated pool."""
    import torch

    from evo_rl.memory import Batch

    gen = np.random.default_rng(0)
    obs = tuple(
        torch.as_tensor(gen.uniform(0.0, p.high.max(), (POOL, *p.shape)).astype(np.float32), device=device)
        for p in obs_space.spaces
    )  # [POOL, ...] each
    next_obs = tuple(torch.roll(o, 1, dims=0) for o in obs)
    act = torch.as_tensor(gen.uniform(-1, 1, (POOL, 3)).astype(np.float32), device=device)  # [POOL, 3]
    rew = torch.as_tensor(gen.normal(size=POOL).astype(np.float32), device=device)  # [POOL]
    terminated = torch.as_tensor((gen.random(POOL) < 0.01).astype(np.float32), device=device)  # [POOL]

    def sample() -> Batch:  # discount (gamma), weights (ones) and indices left out
        idx = torch.randint(POOL, (batch_size,), device=device)
        return Batch(
            obs=tuple(o[idx] for o in obs),
            act=act[idx],
            rew=rew[idx],
            next_obs=tuple(o[idx] for o in next_obs),
            terminated=terminated[idx],
        )

    return sample


def _off_policy_step(name: str, batch_size: int, device, amp: bool | None = None) -> tuple[Callable[[], Any], int]:
    from evo_rl.algos import REDQAgent, SACAgent
    from evo_rl.config import REDQConfig, SACConfig

    obs_space, act_space = _lidar_spaces()
    if name == "sac":
        agent = SACAgent(obs_space, act_space, SACConfig(hidden=HIDDEN), device=device, amp=amp)
    else:
        agent = REDQAgent(obs_space, act_space, REDQConfig(hidden=HIDDEN), device=device, amp=amp)
    sample = _replay_sampler(obs_space, batch_size, agent.device)
    # REDQ updates the policy every G-th call: time whole cycles of G updates
    per_call = agent.config.q_updates_per_policy_update if name == "redq" else 1

    def step() -> None:
        for _ in range(per_call):
            agent.update(sample())

    return step, per_call


def _ppo_step(batch_size: int, device, amp: bool | None = None) -> tuple[Callable[[], Any], int]:
    import torch

    from evo_rl.algos import PPOAgent
    from evo_rl.config import PPOConfig

    obs_space, act_space = _lidar_spaces()
    n_envs, n_steps = 16, 4096
    agent = PPOAgent(
        obs_space, act_space, PPOConfig(hidden=HIDDEN, batch_size=batch_size, n_steps=n_steps, epochs=1), device, amp
    )
    rollout = agent.make_rollout(n_envs)
    gen = np.random.default_rng(0)
    for _ in range(rollout.n_steps):
        obs = tuple(gen.uniform(0.0, p.high.max(), (n_envs, *p.shape)).astype(np.float32) for p in obs_space.spaces)
        step = agent.policy_step(obs)
        terminated = gen.random(n_envs) < 0.01
        truncated = np.zeros(n_envs, bool)
        rollout.add(obs, step.raw_action, step.log_prob, step.value, gen.normal(size=n_envs), terminated, truncated)
    rollout.compute_returns_and_advantages(torch.zeros(n_envs))
    return (lambda: agent.update(rollout)), -(-n_steps // batch_size)


def _sb3_sac_step(batch_size: int, device) -> tuple[Callable[[], Any], int]:
    import gymnasium as gym
    from stable_baselines3 import SAC
    from stable_baselines3.common.logger import Logger

    obs_space, act_space = _lidar_spaces()
    dim = sum(int(np.prod(p.shape)) for p in obs_space.spaces)

    class FlatLidarEnv(gym.Env):
        observation_space = gym.spaces.Box(-np.inf, np.inf, (dim,), np.float32)
        action_space = act_space

        def reset(self, *, seed=None, options=None):
            return np.zeros(dim, np.float32), {}

        def step(self, action):
            return np.zeros(dim, np.float32), 0.0, False, False, {}

    model = SAC(
        "MlpPolicy",
        FlatLidarEnv(),
        buffer_size=POOL,
        batch_size=batch_size,
        learning_starts=0,
        policy_kwargs={"net_arch": HIDDEN},
        device=device,
        verbose=0,
    )
    model.set_logger(Logger(folder=None, output_formats=[]))  # no output (and no log folder)
    rb = model.replay_buffer
    gen = np.random.default_rng(0)
    rb.observations[:] = gen.uniform(0, 1, rb.observations.shape)
    rb.next_observations[:] = gen.uniform(0, 1, rb.next_observations.shape)
    rb.actions[:] = gen.uniform(-1, 1, rb.actions.shape)
    rb.rewards[:] = gen.normal(size=rb.rewards.shape)
    rb.dones[:] = gen.random(rb.dones.shape) < 0.01
    rb.full = True
    return (lambda: model.train(gradient_steps=10, batch_size=batch_size)), 10


def run(
    *,
    algo: str = "sac",
    seconds: float = 10.0,
    batch: int = 256,
    threads: int = 0,
    device: str = "cpu",
    amp: bool | None = None,
) -> dict:
    """Measure ``algo`` (sac, redq or ppo) and return ``{"algo", "updates_per_s", "sb3_sac_updates_per_s", ...}``.

    ``seconds`` of measuring per timed part, ``batch`` (minibatch for PPO) size, ``threads`` torch CPU
    threads (0: one per core), ``device`` cpu, cuda or auto, ``amp`` EVO RL's agents in mixed precision (None: as
    ``algo.amp: null``, on with CUDA only).
    """
    import torch

    from evo_rl.algos.base import resolve_amp, resolve_device

    torch.set_num_threads(threads or os.cpu_count() or 1)
    torch.manual_seed(0)
    dev = resolve_device(device)
    amp = resolve_amp(amp, dev)
    ours = _ppo_step(batch, dev, amp) if algo == "ppo" else _off_policy_step(algo, batch, dev, amp)
    parts = {"updates_per_s": ours}
    if algo == "redq":
        parts["sac_updates_per_s"] = _off_policy_step("sac", batch, dev, amp)
    parts["sb3_sac_updates_per_s"] = _sb3_sac_step(batch, dev)
    precision = ("float16" if dev.type == "cuda" else "bfloat16") if amp else "float32"
    result: dict[str, Any] = {"algo": algo, "batch": batch, "device": str(dev), "precision": precision}
    result.update(_measure(parts, seconds))
    result["vs_sb3"] = result["updates_per_s"] / result["sb3_sac_updates_per_s"] if algo == "sac" else None
    if algo == "redq":
        result["redq_cost_vs_sac"] = result["sac_updates_per_s"] / result["updates_per_s"]
    result["torch_threads"] = torch.get_num_threads()
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in result.items()}
