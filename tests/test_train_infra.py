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


class _Replay:
    """A stand-in replay memory: each chunk is one file of bytes; ``needed`` names the chunks it still needs."""

    def __init__(self) -> None:
        self.payload = b""
        self.needed: set[bytes] | None = None  # None: every chunk

    def write_chunk(self, folder):
        if not self.payload:
            return None
        folder.mkdir(parents=True)
        (folder / "data.bin").write_bytes(self.payload)
        return self.payload

    def commit_chunk(self, info):
        self.payload = b""

    def chunk_needed(self, info):
        return self.needed is None or info in self.needed

    def write_index(self, folder, chunks):
        folder.mkdir(parents=True)
        (folder / "memory.json").write_text(json.dumps({"chunks": chunks}))

    def load_chunks(self, folder, chunk_dir):
        names = json.loads((folder / "memory.json").read_text())["chunks"]
        return [(n, (chunk_dir / n / "data.bin").read_bytes()) for n in names]


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


def test_checkpoint_round_trip_and_replay_in_the_last_two_only(tmp_path):
    mgr = CheckpointManager(tmp_path / "ck", keep_best=1)
    replay = _Replay()
    saved = []
    for i, (score, payload) in enumerate([(0.5, b"a" * 100), (0.1, b"b" * 50), (0.2, b"c" * 10)], start=1):
        replay.payload = payload
        saved.append(mgr.save(_tensors(i), {"env_steps": 10 * i, "updates": 2 * i}, score=score, replay=replay))
    first, second, third = saved
    assert mgr.saved() == [third, second, first]  # latest, previous, and first as the best
    assert not (first / "replay").exists()  # the best keeps its agent only
    ck = mgr.load_latest()
    assert ck.path == third and ck.state["env_steps"] == 30 and ck.state["score"] == 0.2
    assert ck.replay_chunks == ["chunk-000001", "chunk-000002", "chunk-000003"]  # chunks are shared, never rewritten
    assert mgr.load(second).replay_chunks == ["chunk-000001", "chunk-000002"]
    for k, v in _tensors(3).items():
        assert torch.equal(ck.tensors[k], v)
    old = mgr.load(first)  # still verifies after its replay was dropped
    assert old.replay_path is None and torch.equal(old.tensors["actor/w"], _tensors(1)["actor/w"])
    other = _Replay()
    assert mgr.restore_replay(ck, other)
    replay.needed = {b"c" * 10, b"d", b"e"}  # the memory overwrote the first two chunks
    replay.payload = b"d"
    fourth = mgr.save(_tensors(4), {"env_steps": 40}, score=0.0, replay=replay)
    assert mgr.load(fourth).replay_chunks == ["chunk-000003", "chunk-000004"]
    chunks = tmp_path / "ck" / "replay"
    assert len(list(chunks.iterdir())) == 4  # the previous checkpoint still needs chunks 1 and 2
    replay.payload = b"e"
    mgr.save(_tensors(5), {"env_steps": 50}, score=0.0, replay=replay)
    assert sorted(p.name for p in chunks.iterdir()) == ["chunk-000003", "chunk-000004", "chunk-000005"]


def test_checkpoint_keeps_latest_plus_best(tmp_path):
    mgr = CheckpointManager(tmp_path, keep_best=2)
    scores = [0.3, 0.9, 0.1, 0.5, 0.2]
    paths = [mgr.save(_tensors(i), {"env_steps": i}, score=s) for i, s in enumerate(scores)]
    kept = set(mgr.saved())
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
    with run.lock():  # what a trainer holds while it runs
        assert main(["resume", str(run.path)]) == 0
    assert not run.is_paused()
    assert f"pid {os.getpid()}" in capsys.readouterr().out
    assert main(["pause", "nope", "--runs-dir", str(tmp_path)]) == 2


def test_dashboard_shows_the_record_lap_beside_the_reference():
    from rich.console import Console

    from evo_rl.train.dashboard import Dashboard, plain_line

    ev = {"finish_rate": 1.0, "mean_lap_time": 46.0, "record_lap_time": 41.84, "record_ratio": 46.0 / 41.84}
    snap = {"eval": ev, "reference_lap_time": 45.81, "best_lap_time": 46.0}
    assert "ref=45.81 s" in plain_line(snap) and "record=41.84 s" in plain_line(snap)
    assert "record" not in plain_line({**snap, "eval": {**ev, "record_lap_time": None, "record_ratio": None}})
    console = Console(width=160, record=True)
    dash = Dashboard("r", ("minutes", 1.0), "rich", console=console)
    dash.snap = snap
    console.print(dash._render())
    text = console.export_text()
    assert "record lap" in text and "41.84" in text and "1.099x" in text
