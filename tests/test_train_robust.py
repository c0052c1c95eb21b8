"""A local trainer that loses nothing: the run folder's lock, kill -9 at any moment,
append-only replay chunks shared by checkpoints, damaged checkpoints and policy files,
a full disk, hand-edited configs, metrics after a resume, and a stop in the middle of
owed updates."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import torch
from conftest import TINY_TRAIN, tiny_config
from test_memory import FakeVecEnv, check_batch, fill, lidar_layout

from evo_rl.cli import main
from evo_rl.config import EvoConfig
from evo_rl.errors import CheckpointError, ConfigError
from evo_rl.memory import ReplayMemory
from evo_rl.train import loop as loop_module
from evo_rl.train.checkpoint import CheckpointManager
from evo_rl.train.logger import read_metrics
from evo_rl.train.loop import Trainer
from evo_rl.train.policy import load_policy, save_policy
from evo_rl.train.run import RunLockedError, create_run, resolve_run

SMALL = TINY_TRAIN


def small_cfg(*extra: str) -> EvoConfig:
    return tiny_config(*extra)


def _state_json(ckpt) -> dict:
    return json.loads((ckpt / "state.json").read_text())


def _replay_size(ckpt) -> int:
    return json.loads((ckpt / "replay" / "memory.json").read_text())["n_valid"]


def _tmp_entries(run) -> list[str]:
    folders = [run.checkpoints_dir, run.checkpoints_dir / "replay"]
    return [p.name for f in folders if f.is_dir() for p in f.iterdir() if p.name.startswith(".tmp-")]


def _wait(pred, what: str, timeout: float = 120.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the trainer exited ({proc.returncode}) before {what}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# --------------------------------------------------------------------------- 1. one trainer per run


def test_a_second_trainer_is_refused_before_it_builds_anything(tmp_path, monkeypatch, capsys):
    cfg = small_cfg("train.total_steps=40")
    run = create_run(tmp_path, "one", cfg)
    with run.lock():  # another trainer (here: this process) holds the run
        assert run.trainer_pid() == os.getpid()

        def built(*args, **kwargs):
            raise AssertionError("the environment was built before the lock was taken")

        monkeypatch.setattr("evo_rl.envs.vector.VecTrackEnv.__init__", built)
        with pytest.raises(RunLockedError, match=f"process {os.getpid()}"):
            Trainer(cfg, run, resume=True)
        with pytest.raises(ConfigError, match="already exists"):  # and no fresh run of that name either
            create_run(tmp_path, "one", cfg)
        assert main(["train", "--resume", "one", f"train.runs_dir={tmp_path}"]) == 2
        assert f"process {os.getpid()}" in capsys.readouterr().err
    monkeypatch.undo()
    assert run.trainer_pid() is None
    trainer = Trainer(cfg, run, resume=True)  # a run without a checkpoint yet starts from scratch
    with pytest.raises(RunLockedError):
        Trainer(cfg, run, resume=True)
    assert trainer.train().env_steps == 40
    assert run.trainer_pid() is None and not run.trainer_path.exists()  # train() released the lock


def test_fresh_run_and_trainer_hold_the_lock(tmp_path):
    cfg = small_cfg("train.total_steps=40")
    run = create_run(tmp_path, "fresh", cfg)
    assert run.trainer_pid() is None  # create_run lets go of the lock once the folder is written
    trainer = Trainer(cfg, run)
    assert run.trainer_pid() == os.getpid()
    with pytest.raises(ConfigError, match="already exists"):
        create_run(tmp_path, "fresh", cfg)
    trainer.close()
    assert run.trainer_pid() is None
    assert trainer.train().env_steps == 40  # train() takes the lock again


def test_a_stale_trainer_json_naming_a_live_process_is_not_a_trainer(tmp_path, capsys):
    run = create_run(tmp_path, "stale", EvoConfig())
    run.trainer_path.write_text(json.dumps({"pid": 1, "started": 0.0}))  # left by kill -9; pid 1 lives
    assert run.trainer_pid() is None
    assert main(["pause", "stale", "--runs-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "no trainer is running" in out and "pid 1" not in out


# --------------------------------------------------------------------------- 2. kill -9


def test_kill_9_of_a_real_trainer_loses_at_most_one_checkpoint_interval(tmp_path):
    cmd = [sys.executable, "-c", "import sys; from evo_rl.cli import main; sys.exit(main())"]
    cmd += ["train", "--name", "k", f"train.runs_dir={tmp_path}", *SMALL]
    cmd += ["train.checkpoint_every_minutes=0.01", "train.eval_every_minutes=60", "train.total_steps=1000000000"]
    log = open(tmp_path / "trainer.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait(lambda: (tmp_path / "k" / "config.yaml").is_file(), "the run folder", proc=proc)
        run = resolve_run("k", tmp_path)
        mgr = CheckpointManager(run.checkpoints_dir)
        _wait(lambda: len(mgr.saved()) >= 2, "two checkpoints", proc=proc)
        assert run.trainer_pid() == proc.pid
        with pytest.raises(RunLockedError, match=f"process {proc.pid}"):  # a second trainer, as --resume builds it
            Trainer(run.load_config(), run, resume=True)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    assert run.trainer_path.exists() and run.trainer_pid() is None  # trainer.json stays; the lock went with it
    cfg = run.load_config()
    trainer = Trainer(cfg, run, resume=True)
    assert not _tmp_entries(run)
    latest = trainer.checkpoints.saved()[0]
    saved = _state_json(latest)
    c = trainer.counters
    assert c.env_steps == saved["env_steps"] > 0 and c.updates == saved["updates"] and c.sessions == 2
    assert len(trainer.memory) == _replay_size(latest) > 0
    assert all(r["env_steps"] <= c.env_steps for r in read_metrics(run.metrics_path))
    trainer.cfg.train.total_steps = c.env_steps + 40
    assert trainer.train().env_steps == saved["env_steps"] + 40
    steps = [r["env_steps"] for r in read_metrics(run.metrics_path)]
    assert steps == sorted(steps)


def test_a_run_killed_before_its_first_checkpoint_can_be_resumed(tmp_path, capsys):
    cfg = small_cfg()
    run = create_run(tmp_path, "early", cfg)
    with open(run.metrics_path, "w") as f:  # what the killed session logged before dying
        f.write(json.dumps({"env_steps": 400, "updates": 3}) + "\n")
    argv = ["train", "--resume", "early", f"train.runs_dir={tmp_path}", "train.total_steps=40"]
    assert main(argv) == 0, capsys.readouterr().err
    steps = [r["env_steps"] for r in read_metrics(run.metrics_path)]
    assert 400 not in steps and steps[-1] == 40
    assert CheckpointManager(run.checkpoints_dir).load_latest().state["env_steps"] == 40


def test_default_checkpoints_come_every_minute():
    assert EvoConfig().train.checkpoint_every_minutes <= 1.0


def test_checkpoints_append_only_the_new_replay_rows(tmp_path):
    cfg = small_cfg("train.total_steps=80")
    run = create_run(tmp_path, "a", cfg)
    trainer = Trainer(cfg, run)
    trainer.train()
    chunks = run.checkpoints_dir / "replay"
    first = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (chunks / "chunk-000001").iterdir()}
    before = trainer.memory._pos.copy()
    trainer.cfg.train.total_steps = 120
    trainer.train()
    added = int((trainer.memory._pos - before).sum())  # elements (steps and final observations) since
    assert added >= 40
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (chunks / "chunk-000001").iterdir()} == first
    assert int(np.load(chunks / "chunk-000002" / "count.npy").sum()) == added
    assert np.load(chunks / "chunk-000002" / "slots.npy").shape == (added,)
    ck = trainer.checkpoints.load_latest()
    assert ck.replay_chunks == ["chunk-000001", "chunk-000002"]
    resumed = Trainer(cfg, run, resume=True)
    assert len(resumed.memory) == len(trainer.memory)
    a, b = trainer.memory.sample(16), resumed.memory.sample(16)
    assert torch.equal(a.indices, b.indices) and all(torch.equal(x, y) for x, y in zip(a.obs, b.obs, strict=True))


def _same_memory(a: ReplayMemory, b: ReplayMemory) -> None:
    assert len(a) == len(b) and np.array_equal(a._valid, b._valid) and np.array_equal(a._pos, b._pos)
    v = a._valid
    for name in ("ret", "k", "term_n", "act", "rew", "epi_t", "last", "term"):
        assert np.array_equal(a._rec[name][v], b._rec[name][v]), name
    lo = np.maximum(a._pos - a.rows, 0)
    stored, _, _ = a._positions(lo, a._pos - lo)
    assert np.array_equal(a._rec["last"][stored], b._rec["last"][stored])
    for x, y in zip(a._frames, b._frames, strict=True):
        assert np.array_equal(x[stored], y[stored])
    if a.prioritized:
        assert np.array_equal(a._prio[v], b._prio[v]) and a._tree.total == pytest.approx(b._tree.total)
    for _ in range(2):
        s, t = a.sample(32), b.sample(32)
        assert torch.equal(s.indices, t.indices) and torch.equal(s.rew, t.rew) and torch.equal(s.discount, t.discount)
        assert torch.equal(s.weights, t.weights)
        for x, y in zip(s.obs, t.obs, strict=True):
            assert torch.equal(x, y)


@pytest.mark.parametrize("prioritized, nstep", [(False, 1), (False, 3), (True, 3)])
def test_replay_chunks_rebuild_the_memory_exactly(tmp_path, prioritized, nstep):
    n, gamma = 3, 0.95
    env = FakeVecEnv(n, 4, 2, seed=11)
    kw = dict(nstep=nstep, gamma=gamma, prioritized=prioritized, seed=3)
    mem = ReplayMemory(lidar_layout(4, 2), 25 * n, n, **kw)
    mgr = CheckpointManager(tmp_path / "ck", keep_best=0)
    for steps in (7, 12, 30, 5, 40):  # the last rounds wrap the streams: old chunks drop out
        fill(mem, env, steps)
        if prioritized:
            b = mem.sample(16)
            mem.update_priorities(b.indices, torch.rand(16))
        mgr.save({"w": torch.zeros(1)}, {"env_steps": int(mem._pos.sum())}, replay=mem)
        ck = mgr.load_latest()
        other = ReplayMemory(lidar_layout(4, 2), 25 * n, n, **{**kw, "seed": 99})
        CheckpointManager(tmp_path / "ck").restore_replay(ck, other)
        _same_memory(mem, other)
    names = sorted(p.name for p in (tmp_path / "ck" / "replay").iterdir())
    assert "chunk-000001" not in names  # overwritten everywhere and referenced by no kept checkpoint
    # a resumed memory: the first add closes the cars' episodes, marking elements of an older chunk final
    resumed = ReplayMemory(lidar_layout(4, 2), 25 * n, n, **kw)
    mgr = CheckpointManager(tmp_path / "ck", keep_best=0)
    mgr.restore_replay(mgr.load_latest(), resumed)
    env.reset_all()
    fill(resumed, env, 4)
    mgr.save({"w": torch.zeros(1)}, {"env_steps": 1}, replay=resumed)
    again = ReplayMemory(lidar_layout(4, 2), 25 * n, n, **kw)
    CheckpointManager(tmp_path / "ck").restore_replay(mgr.load_latest(), again)
    _same_memory(resumed, again)
    check_batch(again, env, again.get(np.flatnonzero(again._valid)), nstep, gamma)


# --------------------------------------------------------------------------- 3. damaged checkpoints


def _two_checkpoints(tmp_path):
    cfg = small_cfg("train.total_steps=80")
    run = create_run(tmp_path, "d", cfg)
    trainer = Trainer(cfg, run)
    trainer.train()
    trainer.cfg.train.total_steps = 120
    trainer.train()
    newer, older = trainer.checkpoints.saved()
    return cfg, run, newer, older


def _flip(path, at: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * at)] ^= 0x55
    path.write_bytes(bytes(data))


def test_damaged_shared_replay_keeps_the_newest_agent_and_every_corrupt_file_is_named(tmp_path):
    cfg, run, newer, older = _two_checkpoints(tmp_path)
    _flip(run.checkpoints_dir / "replay" / "chunk-000001" / "frame1.npy")  # a chunk both checkpoints need
    trainer = Trainer(cfg, run, resume=True)
    assert trainer.counters.env_steps == 120 and len(trainer.memory) == 0
    notes = "\n".join(trainer._notes)
    assert "replay/chunk-000001/frame1.npy fails its sha256 check" in notes
    assert "without its replay memory" in notes
    trainer.close()
    _flip(newer / "agent.safetensors")
    _flip(older / "agent.safetensors")
    with pytest.raises(CheckpointError, match="every checkpoint") as err:
        Trainer(cfg, run, resume=True)
    text = str(err.value)
    for ck in (newer, older):
        assert f"{ck}: agent.safetensors fails its sha256 check" in text
    assert "replay/chunk-000001/frame1.npy" in text and "from scratch" in text


@pytest.mark.parametrize("damaged", ["agent.safetensors", "../replay/chunk-000002/slots.npy"])
def test_a_damaged_latest_checkpoint_is_set_aside(tmp_path, damaged):
    cfg, run, newer, older = _two_checkpoints(tmp_path)
    _flip(newer / damaged)  # its agent, or the chunk only it needs
    trainer = Trainer(cfg, run, resume=True)
    assert trainer.counters.env_steps == 80 and len(trainer.memory) == _replay_size(older) > 0
    assert (newer.parent / f"corrupt-{newer.name}").is_dir() and not newer.exists()
    trainer.cfg.train.total_steps = 120
    trainer.train()
    assert trainer.checkpoints.saved()[1] == older  # the resumed-from checkpoint is the fallback now
    assert Trainer(cfg, run, resume=True).counters.env_steps == 120


# --------------------------------------------------------------------------- 4. full disk, leftovers, edited config


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("what", ["agent", "replay"])
def test_a_full_disk_keeps_the_previous_checkpoint_and_training_goes_on(tmp_path, monkeypatch, capsys, what):
    cfg = small_cfg("train.total_steps=80", "train.dashboard=plain")
    run = create_run(tmp_path, "full", cfg)
    trainer = Trainer(cfg, run)
    trainer.train()
    good = trainer.checkpoints.saved()
    capsys.readouterr()
    if what == "agent":
        monkeypatch.setattr("evo_rl.train.checkpoint.save_tensors", _enospc)
    else:
        monkeypatch.setattr("evo_rl.memory.replay._write_npy", _enospc)
    trainer.cfg.train.total_steps = 120
    c = trainer.train()  # no exception: the failed checkpoint is reported
    assert c.env_steps == 120 and trainer.save_failures == 1
    out = capsys.readouterr().out
    assert "checkpoint not saved (the disk is full)" in out and good[0].name in out
    assert trainer.checkpoints.saved() == good and not _tmp_entries(run)
    monkeypatch.undo()
    trainer.cfg.train.total_steps = 160
    trainer.train()
    resumed = Trainer(cfg, run, resume=True)
    assert resumed.counters.env_steps == 160 and len(resumed.memory) == len(trainer.memory)
    _same_memory(trainer.memory, resumed.memory)


def test_leftovers_of_a_killed_checkpoint_are_removed_at_start(tmp_path):
    cfg = small_cfg("train.total_steps=40")
    run = create_run(tmp_path, "left", cfg)
    Trainer(cfg, run).train()
    leftovers = [
        run.checkpoints_dir / ".tmp-ckpt-000002-step-000000000080-99999",
        run.checkpoints_dir / "replay" / ".tmp-chunk-000002-99999",
        run.checkpoints_dir / "replay" / "chunk-000007",  # a chunk written just before a kill
    ]
    for p in leftovers:
        p.mkdir()
        (p / "x.npy").write_bytes(b"partial")
    leftovers.append(run.path / ".policy.safetensors.99999.tmp")
    leftovers[-1].write_bytes(b"partial")
    trainer = Trainer(cfg, run, resume=True)
    assert not any(p.exists() for p in leftovers)
    assert (run.checkpoints_dir / "replay" / "chunk-000001").is_dir() and len(trainer.memory) > 0


def test_an_edited_config_with_other_network_sizes_is_a_clear_error(tmp_path, capsys):
    cfg = small_cfg("train.total_steps=40")
    run = create_run(tmp_path, "edit", cfg)
    Trainer(cfg, run).train()
    text = run.config_path.read_text()
    sac = "    hidden:\n    - 32\n    - 32\n"
    assert sac in text
    run.config_path.write_text(text.replace(sac, "    hidden:\n    - 48\n    - 32\n", 1))  # algo.sac.hidden
    with pytest.raises(CheckpointError) as err:
        Trainer(run.load_config(), run, resume=True)
    msg = str(err.value)
    assert "tensor agent/actor/net.0.weight: config.yaml builds shape [48, 83], the checkpoint holds [32, 83]" in msg
    assert "config.yaml" in msg and run.trainer_pid() is None
    assert main(["train", "--resume", "edit", f"train.runs_dir={tmp_path}"]) == 2
    err_text = capsys.readouterr().err
    assert "agent/actor/net.0.weight" in err_text and "Traceback" not in err_text


# --------------------------------------------------------------------------- 5. metrics after a resume


def test_resume_drops_metrics_logged_after_the_checkpoint(tmp_path):
    cfg = small_cfg("train.total_steps=80")
    run = create_run(tmp_path, "m", cfg)
    Trainer(cfg, run).train()
    with open(run.metrics_path, "a") as f:  # a killed session: logged on, never checkpointed
        for steps in (120, 160):
            f.write(json.dumps({"env_steps": steps, "updates": 9}) + "\n")
        f.write('{"env_steps": 200, "upd')
    trainer = Trainer(cfg, run, resume=True)
    assert max(r["env_steps"] for r in read_metrics(run.metrics_path)) == 80
    assert any("dropped 3 records" in n for n in trainer._notes)
    trainer.cfg.train.total_steps = 120
    trainer.train()
    steps = [r["env_steps"] for r in read_metrics(run.metrics_path)]
    assert steps == sorted(steps) and steps[-1] == 120


# --------------------------------------------------------------------------- 6. checksums of tensor files


def _tensor_data_start(path) -> int:
    header = int.from_bytes(path.read_bytes()[:8], "little")
    return 8 + header


def test_policy_files_carry_a_checksum(tmp_path):
    from evo_rl.train.policy import build_actor

    cfg = small_cfg()
    actor = build_actor(cfg)
    path = save_policy(tmp_path / "p.safetensors", actor, cfg, env_steps=1)
    assert load_policy(path).meta["env_steps"] == 1
    data = bytearray(path.read_bytes())
    start = _tensor_data_start(path)
    data[start + (len(data) - start) // 2] ^= 0x01  # one low bit inside the weights: still finite numbers
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=f"policy file {path} is damaged"):
        load_policy(path)
    from safetensors import safe_open
    from safetensors.torch import save_file

    old = tmp_path / "old.safetensors"  # written by an older EVO RL: no checksum
    good = save_policy(tmp_path / "good.safetensors", actor, cfg)
    with safe_open(str(good), framework="pt") as f:
        meta = {k: v for k, v in f.metadata().items() if k != "tensors_sha256"}
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    save_file(tensors, str(old), metadata=meta)
    with pytest.warns(UserWarning, match="no tensors_sha256 checksum"):
        loaded = load_policy(old)
    assert torch.equal(loaded.actor.state_dict()["net.0.weight"], actor.state_dict()["net.0.weight"])


def test_state_files_and_checkpoint_tensors_carry_a_checksum(tmp_path):
    from evo_rl.algos import load_state, save_state
    from evo_rl.train.checkpoint import sha256_file

    path = tmp_path / "s.safetensors"
    save_state(path, {"w": torch.arange(64, dtype=torch.float32), "n": 3})
    assert load_state(path)["n"] == 3
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="damaged"):
        load_state(path)
    mgr = CheckpointManager(tmp_path / "ck")
    ck = mgr.save({"w": torch.arange(64, dtype=torch.float32)}, {"env_steps": 1})
    agent = ck / "agent.safetensors"
    data = bytearray(agent.read_bytes())
    data[-5] ^= 0x01
    agent.write_bytes(bytes(data))
    manifest = json.loads((ck / "manifest.json").read_text())  # a manifest rewritten to match the damage
    manifest["files"]["agent.safetensors"]["sha256"] = sha256_file(agent)
    (ck / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="damaged"):
        mgr.load(ck)


def test_the_shipped_policy_has_a_checksum():
    from evo_rl.train.policy import PRETRAINED, read_policy_metadata

    assert len(read_policy_metadata(PRETRAINED)["tensors_sha256"]) == 64
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # verified, so no "no checksum" warning
        load_policy(PRETRAINED)


# --------------------------------------------------------------------------- 7. owed updates and the stop flag


def _count_updates(trainer: Trainer, on_update=None) -> list[int]:
    calls: list[int] = []
    update = trainer.agent.update

    def counted(batch):
        calls.append(trainer.counters.env_steps)
        if on_update is not None:
            on_update(len(calls))
        return update(batch)

    trainer.agent.update = counted
    return calls


def test_a_stop_during_owed_updates_is_seen_at_once_and_the_rest_is_carried(tmp_path):
    ups, n = 25.0, 4  # 100 updates owed per step
    cfg = small_cfg("train.total_steps=1000000", f"train.updates_per_step={ups}", "train.eval_every_minutes=60")
    run = create_run(tmp_path, "stop", cfg)
    trainer = Trainer(cfg, run)
    stop_at = 7
    calls = _count_updates(trainer, lambda k: trainer.request_stop("test") if k == stop_at else None)
    c = trainer.train()
    assert trainer.stop_reason == "test"
    assert stop_at <= len(calls) <= stop_at + loop_module.UPDATE_CHECK_EVERY  # not the 100 owed
    assert c.updates == len(calls) and c.update_debt >= 100 - len(calls)
    owed = (c.updates + c.update_debt) / (ups * n)  # every learning step owes exactly ups * n updates
    assert owed == int(owed) >= 1
    resumed = Trainer(cfg, run, resume=True)
    assert resumed.counters.update_debt == c.update_debt
    resumed.cfg.train.total_steps = c.env_steps  # no car steps left: the carried debt is paid, then it stops
    calls = _count_updates(resumed)
    c2 = resumed.train()
    assert c2.env_steps == c.env_steps and c2.updates == c.updates + int(c.update_debt) and c2.update_debt < 1


def test_the_time_budget_ends_owed_updates(tmp_path):
    cfg = small_cfg("train.total_steps=1000000", "train.updates_per_step=1000", "train.eval_every_minutes=60")
    run = create_run(tmp_path, "budget", cfg)
    trainer = Trainer(cfg, run, minutes=60)

    def spend_budget(k: int) -> None:
        if k == 1:
            trainer.minutes = 1e-9  # the budget runs out during the first 4000 owed updates

    calls = _count_updates(trainer, spend_budget)
    c = trainer.train()
    assert trainer.stop_reason == "time budget reached"
    assert 1 <= len(calls) <= 1 + loop_module.UPDATE_CHECK_EVERY and c.update_debt >= 4000 - len(calls)


def test_sliced_updates_keep_the_exact_update_to_data_ratio(tmp_path, monkeypatch):
    monkeypatch.setattr(loop_module, "UPDATE_SLICE_SECONDS", 0.0)  # every slice ends after a few updates
    ups, n = 3.0, 4
    cfg = small_cfg("train.total_steps=120", f"train.updates_per_step={ups}")
    run = create_run(tmp_path, "exact", cfg)
    trainer = Trainer(cfg, run)
    step = trainer.env.step
    owed_at_step = []

    def stepped(actions):
        owed_at_step.append(trainer.counters.update_debt)
        return step(actions)

    trainer.env.step = stepped
    learning_from = []
    _count_updates(trainer, lambda k: learning_from.append(trainer.counters.env_steps) if k == 1 else None)
    c = trainer.train()
    assert max(owed_at_step) < 1.0  # no car stepped while updates were owed
    assert c.updates == (c.env_steps - learning_from[0] + n) * ups and c.update_debt == 0.0
