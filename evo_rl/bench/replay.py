"""``evo-rl bench replay``: replay memory speed against Stable-Baselines3's ReplayBuffer.

Both memories are filled with the same number of transitions of the same shapes and
sampled in batches of ``batch_size`` (``--batch-size``) in the same process:

- ``lidar``: EVO RL stores speed, one LIDAR frame (19 beams) and the action per step
  and rebuilds the 4-frame history and 2 previous actions when sampling; SB3 stores
  the pre-stacked flat vector (1 + 4 x 19 + 2 x 3 floats) for obs and next_obs.
- ``image``: EVO RL stores speed, gear, rpm and one 64 x 64 uint8 frame per step and
  rebuilds the (4, 64, 64) stack; SB3 stores (4, 64, 64) uint8 observations.

Reported: microseconds per sampled batch (the fastest of 20 timed blocks) and the
transitions inserted per second by batched ``add`` calls of ``n_envs`` (``--n-envs``) cars.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

HIST, BEAMS, ACT_BUF, IMG = 4, 19, 2, 64


def _layouts() -> dict[str, Any]:
    from evo_rl.memory import ObsField, ObsLayout

    scalar = ObsField("speed", (1,), "float32")
    lidar = ObsLayout((scalar, ObsField("lidar", (BEAMS,), "float32", HIST)), ACT_BUF)
    image = ObsLayout(
        (
            scalar,
            ObsField("gear", (1,), "float32"),
            ObsField("rpm", (1,), "float32"),
            ObsField("images", (IMG, IMG), "uint8", HIST),
        ),
        ACT_BUF,
    )
    return {"lidar": lidar, "image": image}


def _fill_evo(mem: Any, layout: Any, steps: int, n: int, rng: np.random.Generator) -> float:
    """Insert ``steps`` vector steps of random data (episodes of ~500 steps); returns seconds spent in add."""
    pool = 8  # distinct observations cycled through: content does not change the speed
    obs = [
        tuple(rng.integers(0, 255, (n, *f.obs_shape)).astype(f.dtype) for f in layout.fields)
        + tuple(rng.uniform(-1, 1, (n, 3)).astype(np.float32) for _ in range(layout.act_buf_len))
        for _ in range(pool)
    ]
    act = rng.uniform(-1, 1, (pool, n, 3)).astype(np.float32)
    rew = rng.normal(size=(pool, n)).astype(np.float32)
    ends = rng.random((steps, n)) < 1 / 500
    term = ends & (rng.random((steps, n)) < 0.5)
    spent = 0.0
    for t in range(steps):
        k = t % pool
        t0 = time.perf_counter()
        mem.add(obs[k], act[k], rew[k], term[t], ends[t] & ~term[t], obs[k - 1], ends[t])
        spent += time.perf_counter() - t0
    return spent


def _fill_sb3(buf: Any, obs_shape: tuple[int, ...], dtype: Any, steps: int, n: int, rng: np.random.Generator) -> None:
    pool = 8
    if dtype == np.uint8:
        obs = rng.integers(0, 255, (pool, n, *obs_shape), dtype=np.uint8)
    else:
        obs = rng.normal(size=(pool, n, *obs_shape)).astype(dtype)
    act = rng.uniform(-1, 1, (pool, n, 3)).astype(np.float32)
    rew = rng.normal(size=(pool, n)).astype(np.float32)
    infos = [{} for _ in range(n)]
    for t in range(steps):
        k = t % pool
        buf.add(obs[k], obs[k - 1], act[k], rew[k], rng.random(n) < 1 / 500, infos)


def _time_us(fn: Any, batch: int, samples: int, blocks: int = 20) -> float:
    """Microseconds per call: the fastest of ``blocks`` timed blocks (other processes only add time)."""
    for _ in range(max(10, samples // 20)):
        fn(batch)
    size = max(1, samples // blocks)
    best = float("inf")
    for _ in range(blocks):
        t0 = time.perf_counter()
        for _ in range(size):
            fn(batch)
        best = min(best, (time.perf_counter() - t0) / size)
    return best * 1e6


def run(
    *,
    transitions: int = 100_000,
    image_transitions: int = 100_000,
    batch_size: int = 256,
    n_envs: int = 16,
    samples: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Fill EVO RL's and SB3's memories with the same shapes, time sampling and inserts.

    ``transitions`` / ``image_transitions`` in each LIDAR / image memory, ``batch_size`` per
    sampled batch, ``n_envs`` cars per insert call, ``samples`` timed LIDAR batches (image: a
    tenth), ``seed`` of the data and of sampling.
    """
    import torch
    from gymnasium import spaces
    from stable_baselines3.common.buffers import ReplayBuffer

    from evo_rl.memory import ReplayMemory

    torch.set_num_threads(1)
    rng = np.random.default_rng(seed)
    np.random.seed(seed)  # SB3 samples with NumPy's global generator
    n, b = n_envs, batch_size
    layouts = _layouts()
    act_space = spaces.Box(-1, 1, (3,), np.float32)
    flat_dim = 1 + HIST * BEAMS + ACT_BUF * 3
    sb3_spaces = {
        "lidar": (spaces.Box(-np.inf, np.inf, (flat_dim,), np.float32), (flat_dim,), np.float32),
        "image": (spaces.Box(0, 255, (HIST, IMG, IMG), np.uint8), (HIST, IMG, IMG), np.uint8),
    }
    result: dict[str, Any] = {}
    for name, size, batches in (
        ("lidar", transitions, samples),
        ("image", image_transitions, max(20, samples // 10)),
    ):
        steps = -(-size // n)
        mem = ReplayMemory(layouts[name], size, n, seed=seed)
        spent = _fill_evo(mem, layouts[name], steps, n, rng)
        evo_us = _time_us(mem.sample, b, batches)
        entry = {"evo_us": round(evo_us, 1), "evo_mib": round(mem.nbytes(mem.layout, mem.capacity) / 2**20)}
        if name == "lidar":
            result["insert_per_s"] = round(steps * n / spent)
            per = ReplayMemory(layouts[name], size, n, prioritized=True, nstep=3, seed=seed)
            _fill_evo(per, layouts[name], steps, n, rng)
            entry["evo_per_nstep3_us"] = round(_time_us(per.sample, b, batches), 1)
            del per
        del mem
        space, shape, dtype = sb3_spaces[name]
        buf = ReplayBuffer(size, space, act_space, device="cpu", n_envs=n, handle_timeout_termination=False)
        _fill_sb3(buf, shape, dtype, steps, n, rng)
        entry["sb3_us"] = round(_time_us(buf.sample, b, batches), 1)
        arrays = (buf.observations, buf.next_observations, buf.actions, buf.rewards, buf.dones, buf.timeouts)
        entry["sb3_mib"] = round(sum(a.nbytes for a in arrays) / 2**20)
        del buf
        result[name] = entry
    result["settings"] = {
        "transitions": transitions,
        "image_transitions": image_transitions,
        "batch_size": b,
        "n_envs": n,
        "torch_threads": 1,
    }
    return result
