"""Distributed training: the spool, sample batches, and server / trainer / workers as real processes
on loopback, with the faults of issue 10 (kill -9 a worker, restart the server, kill -9 and resume the
trainer): every transition produced arrives once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import free_port, tiny_config

zmq = pytest.importorskip("zmq")

from evo_rl.config import config_to_yaml, load_config  # noqa: E402
from evo_rl.dist import wire  # noqa: E402
from evo_rl.dist.common import DistError, decode_batch, encode_batch  # noqa: E402
from evo_rl.dist.spool import Spool, SpoolError  # noqa: E402
from evo_rl.dist.worker import join  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

# --------------------------------------------------------------------------- spool


def test_spool_keeps_batches_until_durable_and_survives_a_restart(tmp_path):
    sp = Spool(tmp_path / "s", max_bytes=10_000)
    assert sp.session == 1 and sp.next_seq == 1
    seqs = [sp.put([b"head", bytes([i]) * 100], transitions=10) for i in range(5)]
    assert seqs == [1, 2, 3, 4, 5] and len(sp) == 5 and sp.produced == 50
    assert sp.get(3) == [b"head", bytes([2]) * 100]
    assert sp.drop_through(2) == 2 and sp.seqs() == [3, 4, 5]
    (tmp_path / "s" / "half.tmp").write_bytes(b"x")  # what a kill mid-write leaves
    again = Spool(tmp_path / "s", max_bytes=10_000)  # a restarted worker
    assert again.session == 2 and again.next_seq == 6 and again.produced == 50 and again.seqs() == [3, 4, 5]
    assert not (tmp_path / "s" / "half.tmp").exists()
    small = Spool(tmp_path / "t", max_bytes=150)
    small.put([b"x" * 100], 1)
    assert not small.full()
    small.put([b"x" * 100], 1)
    assert small.full()
    (tmp_path / "t" / f"{1:012d}.batch").write_bytes(b"\x05\x00\x00\x00\x10")
    with pytest.raises(SpoolError, match="damaged"):
        small.get(1)


# --------------------------------------------------------------------------- batches


def _collect(cfg, steps: int):
    from evo_rl.envs.vector import VecTrackEnv
    from evo_rl.memory import ObsLayout
    from evo_rl.train.collect import Collector

    env = VecTrackEnv(cfg)
    layout = ObsLayout.from_space(env.single_observation_space, cfg.env.hist_len, cfg.env.act_buf_len, cfg.env.flavour)
    col = Collector(env, layout, None, np.random.default_rng(0))
    col.reset(seed=3)
    return layout, [col.step(random=True) for _ in range(steps)]


@pytest.mark.parametrize("compress", ["none", "lz4"])
def test_a_batch_through_the_wire_fills_the_replay_as_local_steps_do(compress):
    if compress == "lz4":
        pytest.importorskip("lz4")
    from evo_rl.memory import ReplayMemory

    cfg = tiny_config("env.max_steps=15")  # episodes end inside the batch: final frames travel too
    layout, steps = _collect(cfg, 40)
    assert sum(int((s.terminated | s.truncated).sum()) for s in steps) > 0
    frames, n = encode_batch(steps, {"worker": 1, "seq": 1}, compress)
    assert n == 40 * cfg.env.n_envs
    got, episodes = decode_batch(wire.decode([bytes(f) for f in frames]), layout, cfg.env.n_envs)
    assert len(episodes) == sum(len(s.episodes) for s in steps) > 0
    local = ReplayMemory(layout, 2000, 2 * cfg.env.n_envs, nstep=3, gamma=0.9)
    remote = ReplayMemory(layout, 2000, 2 * cfg.env.n_envs, nstep=3, gamma=0.9)
    cars = np.arange(cfg.env.n_envs, 2 * cfg.env.n_envs)  # worker 1's streams
    for a, b in zip(steps, got, strict=True):
        local.add_frames(a.frames, a.action, a.reward, a.terminated, a.truncated, a.final_frames, None, cars)
        remote.add_frames(b.frames, b.action, b.reward, b.terminated, b.truncated, b.final_frames, None, cars)
    assert len(remote) == len(local) > 0
    np.testing.assert_array_equal(local._rec, remote._rec)
    for x, y in zip(local._frames, remote._frames, strict=True):
        np.testing.assert_array_equal(x, y)


def test_a_batch_that_does_not_fit_the_layout_is_refused():
    cfg = tiny_config()
    layout, steps = _collect(cfg, 3)
    frames, _ = encode_batch(steps, {"worker": 0, "seq": 1})
    msg = wire.decode([bytes(f) for f in frames])
    with pytest.raises(wire.WireError, match="act should be"):
        decode_batch(msg, layout, cfg.env.n_envs + 1)  # another car count per worker
    bad = wire.Message(msg.kind, msg.meta, {**msg.arrays, "f0": msg.arrays["f0"].astype(np.float64)})
    with pytest.raises(wire.WireError, match="f0"):
        decode_batch(bad, layout, cfg.env.n_envs)


# --------------------------------------------------------------------------- processes


def _evo(*args: str, log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log, "ab") as f:
        return subprocess.Popen([sys.executable, "-m", "evo_rl", *args], stdout=f, stderr=subprocess.STDOUT, env=env)


def _wait_for(what, predicate, timeout: float, procs=()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        for p in procs:
            assert p.poll() is None, f"{p.args[3]} exited with {p.returncode} while waiting for {what}"
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _status(run: Path) -> dict:
    try:
        return json.loads((run / "dist.json").read_text())["workers"]
    except (OSError, ValueError, KeyError):
        return {}


def _stop(p: subprocess.Popen, sig=signal.SIGTERM, timeout: float = 30.0) -> int:
    if p.poll() is None:
        p.send_signal(sig)
    try:
        return p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        return p.wait()


def _dist_config(tmp_path: Path, port: int, *extra: str) -> Path:
    cfg = tiny_config(
        f"train.runs_dir={tmp_path / 'runs'}",
        f"dist.port={port}",
        "dist.max_workers=2",
        "dist.batch_steps=64",
        "dist.batch_seconds=0.1",
        "dist.resend_seconds=1.0",
        "train.checkpoint_every_minutes=0.04",
        "train.eval_every_minutes=1000",
        "train.total_steps=10000000",
        "memory.capacity=20000",
        "train.dashboard=plain",  # its messages go to the log
        *extra,
    )
    path = tmp_path / "cfg.yaml"
    path.write_text(config_to_yaml(cfg))
    return path


def test_nothing_is_lost_when_worker_server_and_trainer_die(tmp_path):
    """kill -9 the worker and restart it, restart the server, kill -9 the trainer and resume it:
    the trainer ends with exactly the transitions the worker produced, each once."""
    port = free_port()
    cfg = _dist_config(tmp_path, port)
    logs = tmp_path
    run = tmp_path / "runs" / "r"
    spool = tmp_path / "spool0"
    total = 6000
    server = _evo("server", "--config", str(cfg), log=logs / "server.log")
    trainer = _evo("trainer", "--config", str(cfg), "--name", "r", log=logs / "trainer.log")
    worker_args = ("worker", "--id", "0", f"dist.port={port}", f"dist.spool_dir={spool}", "--steps", str(total))
    worker = _evo(*worker_args, log=logs / "worker.log")
    procs = [server, trainer]
    try:
        received = lambda n: lambda: _status(run).get("0", {}).get("received", 0) >= n  # noqa: E731
        _wait_for("the first transitions", received(500), 90, procs)
        worker.kill()  # kill -9, mid-episode
        worker.wait()
        worker = _evo(*worker_args, log=logs / "worker.log")
        _wait_for("transitions after the worker's restart", received(1500), 60, procs)
        assert _stop(server) == 0  # the server goes away and comes back
        time.sleep(1.0)
        server = procs[0] = _evo("server", "--config", str(cfg), log=logs / "server.log")
        _wait_for("transitions after the server's restart", received(2500), 60, procs)
        trainer.kill()  # kill -9: what it received after its last checkpoint is only in the spool now
        trainer.wait()
        trainer = procs[1] = _evo("trainer", "--resume", str(run), log=logs / "trainer.log")
        assert worker.wait(120) == 0  # all produced, all acknowledged
        time.sleep(4.0)  # one more checkpoint
        assert _stop(trainer) in (0, 143)
    finally:
        for p in (worker, *procs):
            _stop(p, signal.SIGKILL, 5)
    produced = json.loads((spool / "state.json").read_text())["produced"]
    st = _status(run)["0"]
    log = (logs / "trainer.log").read_text()
    assert produced >= total
    assert st["received"] == produced, log[-3000:]
    assert st["lost"] == 0 and st["duplicates"] > 0  # resent batches were dropped, not stored twice
    ck = sorted((run / "checkpoints").glob("ckpt-*"))[-1]
    state = json.loads((ck / "state.json").read_text())
    assert state["env_steps"] == produced
    assert "resumed from" in log


def test_train_with_workers_runs_server_trainer_and_workers(tmp_path):
    """`evo-rl train --workers 2`: one command, three kinds of processes, one run folder."""
    out = tmp_path / "train.log"
    p = _evo(
        "train", "--workers", "2", "--minutes", "0.4", "--name", "w2",
        *[o for o in _tiny_overrides()], f"train.runs_dir={tmp_path / 'runs'}", "train.checkpoint_every_minutes=0.1",
        log=out,
    )  # fmt: skip
    try:
        assert p.wait(150) == 0, out.read_text()[-3000:]
    finally:
        _stop(p, signal.SIGKILL, 5)
    run = tmp_path / "runs" / "w2"
    st = _status(run)
    assert set(st) == {"0", "1"} and all(w["received"] > 0 and w["episodes"] > 0 for w in st.values()), st
    assert (run / "policy.safetensors").is_file()
    state = json.loads((sorted((run / "checkpoints").glob("ckpt-*"))[-1] / "state.json").read_text())
    assert 0 < state["updates"] <= 0.25 * state["env_steps"] + 1  # never above train.updates_per_step
    # simulator workers wait while updates are owed, so none is skipped: the ratio is exact
    assert json.loads((run / "dist.json").read_text())["updates_skipped"] == 0
    assert "worker 0 joined" in (run / "logs" / "worker-0.log").read_text()
    assert yaml.safe_load((run / "config.yaml").read_text())["dist"]["max_workers"] == 2


def test_pause_and_resume_reach_every_worker(tmp_path):
    """`evo-rl pause RUN` stops the workers' acting, `evo-rl resume RUN` lets them go on; one Ctrl-C stops all."""
    out = tmp_path / "train.log"
    runs = tmp_path / "runs"
    p = _evo(
        "train", "--workers", "2", "--minutes", "10", "--name", "p", *_tiny_overrides(), f"train.runs_dir={runs}",
        log=out,
    )  # fmt: skip
    run = runs / "p"

    def total() -> int:  # transitions the workers produced (their spools' state is written at every batch)
        n = 0
        for i in range(2):
            try:
                n += json.loads((run / "spool" / f"worker-{i}" / "state.json").read_text())["produced"]
            except (OSError, ValueError, KeyError):
                pass
        return n

    try:
        _wait_for("transitions", lambda: total() > 0, 120, [p])
        control = [sys.executable, "-m", "evo_rl"]
        subprocess.run([*control, "pause", str(run)], check=True, capture_output=True, timeout=60)
        logs = [run / "logs" / f"worker-{i}.log" for i in range(2)]
        _wait_for("both workers paused", lambda: all("paused by the trainer" in f.read_text() for f in logs), 30, [p])
        time.sleep(2.0)  # batches in flight arrive
        frozen = total()
        time.sleep(3.0)
        assert total() == frozen  # nothing acted while paused
        subprocess.run([*control, "resume", str(run)], check=True, capture_output=True, timeout=60)
        _wait_for("transitions after the resume", lambda: total() > frozen, 60, [p])
        assert all("resumed by the trainer" in f.read_text() for f in logs)
        p.send_signal(signal.SIGINT)  # Ctrl-C: the trainer saves, the workers spool, all stop
        assert p.wait(60) in (0, 130), out.read_text()[-3000:]
    finally:
        _stop(p, signal.SIGKILL, 5)


