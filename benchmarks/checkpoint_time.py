"""Checkpoint cost with a full replay memory, as one JSON object.

    python benchmarks/checkpoint_time.py --transitions 1000000 --folder /tmp/ckpt-bench

Fills a LIDAR replay memory of the default layout (speed, 4 x 19 LIDAR, 2 previous
actions; 16 cars), then times: rewriting the whole memory as one ``.npz`` plus its
sha256 (what every checkpoint cost before append-only chunks), the first chunked
checkpoint (all of it), a checkpoint after one more minute of data
(``--minute-steps`` car-steps), and reading the latest checkpoint back (verify every
file, rebuild the memory).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from evo_rl.memory import ObsField, ObsLayout, ReplayMemory
from evo_rl.train.checkpoint import CheckpointManager, sha256_file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transitions", type=int, default=1_000_000, help="memory capacity (all cars)")
    parser.add_argument("--cars", type=int, default=16)
    parser.add_argument("--minute-steps", type=int, default=24_000, help="car-steps added between two checkpoints")
    parser.add_argument("--folder", default="ckpt-bench", help="scratch folder (deleted at the end)")
    args = parser.parse_args(argv)
    root = Path(args.folder)
    shutil.rmtree(root, ignore_errors=True)
    n = args.cars
    layout = ObsLayout((ObsField("speed", (1,), "float32"), ObsField("lidar", (19,), "float32", 4)), 2)
    mem = ReplayMemory(layout, args.transitions, n)
    rng = np.random.default_rng(0)
    act = np.zeros((n, 3), np.float32)
    obs = (rng.random((n, 1), dtype=np.float32), rng.random((n, 4, 19), dtype=np.float32), act, act)
    rew, no = np.zeros(n, np.float32), np.zeros(n, bool)

    def fill(steps: int) -> None:
        for _ in range(steps):
            mem.add(obs, act, rew, no, no)

    fill(-(-args.transitions // n))
    tensors = {"w": torch.zeros(1_000_000)}  # 4 MB, about SAC [256, 256] with its Adam moments
    out: dict[str, float] = {}
    t = time.perf_counter()
    mem.save(root / "whole" / "memory.npz")
    sha256_file(root / "whole" / "memory.npz")
    out["whole_npz_s"] = time.perf_counter() - t
    out["whole_npz_mib"] = (root / "whole" / "memory.npz").stat().st_size / 2**20
    mgr = CheckpointManager(root / "checkpoints", keep_best=0)
    t = time.perf_counter()
    mgr.save(tensors, {"env_steps": 1}, replay=mem)
    out["first_checkpoint_s"] = time.perf_counter() - t
    fill(args.minute_steps // n)
    t = time.perf_counter()
    mgr.save(tensors, {"env_steps": 2}, replay=mem)
    out["next_checkpoint_s"] = time.perf_counter() - t
    t = time.perf_counter()
    ck = CheckpointManager(root / "checkpoints").load_latest()
    CheckpointManager(root / "checkpoints").restore_replay(ck, ReplayMemory(layout, args.transitions, n))
    out["resume_s"] = time.perf_counter() - t
    shutil.rmtree(root, ignore_errors=True)
    print(json.dumps({k: round(v, 3) for k, v in out.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
