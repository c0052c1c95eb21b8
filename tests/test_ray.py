"""`evo-rl train --ray` and `evo-rl sweep` on a local Ray instance (the `ray` extra)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest
import yaml
from conftest import TINY_TRAIN

from evo_rl.dist.common import DistError
from evo_rl.dist.sweep import parse_grid, parse_random, trial_overrides

pytest.importorskip("ray", reason="the ray extra: pip install 'evo-rl[ray]'")


def _evo(*args: str, timeout: float) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1", RAY_USAGE_STATS_ENABLED="0")
    return subprocess.run(
        [sys.executable, "-m", "evo_rl", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def test_search_specs_parse_and_bad_ones_name_the_fix():
    assert parse_grid(["algo.lr=1e-3,3e-4", "env.n_envs=4"]) == {"algo.lr": [1e-3, 3e-4], "env.n_envs": [4]}
    assert parse_random(["algo.lr=loguniform:1e-4:1e-3", "algo.gamma=choice:0.98,0.99"]) == {
        "algo.lr": ("loguniform", [1e-4, 1e-3]),
        "algo.gamma": ("choice", [0.98, 0.99]),
    }
    assert trial_overrides({"algo.lr": 0.001, "seed": 3}) == ["algo.lr=0.001", "env.seed=3", "train.seed=3"]
    for bad in ("algo.lr=loguniform:0:1", "algo.lr=uniform:2:1", "algo.lr=normal:0:1", "algo.lr"):
        with pytest.raises(DistError, match="--random"):
            parse_random([bad])
    with pytest.raises(DistError, match="--grid"):
        parse_grid(["algo.lr"])


def test_train_with_ray_runs_the_workers_as_ray_actors(tmp_path):
    out = _evo(
        "train", "--ray", "--workers", "2", "--minutes", "0.4", "--name", "ray2", *TINY_TRAIN,
        "train.eval_every_minutes=1000", "memory.capacity=20000", f"train.runs_dir={tmp_path}",
        timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    run = tmp_path / "ray2"
    workers = json.loads((run / "dist.json").read_text())["workers"]
    assert set(workers) == {"0", "1"} and all(w["received"] > 0 and w["lost"] == 0 for w in workers.values())
    assert "joined" in (run / "logs" / "worker-0.log").read_text()  # the actor's Worker wrote its log
    assert (run / "policy.safetensors").is_file()


def test_sweep_trains_one_run_folder_per_trial_and_ranks_them(tmp_path):
    out = _evo(
        "sweep", "--grid", "algo.sac.lr_actor=0.001,0.0003", "--seeds", "0", "--minutes", "0.15", "--name", "s",
        "--concurrent", "2", *TINY_TRAIN, "train.eval_every_minutes=1000", f"train.runs_dir={tmp_path}",
        timeout=400,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    folder = tmp_path / "s"
    rows = list(csv.DictReader(open(folder / "results.csv")))
    assert sorted(float(r["algo.sac.lr_actor"]) for r in rows) == [0.0003, 0.001]
    assert all(r["error"] == "" and float(r["env_steps"]) > 0 for r in rows)
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)  # best first
    for r in rows:
        run = folder / r["run"].split("/")[-1]
        assert yaml.safe_load((run / "config.yaml").read_text())["algo"]["sac"]["lr_actor"] == float(
            r["algo.sac.lr_actor"]
        )
        assert (run / "policy.safetensors").is_file()
    assert (folder / "results.png").stat().st_size > 1000
    assert "2 trials" in out.stdout
    bad = _evo("sweep", "--grid", "algo.sac.lr_actor=-1", *TINY_TRAIN, f"train.runs_dir={tmp_path}", timeout=120)
    assert bad.returncode == 2 and "lr_actor" in bad.stderr