def _tiny_overrides() -> list[str]:
    from conftest import TINY_TRAIN

    return [*TINY_TRAIN, "train.eval_every_minutes=1000", "memory.capacity=20000"]


# --------------------------------------------------------------------------- the server under attack


class _ServerThread:
    def __init__(self, cfg):
        from evo_rl.dist.server import Server

        self.lines: list[str] = []
        self.server = Server(cfg, log=self.lines.append)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.stop()
        self.thread.join(10)


def _client(ctx, port):
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(f"tcp://127.0.0.1:{port}")
    return s


def _ask(sock, kind, meta, timeout_ms=3000):
    sock.send_multipart(wire.encode(kind, meta))
    assert sock.poll(timeout_ms), f"no answer to {kind}"
    return wire.decode(sock.recv_multipart())


def test_the_server_survives_100k_malformed_messages_and_serves_honest_clients(tmp_path):
    port = free_port()
    cfg = tiny_config(f"dist.port={port}")
    srv = _ServerThread(cfg)
    ctx = zmq.Context()
    try:
        honest = _client(ctx, port)
        assert _ask(honest, "hello", {"role": "worker", "worker": 0, "name": "honest"}).kind == "welcome"
        rng = np.random.default_rng(0)
        valid = [bytes(f) for f in wire.encode("batch", {"worker": 0, "seq": 1}, {"x": np.arange(10.0)})]
        attackers = [_client(ctx, port) for _ in range(4)]
        sent = 0
        for i in range(100_000):
            kind = i % 5
            if kind == 0:
                msg = [rng.bytes(int(rng.integers(0, 64)))]
            elif kind == 1:  # a valid message, truncated
                msg = [valid[0][: int(rng.integers(0, len(valid[0])))], valid[1]]
            elif kind == 2:  # bit flips in the envelope
                env = bytearray(valid[0])
                env[int(rng.integers(0, len(env)))] ^= 1 << int(rng.integers(0, 8))
                msg = [bytes(env), valid[1]]
            elif kind == 3:  # frames missing or extra
                msg = valid[:1] if i % 2 else [*valid, b"extra"]
            else:  # well-formed but not allowed: a batch before hello, an old protocol version
                msg = wire.encode("batch", {"worker": 0, "seq": 9}) if i % 2 else _old_version_hello()
            attackers[i % 4].send_multipart(msg)
            sent += 1
            if i % 2000 == 0:  # the honest client keeps its connection alive, as a worker does
                honest.send_multipart(wire.encode("ping", {}))
        assert sent == 100_000
        # the honest client is still served, while the garbage drains
        replies = []
        while honest.poll(10_000 if not replies else 2000):
            replies.append(wire.decode(honest.recv_multipart()).kind)
            if len(replies) == 50:
                break
        assert replies == ["pong"] * 50
        _wait_for("the garbage to drain", lambda: srv.server.stats["malformed"] + srv.server.stats["unknown_peer"]
                  + srv.server.stats["refused"] >= 90_000, 60)  # fmt: skip
        assert _ask(honest, "ping", {}).kind == "pong"
        assert srv.thread.is_alive()
        assert any("malformed message dropped" in line for line in srv.lines)
    finally:
        srv.stop()
        ctx.destroy(0)


