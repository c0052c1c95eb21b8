"""Run folder, checkpoints, metrics, plot and the pause / resume control files."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest
import torch

from evo_rl.cli import main
from evo_rl.config import EvoConfig, load_config
from evo_rl.errors import CheckpointError, ConfigError
from evo_rl.train.checkpoint import CheckpointManager, rng_state, set_rng_state
from evo_rl.train.logger import MetricsLogger, flatten, read_metrics
from evo_rl.train.run import create_run, resolve_run


def _tensors(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"actor/w": torch.randn(4, 3, generator=g), "critic/b": torch.randn(5, generator=g)}


def _write_replay(payload: bytes):
    def write(path):
        path.mkdir()
        (path / "data.bin").write_bytes(payload)

    return write


# --------------------------------------------------------------------------- run folder


def test_create_and_resolve_run(tmp_path):
    cfg = load_config(None, ["env.n_envs=3"])
    run = create_run(tmp_path, "demo", cfg)
    assert run.config_path.is_file() and run.checkpoints_dir.is_dir()
    assert run.load_config().env.n_envs == 3
    assert resolve_run("demo", tmp_path).path == run.path
    assert resolve_run(run.path).path == run.path
    with pytest.raises(ConfigError, match="--resume demo"):
        create_run(tmp_path, "demo", cfg)
    with pytest.raises(CheckpointError, match="no run folder"):
        resolve_run("missing", tmp_path)
    a = create_run(tmp_path, None, cfg)
    b = create_run(tmp_path, None, cfg)
    assert a.path != b.path


# --------------------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip_and_replay_kept_in_latest_only(tmp_path):
    mgr = CheckpointManager(tmp_path / "ck", keep_best=1)
    first = mgr.save(_tensors(1), {"env_steps": 10, "updates": 2}, score=0.5, write_replay=_write_replay(b"a" * 100))
    second = mgr.save(_tensors(2), {"env_steps": 20, "updates": 4}, score=0.1, write_replay=_write_replay(b"b" * 50))
    assert mgr.list() == [second, first]  # first kept as the best, second as the latest
    assert not (first / "replay").exists()  # only the latest holds replay memory
    ck = mgr.load_latest()
    assert ck.path == second and ck.state["env_steps"] == 20 and ck.state["score"] == 0.1
    assert (ck.replay_path / "data.bin").read_bytes() == b"b" * 50
    for k, v in _tensors(2).items():
        assert torch.equal(ck.tensors[k], v)
    old = mgr.load(first)  # still verifies after its replay was dropped
    assert old.replay_path is None and torch.equal(old.tensors["actor/w"], _tensors(1)["actor/w"])


def test_checkpoint_keeps_latest_plus_best(tmp_path):
    mgr = CheckpointManager(tmp_path, keep_best=2)
    scores = [0.3, 0.9, 0.1, 0.5, 0.2]
    paths = [mgr.save(_tensors(i), {"env_steps": i}, score=s) for i, s in enumerate(scores)]
    kept = set(mgr.list())
    assert kept == {paths[4], paths[1], paths[3]}  # latest, then the two best scores


@pytest.mark.parametrize("damage", ["truncate", "flip", "manifest"])
def test_corrupt_latest_checkpoint_falls_back_to_previous(tmp_path, damage):
    mgr = CheckpointManager(tmp_path, keep_best=3)
    good = mgr.save(_tensors(1), {"env_steps": 1}, score=1.0)
    bad = mgr.save(_tensors(2), {"env_steps": 2}, score=0.5)
    target = bad / "agent.safetensors"
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[:-7])
    elif damage == "flip":
        data = bytearray(target.read_bytes())
        data[-1] ^= 0xFF
        target.write_bytes(bytes(data))
    else:
        (bad / "manifest.json").write_text("{not json")
    messages: list[str] = []
    ck = mgr.load_latest(report=messages.append)
    assert ck.path == good
    assert len(messages) == 1 and bad.name in messages[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert mgr.load_latest().path == good
    assert any("previous checkpoint" in str(w.message) for w in caught)


def test_all_checkpoints_corrupt_is_an_error(tmp_path):
    mgr = CheckpointManager(tmp_path)
    ck = mgr.save(_tensors(1), {"env_steps": 1})
    (ck / "state.json").write_text("{}")
    with pytest.raises(CheckpointError, match="every checkpoint"):
        mgr.load_latest(report=lambda m: None)


def test_unfinished_temp_folder_is_ignored(tmp_path):
    mgr = CheckpointManager(tmp_path)
    good = mgr.save(_tensors(1), {"env_steps": 1})
    (tmp_path / f".tmp-ckpt-000002-step-000000000002-{os.getpid()}").mkdir()  # a crash mid-write
    assert mgr.load_latest().path == good


def test_rng_state_round_trip():
    rng = np.random.default_rng(5)
    js, tensors = rng_state(rng)
    js = json.loads(json.dumps(js))  # it must survive JSON
    a = (rng.random(3), np.random.default_rng(0).random(1), torch.rand(3))
    import random

    r_a = random.random()
    set_rng_state(rng, js, tensors)
    assert np.array_equal(rng.random(3), a[0])
    assert torch.equal(torch.rand(3), a[2])
    assert random.random() == r_a


# --------------------------------------------------------------------------- metrics


def test_metrics_logger_appends_jsonl_and_tensorboard(tmp_path):
    cfg = EvoConfig()
    log = MetricsLogger(tmp_path, cfg, "t")
    log.log({"env_steps": 10, "episode": {"reward_avg": 1.5, "terms": {"progress": 2.0}}, "x": float("nan")})
    log.close()
    log = MetricsLogger(tmp_path, cfg, "t", tensorboard=False)  # a resumed run appends
    log.log({"env_steps": 20, "eval": {"finish_rate": 0.5, "lap_times": [30.0]}})
    log.close()
    (tmp_path / "metrics.jsonl").open("a").write('{"env_steps": 30, "tor')  # a killed trainer's last line
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["env_steps"] for r in records] == [10, 20]
    assert records[0]["x"] is None and records[1]["eval"]["lap_times"] == [30.0]
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "tb").iterdir())
    assert flatten({"a": {"b": 1, "c": None}, "d": True}) == {"a/b": 1.0, "d": 1.0}


def test_wandb_missing_is_a_clear_error(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    with pytest.raises(ConfigError, match="train.wandb"):
        MetricsLogger(tmp_path, load_config(None, ["train.wandb=true"]), "t", tensorboard=False)


# --------------------------------------------------------------------------- CLI: plot, pause, resume


def _fake_metrics(run_path):
    with open(run_path / "metrics.jsonl", "w") as f:
        for i in range(1, 6):
            rec = {
                "env_steps": i * 1000,
                "episode": {"reward_avg": i, "reward_min": 0, "reward_max": 2 * i, "finish_rate": i / 10},
                "losses": {"loss_critic": 1 / i, "loss_actor": -i, "alpha": 0.1},
                "env_steps_per_s": 900.0,
                "updates_per_s": 200.0,
            }
            f.write(json.dumps(rec) + "\n")
            if i % 2 == 0:
                ev = {"finish_rate": i / 5, "mean_lap_time": 40.0 - i, "reference_lap_time": 30.0}
                f.write(json.dumps({"env_steps": i * 1000, "eval": ev}) + "\n")


def test_plot_writes_png(tmp_path, capsys):
    run = create_run(tmp_path, "p", EvoConfig())
    _fake_metrics(run.path)
    out = tmp_path / "curves.png"
    assert main(["plot", "p", "--runs-dir", str(tmp_path), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000


def test_pause_and_resume_commands(tmp_path, capsys):
    run = create_run(tmp_path, "c", EvoConfig())
    assert main(["pause", "c", "--runs-dir", str(tmp_path)]) == 0
    assert run.is_paused()
    assert "no trainer is running" in capsys.readouterr().out
    run.mark_running()
    assert main(["resume", str(run.path)]) == 0
    assert not run.is_paused()
    assert f"pid {os.getpid()}" in capsys.readouterr().out
    assert main(["pause", "nope", "--runs-dir", str(tmp_path)]) == 2