def _old_version_hello() -> list[bytes]:
    import msgpack

    return [msgpack.packb({"v": wire.PROTOCOL + 1, "k": "hello", "m": {"role": "worker"}, "a": [], "z": "none"})]


def test_a_config_that_differs_in_what_matters_is_refused(tmp_path):
    port = free_port()
    srv = _ServerThread(tiny_config(f"dist.port={port}"))
    ctx = zmq.Context()
    try:
        from evo_rl.dist.common import matters

        sock = _client(ctx, port)
        other = matters(tiny_config("env.flavour=lidar_progress", "algo.name=redq"))
        reply = _ask(sock, "hello", {"role": "trainer", "name": "x", "matters": other})
        assert reply.kind == "refused"
        assert "env.flavour" in reply.meta["why"] and "algo.name" in reply.meta["why"]
        reply = _ask(sock, "hello", {"role": "worker", "worker": 7, "name": "x"})
        assert reply.kind == "refused" and "dist.max_workers" in reply.meta["why"]
    finally:
        srv.stop()
        ctx.destroy(0)


def test_plaintext_beyond_loopback_is_refused_and_keys_are_enforced(tmp_path):
    from evo_rl.cli import main
    from evo_rl.dist.common import client_socket, send, server_socket

    with pytest.raises(DistError, match="dist.keys_dir"):
        server_socket(zmq.Context.instance(), tiny_config("dist.host=10.1.2.3"), print)
    keys = tmp_path / "keys"
    assert main(["keys", "generate", str(keys)]) == 0
    assert sorted(p.name for p in (keys / "allowed").iterdir()) == ["trainer.key", "worker.key"]
    port = free_port()
    srv = _ServerThread(tiny_config(f"dist.port={port}", f"dist.keys_dir={keys}"))
    ctx = zmq.Context()
    try:
        good = client_socket(ctx, tiny_config(f"dist.port={port}", f"dist.keys_dir={keys}"), "worker")
        assert _ask(good, "hello", {"role": "worker", "worker": 0, "name": "good"}).kind == "welcome"
        stranger = tmp_path / "stranger"
        assert main(["keys", "generate", str(stranger)]) == 0
        (stranger / "server.key").write_bytes((keys / "server.key").read_bytes())  # knows the server, not allowed
        bad = client_socket(ctx, tiny_config(f"dist.port={port}", f"dist.keys_dir={stranger}"), "worker")
        # the handshake fails, so the message is either never queued (IMMEDIATE) or never answered
        send(bad, wire.encode("hello", {"role": "worker", "worker": 1, "name": "bad"}))
        assert not bad.poll(1500), "a client with an unknown key was answered"
        with pytest.raises(DistError, match="refused this worker's key"):  # and a worker says why it cannot join
            join(client_socket(ctx, tiny_config(f"dist.port={port}", f"dist.keys_dir={stranger}"), "worker"),
                 {"role": "worker", "worker": 1, "name": "bad"}, 10.0, threading.Event(), print)  # fmt: skip
        plain = _client(ctx, port)
        send(plain, wire.encode("hello", {"role": "worker", "worker": 1, "name": "plain"}))
        assert not plain.poll(1000), "a plaintext client was answered by a CurveZMQ server"
        assert _ask(good, "ping", {}).kind == "pong"  # the honest client is unharmed
        _wait_for("the refusal in the log", lambda: any("denied" in ln.lower() or "refused" in ln.lower()
                                                         for ln in srv.lines), 5)  # fmt: skip
    finally:
        srv.stop()
        ctx.destroy(0)


# --------------------------------------------------------------------------- the benchmark


def test_bench_transport_counts_every_batch_once_and_loads_every_broadcast():
    from evo_rl.bench.transport import TransportBenchError, run
    from evo_rl.train.policy import build_actor

    out = run(
        workers=2, seconds=0.5, warmup=0.2, broadcast_workers=2, broadcasts=2,
        batch_steps=64, compress=["none", "lz4"], obs=["lidar"], tmrl=False,
    )  # fmt: skip
    for c in ("none", "lz4"):
        r = out["evo_rl"]["lidar"][c]
        assert r["batches"] > 0 and r["duplicates"] == 0 and r["gaps"] == 0
        assert r["transitions_per_s"] == pytest.approx(sum(r["transitions_per_s_per_worker"]), rel=1e-3)
        assert all(v > 0 for v in r["transitions_per_s_per_worker"])
        # one newest LIDAR frame (19 float32), an action (3 float32) and flags per transition, plus the envelope
        assert 19 * 4 + 3 * 4 < r["bytes_per_transition"] < 400
    b = out["evo_rl"]["broadcast"]["lidar"]
    actor = build_actor(load_config(None, ["env.flavour=lidar"]))  # the bench's actor: the default config
    params = sum(v.numel() * v.element_size() for v in actor.state_dict().values())
    assert params < b["weights_bytes"] < params + 8192  # safetensors: the tensors and a small header
    assert 0 < b["all_loaded_median_ms"] <= b["all_loaded_max_ms"]
    assert out["tmrl"] is None and out["ratio_evo_rl_over_tmrl"] is None
    with pytest.raises(TransportBenchError, match="unknown"):
        run(obs=["pixels"], tmrl=False)
