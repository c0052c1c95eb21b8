"""``evo-rl bench transport``: sample batches and weights through EVO RL's relay, and through TMRL's (tlspyo).

**Throughput.** ``workers`` rollout-worker *processes* send sample batches through a real
:class:`~evo_rl.dist.server.Server` on loopback TCP to one trainer-side receiver (this process).
A worker's batch holds ``batch_steps`` transitions (``env.n_envs`` cars x steps) of random data with
the real shapes and dtypes, made once; it is encoded with :func:`~evo_rl.dist.common.encode_batch`
every time it is sent, with its own ``seq``, as :class:`~evo_rl.dist.worker.Worker` encodes every
batch it gathers, and every worker keeps at most ``window(batch_steps)`` unacknowledged batches
(4096 transitions' worth, as :class:`~evo_rl.dist.worker.Worker`). The
receiver decodes every message (:func:`wire.decode`, then :func:`~evo_rl.dist.common.decode_batch`,
which checks every array against the layout), accepts it in sequence order and acks it, as the
trainer does. Timed for ``seconds`` after ``warmup`` seconds from the moment every worker's first
batch arrived; for LIDAR observations (the default ``env.flavour=lidar``) and 64x64 images
(``env.flavour=full``), without compression and with lz4. Reported: transitions/s in total and per
worker, MB/s (10^6 bytes) and bytes per transition (message bytes / transitions), and where the
CPU went: cores used by the workers, the server and the receiver over the timed window (from
/proc), the receiver's microseconds per batch in ``wire.decode``, ``decode_batch`` and the ack, and
the workers' in ``encode_batch``.

**Weights.** The trainer (this process) publishes its actor's weights ``broadcasts`` times to
``broadcast_workers`` worker processes, as :class:`~evo_rl.dist.trainer.DistTrainer` does
(``wire.weights_to_bytes`` of the actor's state dict, one ``weights`` message the server sends to
every worker); the latency of one broadcast runs from the start of the publish (serialisation
included) until a worker has decoded the message and loaded the weights (``load_state_dict``), as
:class:`~evo_rl.dist.worker.Worker` does. ``time.monotonic`` is system-wide on Linux; the workers
report their times over a multiprocessing queue. One untimed broadcast first, so every worker has
loaded weights once. For the SAC LIDAR actor and the CNN actor (``env.flavour=full``).

**TMRL** (``tmrl=True``, needs ``pip install tlspyo``; imported only here): the same through
tlspyo, TMRL's relay, built as TMRL builds it (tmrl/networking.py): a ``Relay`` with TMRL's groups
(one "trainers", up to N "workers"), worker ``Endpoint`` processes (TMRL's RolloutWorker settings:
header 12 bytes, synchronous deserialisation) that ``produce`` a TMRL ``Buffer`` to "trainers"
(TMRL's ``send_and_clear_buffer``: the Buffer is pickled at every send), and a trainer Endpoint
that gets them as TMRL's TrainerInterface does (``receive_all()`` then
``notify({"trainers": -1})``). A Buffer holds one sample per step, as TMRL's sample compressors
make them: (previous action, observation, reward, terminated, truncated, info), where the LIDAR
observation is (speed, the whole LIDAR history [hist_len, 19]: TMRL's ``obs[1][-19:]`` slices the
history axis and keeps every frame) and the image observation (speed, gear, rpm, the newest 64x64
image). Weights are broadcast as TMRL's ``broadcast_model`` does: the bytes of ``torch.save`` of the
actor's state dict (here the same EVO RL actors, so the sizes match), which a worker loads with
``torch.load(weights_only=True)`` + ``load_state_dict``. TLS is off, as in TMRL's default
config.json (``"TLS": false``). The bench gives TMRL the same window of unconsumed Buffers per worker
too (TMRL has no flow control; without one the queues would grow without bound), the trainer
polls continuously (TMRL retrieves every 100 updates) and the workers wait for weights with a
blocking ``receive_all`` (TMRL looks between episodes): TMRL's best case. tlspyo's relay binds
every interface; the bench narrows it to 127.0.0.1.

Every measurement runs in fresh child processes ("spawn"), each in its own process group, with a
watchdog that ends the group when this process is gone or the measurement's deadline passed; this
process ends every group it started when a measurement ends, whatever happened.
"""

from __future__ import annotations

import importlib.util
import io
import multiprocessing as mp
import os
import pickle
import queue
import secrets
import signal
import socket
import statistics
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from evo_rl.errors import EvoError

STARTUP_SECONDS = 120.0  # longest wait for the processes of one measurement to start and join
BROADCAST_TIMEOUT = 30.0  # longest wait for every worker to load one broadcast
RESEND_SECONDS = 2.0  # a window without an ack for this long is sent again (as dist.resend_seconds)
FLAVOURS = {"lidar": "lidar", "images": "full"}  # observation kind -> env.flavour
ACTORS = {"lidar": "lidar", "images": "cnn"}  # observation kind -> the name of its actor in the results
TARGET_LIDAR_PER_S = 50_000  # issue 10 §6, on a 2-core machine
TARGET_VS_TMRL = 10.0
# TMRL's defaults (its config.json / tmrl/networking.py)
TMRL_HEADER_SIZE = 12
TMRL_BUFFER_SIZE = 536_870_912
TMRL_SECURITY = None  # "TLS": false


class TransportBenchError(EvoError):
    """A process of the transport bench failed, or did not answer in time."""


def _quiet(text: str) -> None:
    pass


class _NeverSet:
    def is_set(self) -> bool:
        return False


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid``, all its threads (Linux /proc); None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _cores(
    pids: Sequence[int], before: dict[int, float | None], after: dict[int, float | None], span: float
) -> float | None:
    total = 0.0
    for pid in pids:
        a, b = before.get(pid), after.get(pid)
        if a is None or b is None:
            return None
        total += b - a
    return round(total / span, 3)


def _snapshot(pids: Sequence[int]) -> dict[int, float | None]:
    return {pid: _cpu_seconds(pid) for pid in pids}


# --------------------------------------------------------------------------- sample data


def _config(port: int, flavour: str, max_workers: int) -> Any:
    from evo_rl.config import load_config

    return load_config(
        None, [f"env.flavour={flavour}", "dist.host=127.0.0.1", f"dist.port={port}", f"dist.max_workers={max_workers}"]
    )


def _layout(cfg: Any) -> Any:
    from evo_rl.envs.spaces import observation_space
    from evo_rl.memory.layout import ObsLayout

    return ObsLayout.from_space(observation_space(cfg), cfg.env.hist_len, cfg.env.act_buf_len, cfg.env.flavour)


def _images(n: int, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Grey first-person frames: sky, a road narrowing to the horizon, verges, and a little noise."""
    y = np.arange(h)[:, None]
    x = np.arange(w)[None, :]
    horizon = int(0.4 * h)
    road = (y > horizon) & (np.abs(x - w / 2) < (y - horizon) * 0.9 + 2)
    base = np.where(y <= horizon, 190, np.where(road, 90, 140)).astype(np.int16)
    return np.clip(base + rng.integers(-4, 5, (n, h, w)), 0, 255).astype(np.uint8)


def _frames(name: str, shape: tuple[int, ...], dtype: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if np.dtype(dtype) == np.uint8 and len(shape) == 2:
        return _images(n, shape[0], shape[1], rng)
    if np.dtype(dtype) == np.uint8:
        return rng.integers(0, 256, (n, *shape)).astype(np.uint8)
    if name == "gear":
        return rng.integers(0, 6, (n, *shape)).astype(dtype)
    high = {"speed": 300.0, "rpm": 11_000.0, "progress": 1.0}.get(name, 100.0)  # LIDAR: metres, up to lidar.range
    return rng.uniform(0.0, high, (n, *shape)).astype(dtype)


def _steps(cfg: Any, layout: Any, batch_steps: int, rng: np.random.Generator) -> list[Any]:
    """One batch: ``batch_steps`` transitions of ``env.n_envs`` cars (one episode ends in it, so a
    final frame and an episode summary travel too, as they often do)."""
    from evo_rl.train.collect import EpisodeEnd, Transitions

    cars = cfg.env.n_envs
    t = max(1, -(-batch_steps // cars))
    out = []
    for j in range(t):
        term = np.zeros(cars, np.bool_)
        trunc = np.zeros(cars, np.bool_)
        if j == t // 2:
            term[j % cars] = True
        k = int((term | trunc).sum())
        episodes = [
            EpisodeEnd(ret=12.5, steps=800, checkpoints=3, finished=False, reason="crash", race_time=40.0,
                       progress=0.42, terms={"progress": 14.0, "crash": -1.5})
        ] if k else []  # fmt: skip
        out.append(
            Transitions(
                frames=[_frames(f.name, f.shape, f.dtype, cars, rng) for f in layout.fields],
                action=rng.uniform(-1.0, 1.0, (cars, layout.act_dim)).astype(np.float32),
                reward=rng.normal(0.0, 1.0, cars).astype(np.float32),
                terminated=term,
                truncated=trunc,
                final_frames=[_frames(f.name, f.shape, f.dtype, k, rng) for f in layout.fields],
                episodes=episodes,
            )
        )
    return out


class Buffer:
    """TMRL's ``tmrl.networking.Buffer`` (what its RolloutWorker sends): samples and episode statistics.
    ``worker`` and ``seq`` are the bench's, for its flow-control window."""

    def __init__(self, maxlen: int = 1_000_000) -> None:
        self.memory: list[Any] = []
        self.stat_train_return = 0.0
        self.stat_test_return = 0.0
        self.stat_train_steps = 0
        self.stat_test_steps = 0
        self.maxlen = maxlen
        self.worker = 0
        self.seq = 0

    def __len__(self) -> int:
        return len(self.memory)

    def __iadd__(self, other: Buffer) -> Buffer:
        self.memory += other.memory
        self.stat_train_return = other.stat_train_return
        self.stat_test_return = other.stat_test_return
        self.stat_train_steps = other.stat_train_steps
        self.stat_test_steps = other.stat_test_steps
        return self


def _tmrl_buffer(kind: str, samples: int, worker: int, rng: np.random.Generator) -> Buffer:
    """A TMRL Buffer of ``samples`` steps, each sample as TMRL's sample compressor makes it
    (tmrl/custom/custom_memories.py): ``(prev_act, obs, rew, terminated, truncated, info)``."""
    cfg = _config(9300, FLAVOURS[kind], 1)
    hist, h, w = cfg.env.hist_len, cfg.camera.height, cfg.camera.width
    from evo_rl.envs.spaces import lidar_beams

    beams = lidar_beams(cfg)
    buf = Buffer()
    buf.worker = worker
    for i in range(samples):
        act = rng.uniform(-1.0, 1.0, 3).astype(np.float32)
        speed = rng.uniform(0.0, 300.0, 1).astype(np.float32)
        if kind == "lidar":  # get_local_buffer_sample_lidar: (obs[0], obs[1][-19:]) = speed and all hist_len frames
            obs: tuple[Any, ...] = (speed, rng.uniform(0.0, 100.0, (hist, beams)).astype(np.float32))
        else:  # get_local_buffer_sample_tm20_imgs: speed, gear, rpm and the newest image, uint8
            gear = np.array([float(rng.integers(0, 6))], np.float32)
            rpm = rng.uniform(0.0, 11_000.0, 1).astype(np.float32)
            obs = (speed, gear, rpm, _images(1, h, w, rng)[0])
        buf.memory.append((act, obs, np.float32(rng.normal()), i == samples // 2, False, {}))
    return buf


# --------------------------------------------------------------------------- child processes


def _child(fn: Callable[..., None], deadline: float, q: Any, stop: Any, kw: dict[str, Any]) -> None:
    """Every bench process: its own process group (the parent ends it, with whatever it started, by
    its id), a watchdog that ends the group when the parent is gone or ``deadline`` passed, and its
    failure reported on ``q``."""
    os.setpgrp()
    parent = os.getppid()

    def watchdog() -> None:
        while os.getppid() == parent and time.monotonic() < deadline:
            time.sleep(0.25)
        os.killpg(os.getpgrp(), signal.SIGKILL)

    threading.Thread(target=watchdog, daemon=True).start()
    import logging

    logging.getLogger("tlspyo").setLevel(logging.ERROR)
    try:
        fn(q, stop, **kw)
    except BaseException:
        q.put(("error", mp.current_process().name, traceback.format_exc()))
        raise


class _Group:
    """The child processes of one measurement and their messages; :meth:`close` ends them all."""

    def __init__(self, seconds: float) -> None:
        self.ctx = mp.get_context("spawn")
        self.q: Any = self.ctx.Queue()
        self.stop: Any = self.ctx.Event()  # the clients: workers, trainers
        self.stop_relay: Any = self.ctx.Event()  # the server or relay, once the clients are gone
        self.deadline = time.monotonic() + seconds
        self.procs: list[tuple[Any, bool]] = []
        self.backlog: list[tuple[str, str, Any]] = []
        self.pids: dict[str, list[int]] = {}  # name -> the pids of that child and of what it started

    def start(self, fn: Callable[..., None], name: str, relay: bool = False, **kw: Any) -> Any:
        stop = self.stop_relay if relay else self.stop
        p = self.ctx.Process(target=_child, args=(fn, self.deadline, self.q, stop, kw), name=name)
        p.start()
        self.procs.append((p, relay))
        self.pids[name] = [int(p.pid)]
        return p

    def _note(self, m: tuple[str, str, Any]) -> tuple[str, str, Any]:
        """A message as it arrives: a failure is raised, the processes a child started are noted."""
        if m[0] == "error":
            raise TransportBenchError(f"bench process {m[1]} failed:\n{m[2]}")
        if m[0] == "up":
            self.pids.setdefault(m[1], []).extend(m[2].get("children", []))
        return m

    def check(self) -> None:
        for p, _ in self.procs:
            if p.exitcode not in (None, 0):
                try:
                    while True:
                        self.backlog.append(self._note(self.q.get(timeout=0.5)))
                except queue.Empty:
                    pass
                raise TransportBenchError(f"bench process {p.name} exited with code {p.exitcode}")

    def take(
        self, kind: str, n: int = 1, timeout: float = STARTUP_SECONDS, match: Callable[[Any], bool] | None = None
    ) -> list[tuple[str, str, Any]]:
        """The next ``n`` messages of ``kind`` (others wait in the backlog), or TransportBenchError."""
        got: list[tuple[str, str, Any]] = []
        ok = lambda m: m[0] == kind and (match is None or match(m[2]))  # noqa: E731
        for m in list(self.backlog):
            if len(got) < n and ok(m):
                self.backlog.remove(m)
                got.append(m)
        end = time.monotonic() + timeout
        while len(got) < n:
            try:
                m = self.q.get(timeout=0.2)
            except queue.Empty:
                self.check()
                if time.monotonic() > end:
                    raise TransportBenchError(
                        f"timed out after {timeout:g} s waiting for {n} {kind!r} messages"
                    ) from None
                continue
            (got if ok(self._note(m)) else self.backlog).append(m)
        return got

    def close(self, grace: float = 15.0) -> None:
        """Stop the clients, then the relay; whatever is left, and whatever they started, is killed."""
        for event, relay in ((self.stop, False), (self.stop_relay, True)):
            event.set()
            end = time.monotonic() + grace
            for p, r in self.procs:
                if r == relay:
                    p.join(max(0.0, end - time.monotonic()))
        for p, _ in self.procs:
            if p.is_alive():
                p.terminate()
                p.join(2.0)
        for p, _ in self.procs:
            try:
                os.killpg(int(p.pid), signal.SIGKILL)  # its group: tlspyo's Twisted processes it started
            except (ProcessLookupError, PermissionError):
                pass
            if p.is_alive():
                p.kill()
            p.join(2.0)
        self.q.close()
        self.q.cancel_join_thread()


def _take_local(q: Any, backlog: list[Any], n: int, match: Callable[[Any], bool], timeout: float) -> list[Any]:
    """``n`` messages matching ``match`` from ``q`` (in a child), others kept in ``backlog``."""
    got = [m for m in backlog if match(m)][:n]
    for m in got:
        backlog.remove(m)
    end = time.monotonic() + timeout
    while len(got) < n:
        try:
            m = q.get(timeout=max(0.01, end - time.monotonic()))
        except queue.Empty:
            raise TransportBenchError(f"only {len(got)} of {n} workers answered within {timeout:g} s") from None
        (got if match(m) else backlog).append(m)
    return got


# --------------------------------------------------------------------------- EVO RL: processes


def _evo_server(q: Any, stop: Any, *, port: int, max_workers: int) -> None:
    from evo_rl.dist.server import Server

    server = Server(_config(port, "lidar", max_workers), log=_quiet)

    def stopper() -> None:
        stop.wait()
        server.stop()

    threading.Thread(target=stopper, daemon=True).start()
    q.put(("up", "evo-server", {}))
    server.run()


def _evo_worker(
    q: Any, stop: Any, *, port: int, flavour: str, worker: int, compress: str, batch_steps: int, max_workers: int
) -> None:
    import zmq

    from evo_rl.dist import wire
    from evo_rl.dist.common import client_socket, encode_batch, send
    from evo_rl.dist.worker import join, window

    cfg = _config(port, flavour, max_workers)
    steps = _steps(cfg, _layout(cfg), batch_steps, np.random.default_rng(worker))
    ctx = zmq.Context()
    sock = client_socket(ctx, cfg, "worker")
    encode_s, encoded, resent = 0.0, 0, 0
    try:
        join(sock, {"role": "worker", "worker": worker, "name": f"bench-{worker}"}, STARTUP_SECONDS, stop, _quiet)
        acked, cursor = 0, 1
        last_ack = next_ping = 0.0
        while not stop.is_set():
            now = time.monotonic()
            if now >= next_ping:
                send(sock, wire.encode("ping", {"worker": worker}))
                next_ping = now + 1.0
            if cursor > acked + 1 and now - last_ack > RESEND_SECONDS:
                cursor, last_ack = acked + 1, now  # nothing acknowledged for a while: the window goes again
                resent += 1
            while cursor - acked <= window(batch_steps):
                t0 = time.perf_counter()
                meta = {"worker": worker, "seq": cursor, "session": 1, "first": 1,
                        "stats": {"steps_per_s": 0.0, "weights_updates": 0, "version": -1, "spooled": cursor - acked}}  # fmt: skip
                frames, _ = encode_batch(steps, meta, compress)
                encode_s += time.perf_counter() - t0
                encoded += 1
                if not send(sock, frames):
                    break
                if cursor == acked + 1:
                    last_ack = max(last_ack, now)
                cursor += 1
            if not sock.poll(50, zmq.POLLIN):
                continue
            for _ in range(1000):
                try:
                    msg = wire.decode(sock.recv_multipart(flags=zmq.NOBLOCK, copy=False))
                except zmq.Again:
                    break
                if msg.kind == "ack" and msg.meta.get("worker") == worker:
                    acked = max(acked, int(msg.meta["seq"]))
                    last_ack = time.monotonic()
        q.put(
            (
                "done",
                f"evo-worker-{worker}",
                {"worker": worker, "encoded": encoded, "encode_s": encode_s, "resent": resent},
            )
        )
    finally:
        send(sock, wire.encode("bye", {"worker": worker}))
        time.sleep(0.05)
        sock.close(0)
        ctx.term()


def _evo_weights_worker(q: Any, stop: Any, *, port: int, worker: int, kinds: list[str], max_workers: int) -> None:
    import torch
    import zmq

    from evo_rl.dist import wire
    from evo_rl.dist.common import client_socket, send
    from evo_rl.dist.worker import join
    from evo_rl.train.policy import build_actor

    torch.set_num_threads(1)
    actors = {ACTORS[k]: build_actor(_config(port, FLAVOURS[k], max_workers)).eval() for k in kinds}
    cfg = _config(port, "lidar", max_workers)
    ctx = zmq.Context()
    sock = client_socket(ctx, cfg, "worker")
    name = f"evo-weights-worker-{worker}"
    try:
        join(sock, {"role": "worker", "worker": worker, "name": name}, STARTUP_SECONDS, stop, _quiet)
        q.put(("ready", name, {"worker": worker}))
        next_ping = 0.0
        while not stop.is_set():
            if time.monotonic() >= next_ping:
                send(sock, wire.encode("ping", {"worker": worker}))
                next_ping = time.monotonic() + 1.0
            if not sock.poll(100, zmq.POLLIN):
                continue
            for _ in range(100):
                try:
                    msg = wire.decode(sock.recv_multipart(flags=zmq.NOBLOCK, copy=False))
                except zmq.Again:
                    break
                if msg.kind != "weights":
                    continue
                # as Worker._load_weights
                tensors, _ = wire.weights_from_bytes(msg.arrays["safetensors"].tobytes())
                with torch.no_grad():
                    actors[msg.meta["actor"]].load_state_dict(tensors)
                t = time.monotonic()
                q.put(
                    (
                        "loaded",
                        name,
                        {"worker": worker, "actor": msg.meta["actor"], "version": msg.meta["version"], "t": t},
                    )
                )
    finally:
        send(sock, wire.encode("bye", {"worker": worker}))
        time.sleep(0.05)
        sock.close(0)
        ctx.term()


# --------------------------------------------------------------------------- EVO RL: measurements


def _evo_connect(cfg: Any) -> tuple[Any, Any]:
    import zmq

    from evo_rl.dist.common import client_socket
    from evo_rl.dist.worker import join

    ctx = zmq.Context()
    sock = client_socket(ctx, cfg, "trainer")
    try:
        join(sock, {"role": "trainer", "name": "bench-trainer"}, STARTUP_SECONDS, _NeverSet(), _quiet)  # type: ignore[arg-type]
    except BaseException:
        sock.close(0)
        ctx.term()
        raise
    return ctx, sock


def _evo_disconnect(ctx: Any, sock: Any) -> None:
    from evo_rl.dist import wire
    from evo_rl.dist.common import send

    send(sock, wire.encode("bye"))
    time.sleep(0.05)
    sock.close(0)
    ctx.term()


def _evo_throughput(
    kind: str, compress: str, workers: int, seconds: float, warmup: float, batch_steps: int
) -> dict[str, Any]:
    import zmq

    from evo_rl.dist import wire
    from evo_rl.dist.common import decode_batch, send

    port = _free_ports(1)[0]
    cfg = _config(port, FLAVOURS[kind], workers)
    layout = _layout(cfg)
    cars = cfg.env.n_envs
    g = _Group(STARTUP_SECONDS + warmup + seconds + 60.0)
    conn: tuple[Any, Any] | None = None
    try:
        g.start(_evo_server, "evo-server", relay=True, port=port, max_workers=workers)
        g.take("up")
        conn = _evo_connect(cfg)
        sock = conn[1]
        for w in range(workers):
            g.start(_evo_worker, f"evo-worker-{w}", port=port, flavour=FLAVOURS[kind], worker=w, compress=compress,
                    batch_steps=batch_steps, max_workers=workers)  # fmt: skip
        last = dict.fromkeys(range(workers), 0)  # last accepted seq of every worker
        got = dict.fromkeys(range(workers), 0)  # transitions accepted in the timed window
        nbytes = batches = duplicates = gaps = 0
        t_decode = t_check = t_ack = 0.0
        started: set[int] = set()
        t_begin = t_end = None
        measuring = False
        cpu0: dict[int, float | None] = {}
        pids: list[int] = []
        give_up = time.monotonic() + STARTUP_SECONDS
        next_ping = next_check = 0.0
        while True:
            now = time.monotonic()
            if t_begin is None:
                if len(started) == workers:
                    t_begin = now + warmup
                elif now > give_up:
                    raise TransportBenchError(
                        f"only {len(started)} of {workers} workers sent a batch within {STARTUP_SECONDS:g} s"
                    )
            if t_begin is not None and not measuring and now >= t_begin:
                pids = [pid for ps in g.pids.values() for pid in ps] + [os.getpid()]
                cpu0 = _snapshot(pids)
                t_begin = time.monotonic()
                t_end = t_begin + seconds
                measuring = True
            if t_end is not None and now >= t_end:
                t_end = time.monotonic()
                cpu1 = _snapshot(pids)
                break
            if now >= next_ping:
                send(sock, wire.encode("ping"))
                next_ping = now + 1.0
            if now >= next_check:
                g.check()
                next_check = now + 0.5
            if not sock.poll(20, zmq.POLLIN):
                continue
            for _ in range(64):
                try:
                    frames = sock.recv_multipart(flags=zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                t0 = time.perf_counter()
                msg = wire.decode(frames)
                t1 = time.perf_counter()
                if msg.kind != "batch":
                    continue
                steps, _episodes = decode_batch(msg, layout, cars)
                t2 = time.perf_counter()
                w, seq = int(msg.meta["worker"]), int(msg.meta["seq"])
                fresh = seq == last[w] + 1
                if fresh:
                    last[w] = seq
                if seq <= last[w]:
                    send(sock, wire.encode("ack", {"worker": w, "seq": last[w], "expect": last[w] + 1, "gap": False,
                                                   "durable": 0, "hold": False, "random": False, "env_steps": 0}))  # fmt: skip
                t3 = time.perf_counter()
                started.add(w)
                if measuring:
                    t_decode += t1 - t0
                    t_check += t2 - t1
                    t_ack += t3 - t2
                    if fresh:
                        got[w] += len(steps) * cars
                        nbytes += sum(f.buffer.nbytes for f in frames)
                        batches += 1
                    elif seq <= last[w]:
                        duplicates += 1
                    else:
                        gaps += 1
        g.stop.set()
        done = [m[2] for m in g.take("done", workers, timeout=30.0)]
    finally:
        if conn is not None:
            _evo_disconnect(*conn)
        g.close()
    assert t_begin is not None and t_end is not None
    span = t_end - t_begin
    total = sum(got.values())
    server_pids = g.pids["evo-server"]
    worker_pids = [pid for name, ps in g.pids.items() if name.startswith("evo-worker") for pid in ps]
    encoded = sum(d["encoded"] for d in done)
    return {
        "transitions_per_s": round(total / span, 1),
        "transitions_per_s_per_worker": [round(got[w] / span, 1) for w in range(workers)],
        "mb_per_s": round(nbytes / span / 1e6, 3),
        "bytes_per_transition": round(nbytes / total, 2) if total else None,
        "batches": batches,
        "transitions_per_batch": total // batches if batches else None,
        "seconds": round(span, 3),
        "duplicates": duplicates,
        "gaps": gaps,
        "resent_windows": sum(d["resent"] for d in done),
        "cpu_cores": {
            "workers": _cores(worker_pids, cpu0, cpu1, span),
            "server": _cores(server_pids, cpu0, cpu1, span),
            "receiver": _cores([os.getpid()], cpu0, cpu1, span),
        },
        "receiver_us_per_batch": {
            "wire_decode": round(1e6 * t_decode / max(1, batches + duplicates + gaps), 1),
            "decode_batch": round(1e6 * t_check / max(1, batches + duplicates + gaps), 1),
            "ack": round(1e6 * t_ack / max(1, batches + duplicates + gaps), 1),
        },
        "worker_encode_us_per_batch": round(1e6 * sum(d["encode_s"] for d in done) / max(1, encoded), 1),
    }


def _evo_broadcast(kinds: list[str], workers: int, broadcasts: int) -> dict[str, Any]:
    import torch

    from evo_rl.dist import wire
    from evo_rl.dist.common import send
    from evo_rl.train.policy import build_actor

    port = _free_ports(1)[0]
    cfg = _config(port, "lidar", workers)
    g = _Group(STARTUP_SECONDS + len(kinds) * (broadcasts + 1) * BROADCAST_TIMEOUT + 60.0)
    conn: tuple[Any, Any] | None = None
    out: dict[str, Any] = {}
    try:
        g.start(_evo_server, "evo-server", relay=True, port=port, max_workers=workers)
        g.take("up")
        for w in range(workers):
            g.start(
                _evo_weights_worker, f"evo-weights-worker-{w}", port=port, worker=w, kinds=kinds, max_workers=workers
            )
        g.take("ready", workers)
        conn = _evo_connect(cfg)  # once the workers are up: a silent peer is dropped after PEER_TIMEOUT
        sock = conn[1]
        for kind in kinds:
            actor_name = ACTORS[kind]
            actor = build_actor(_config(port, FLAVOURS[kind], workers))
            with torch.no_grad():
                weights = {k: v.detach().to("cpu").contiguous() for k, v in actor.state_dict().items()}
            sizes: dict[str, int] = {}

            def publish(version: int, weights: dict[str, Any] = weights, actor_name: str = actor_name) -> None:
                # as DistTrainer._publish
                data = wire.weights_to_bytes(weights, {"version": str(version)})
                meta = {"version": version, "updates": version, "env_steps": 0, "actor": actor_name}
                frames = wire.encode("weights", meta, {"safetensors": np.frombuffer(data, np.uint8)})
                send(sock, frames)
                sizes["weights"] = len(data)  # noqa: B023
                sizes["message"] = sum(memoryview(f).nbytes for f in frames)  # noqa: B023

            def loaded(version: int, actor_name: str = actor_name) -> Callable[[Any], bool]:
                return lambda d: d["actor"] == actor_name and d["version"] == version

            publish(0)  # untimed: every worker loads weights once
            g.take("loaded", workers, timeout=BROADCAST_TIMEOUT, match=loaded(0))
            all_loaded, each, serialise = [], [], []
            for v in range(1, broadcasts + 1):
                send(sock, wire.encode("ping"))
                t0 = time.monotonic()
                publish(v)
                serialise.append(time.monotonic() - t0)
                times = [m[2]["t"] - t0 for m in g.take("loaded", workers, timeout=BROADCAST_TIMEOUT, match=loaded(v))]
                all_loaded.append(max(times))
                each.extend(times)
                time.sleep(0.02)
            out[actor_name] = _latency_summary(sizes["weights"], sizes["message"], all_loaded, each, serialise)
    finally:
        if conn is not None:
            _evo_disconnect(*conn)
        g.close()
    return {"workers": workers, "broadcasts": broadcasts, **out}


def _latency_summary(
    weights_bytes: int, message_bytes: int, all_loaded: list[float], each: list[float], serialise: list[float]
) -> dict[str, Any]:
    ms = lambda x: round(1000.0 * x, 3)  # noqa: E731
    return {
        "weights_bytes": weights_bytes,
        "message_bytes": message_bytes,
        "all_loaded_median_ms": ms(statistics.median(all_loaded)),
        "all_loaded_max_ms": ms(max(all_loaded)),
        "per_worker_median_ms": ms(statistics.median(each)),
        "per_worker_max_ms": ms(max(each)),
        "serialise_send_median_ms": ms(statistics.median(serialise)),
    }


# --------------------------------------------------------------------------- TMRL (tlspyo): processes


def _tmrl_endpoint(port: int, local_port: int, password: str, group: str, synchronous: bool) -> Any:
    from tlspyo import Endpoint

    # TMRL's TrainerInterface / RolloutWorker endpoints (tmrl/networking.py) with its config.json defaults
    return Endpoint(
        ip_server="127.0.0.1",
        port=port,
        password=password,
        groups=group,
        local_com_port=local_port,
        header_size=TMRL_HEADER_SIZE,
        max_buf_len=TMRL_BUFFER_SIZE,
        security=TMRL_SECURITY,
        keys_dir=None,
        hostname="default",
        deserializer_mode="synchronous" if synchronous else "asynchronous",
    )


def _stop_endpoint(ep: Any, timeout: float = 15.0) -> None:
    """``ep.stop()`` (it waits for the relay's acks), bounded; its Twisted process is killed after."""
    t = threading.Thread(target=ep.stop, daemon=True)
    t.start()
    t.join(timeout)
    proc = getattr(ep, "_p", None)
    if proc is not None and proc.is_alive():
        proc.kill()
        proc.join(2.0)


def _tmrl_relay(q: Any, stop: Any, *, port: int, local_port: int, password: str, max_workers: int) -> None:
    from twisted.internet import tcp

    listen = tcp.Port.__init__

    def loopback(
        self: Any, port: int, factory: Any, backlog: int = 50, interface: str = "", reactor: Any = None
    ) -> None:
        listen(self, port, factory, backlog, interface or "127.0.0.1", reactor)  # tlspyo listens on every interface

    tcp.Port.__init__ = loopback  # type: ignore[method-assign]
    from tlspyo import Relay

    relay = Relay(
        port=port,
        password=password,
        accepted_groups={  # as TMRL's Server
            "trainers": {"max_count": 1, "max_consumables": None},
            "workers": {"max_count": max_workers, "max_consumables": None},
        },
        local_com_port=local_port,
        header_size=TMRL_HEADER_SIZE,
        security=TMRL_SECURITY,
        keys_dir=None,
    )
    q.put(("up", "tmrl-relay", {"children": [relay._p.pid]}))
    try:
        stop.wait()
    finally:
        t = threading.Thread(target=relay.stop, daemon=True)
        t.start()
        t.join(10.0)
        if relay._p.is_alive():
            relay._p.kill()


def _tmrl_worker(
    q: Any, stop: Any, *, port: int, local_port: int, password: str, worker: int, kind: str, samples: int, received: Any
) -> None:
    from evo_rl.dist.worker import window

    buf = _tmrl_buffer(kind, samples, worker, np.random.default_rng(worker))
    size = len(pickle.dumps(buf))
    ep = _tmrl_endpoint(port, local_port, password, "workers", synchronous=True)
    name = f"tmrl-worker-{worker}"
    q.put(("up", name, {"children": [ep._p.pid], "bytes": size}))
    produced, produce_s = 0, 0.0
    try:
        while not stop.is_set():
            if produced - received[worker] >= window(samples):
                time.sleep(0.0005)
                continue
            buf.seq = produced + 1
            t0 = time.perf_counter()
            ep.produce(buf, "trainers")  # TMRL's RolloutWorker.send_and_clear_buffer
            produce_s += time.perf_counter() - t0
            produced += 1
        q.put(("done", name, {"worker": worker, "produced": produced, "produce_s": produce_s, "bytes": size}))
    finally:
        _stop_endpoint(ep)


def _tmrl_trainer(
    q: Any,
    stop: Any,
    *,
    port: int,
    local_port: int,
    password: str,
    workers: int,
    received: Any,
    warmup: float,
    seconds: float,
) -> None:
    ep = _tmrl_endpoint(port, local_port, password, "trainers", synchronous=False)
    q.put(("up", "tmrl-trainer", {"children": [ep._p.pid]}))
    try:
        ep.notify(groups={"trainers": -1})
        got = dict.fromkeys(range(workers), 0)
        buffers = 0
        t_receive = 0.0
        started: set[int] = set()
        t_begin = t_end = None
        measuring = False
        give_up = time.monotonic() + STARTUP_SECONDS
        while not stop.is_set():
            now = time.monotonic()
            if t_begin is None:
                if len(started) == workers:
                    t_begin = now + warmup
                elif now > give_up:
                    raise TransportBenchError(
                        f"only {len(started)} of {workers} TMRL workers delivered within {STARTUP_SECONDS:g} s"
                    )
            if t_begin is not None and not measuring and now >= t_begin:
                q.put(("window", "tmrl-trainer", {"at": "start"}))
                t_begin = time.monotonic()
                t_end = t_begin + seconds
                measuring = True
            if t_end is not None and now >= t_end:
                t_end = time.monotonic()
                q.put(("window", "tmrl-trainer", {"at": "end"}))
                break
            t0 = time.perf_counter()
            objs = ep.receive_all(blocking=False)  # TMRL's TrainerInterface.retrieve_buffer
            res = Buffer()
            for b in objs:
                res += b
                received[b.worker] += 1
                started.add(b.worker)
                if measuring:
                    got[b.worker] += len(b)
                    buffers += 1
            ep.notify(groups={"trainers": -1})
            if measuring:
                t_receive += time.perf_counter() - t0
            if not objs:
                time.sleep(0.001)
        if t_begin is None or t_end is None:
            return
        span = t_end - t_begin
        q.put(("done", "tmrl-trainer", {"got": got, "buffers": buffers, "span": span, "receive_s": t_receive}))
        stop.wait()
    finally:
        _stop_endpoint(ep)


def _tmrl_weights_worker(
    q: Any, stop: Any, *, port: int, local_port: int, password: str, worker: int, kinds: list[str], loaded_q: Any
) -> None:
    import torch

    from evo_rl.train.policy import build_actor

    torch.set_num_threads(1)
    actors = {ACTORS[k]: build_actor(_config(9300, FLAVOURS[k], 1)).eval() for k in kinds}
    ep = _tmrl_endpoint(port, local_port, password, "workers", synchronous=True)
    name = f"tmrl-weights-worker-{worker}"
    q.put(("up", name, {"children": [ep._p.pid]}))
    try:
        end = time.monotonic() + STARTUP_SECONDS + len(kinds) * 40 * BROADCAST_TIMEOUT
        while time.monotonic() < end:
            objs = ep.receive_all(blocking=True)  # TMRL's RolloutWorker.update_actor_weights(blocking=True)
            if not objs:
                continue
            obj = objs[-1]  # TMRL loads the newest
            if obj == "stop":
                break
            actor_name, version, data = obj
            actors[actor_name].load_state_dict(torch.load(io.BytesIO(data), map_location="cpu", weights_only=True))  # noqa: B023
            t = time.monotonic()
            loaded_q.put({"worker": worker, "actor": actor_name, "version": version, "t": t})
    finally:
        _stop_endpoint(ep)


def _tmrl_weights_trainer(
    q: Any, stop: Any, *, port: int, local_port: int, password: str, kinds: list[str], workers: int, broadcasts: int,
    loaded_q: Any,
) -> None:  # fmt: skip
    import torch

    from evo_rl.train.policy import build_actor

    torch.set_num_threads(1)
    ep = _tmrl_endpoint(port, local_port, password, "trainers", synchronous=False)
    q.put(("up", "tmrl-weights-trainer", {"children": [ep._p.pid]}))
    backlog: list[Any] = []
    out: dict[str, Any] = {}
    try:
        for kind in kinds:
            actor_name = ACTORS[kind]
            actor = build_actor(_config(9300, FLAVOURS[kind], 1))
            sizes: dict[str, int] = {}

            def publish(version: int, actor: Any = actor, actor_name: str = actor_name) -> None:
                bio = io.BytesIO()
                torch.save(
                    actor.state_dict(), bio
                )  # TMRL's TrainerInterface.broadcast_model: model.save, then its bytes
                data = bio.getvalue()
                ep.broadcast((actor_name, version, data), "workers")
                sizes["weights"] = len(data)  # noqa: B023
                sizes["message"] = len(pickle.dumps((actor_name, version, data)))  # noqa: B023

            def loaded(version: int, actor_name: str = actor_name) -> Callable[[Any], bool]:
                return lambda d: d["actor"] == actor_name and d["version"] == version  # noqa: B023

            publish(0)  # untimed: every worker has joined and loaded weights once
            _take_local(loaded_q, backlog, workers, loaded(0), STARTUP_SECONDS)
            all_loaded, each, serialise = [], [], []
            for v in range(1, broadcasts + 1):
                t0 = time.monotonic()
                publish(v)
                serialise.append(time.monotonic() - t0)
                times = [d["t"] - t0 for d in _take_local(loaded_q, backlog, workers, loaded(v), BROADCAST_TIMEOUT)]
                all_loaded.append(max(times))
                each.extend(times)
                time.sleep(0.02)
            out[actor_name] = _latency_summary(sizes["weights"], sizes["message"], all_loaded, each, serialise)
        q.put(("done", "tmrl-weights-trainer", out))
    finally:
        ep.broadcast("stop", "workers")
        stop.wait(30.0)
        _stop_endpoint(ep)


# --------------------------------------------------------------------------- TMRL (tlspyo): measurements


def _tmrl_throughput(
    kind: str, workers: int, seconds: float, warmup: float, samples: int, max_workers: int
) -> dict[str, Any]:
    port, relay_local, trainer_local, *worker_local = _free_ports(3 + workers)
    password = secrets.token_urlsafe(16)
    g = _Group(STARTUP_SECONDS + warmup + seconds + 60.0)
    received = g.ctx.Array("q", workers, lock=False)
    try:
        g.start(_tmrl_relay, "tmrl-relay", relay=True, port=port, local_port=relay_local, password=password,
                max_workers=max_workers)  # fmt: skip
        g.take("up")
        g.start(_tmrl_trainer, "tmrl-trainer", port=port, local_port=trainer_local, password=password, workers=workers,
                received=received, warmup=warmup, seconds=seconds)  # fmt: skip
        for w in range(workers):
            g.start(_tmrl_worker, f"tmrl-worker-{w}", port=port, local_port=worker_local[w], password=password,
                    worker=w, kind=kind, samples=samples, received=received)  # fmt: skip
        ups = g.take("up", workers + 1)
        size = next(m[2]["bytes"] for m in ups if m[1].startswith("tmrl-worker"))
        g.take("window", match=lambda d: d["at"] == "start")
        pids = [pid for ps in g.pids.values() for pid in ps]
        cpu0 = _snapshot(pids)
        t0 = time.monotonic()
        g.take("window", timeout=seconds + 30.0, match=lambda d: d["at"] == "end")
        cpu1 = _snapshot(pids)
        wall = time.monotonic() - t0
        res = g.take("done", timeout=30.0, match=lambda d: "got" in d)[0][2]
        g.stop.set()
        done = [m[2] for m in g.take("done", workers, timeout=30.0, match=lambda d: "produced" in d)]
    finally:
        g.close()
    span = res["span"]
    got = {int(k): v for k, v in res["got"].items()}
    total = sum(got.values())
    group = lambda prefix: [pid for name, ps in g.pids.items() if name.startswith(prefix) for pid in ps]  # noqa: E731
    produced = sum(d["produced"] for d in done)
    return {
        "transitions_per_s": round(total / span, 1),
        "transitions_per_s_per_worker": [round(got[w] / span, 1) for w in range(workers)],
        "mb_per_s": round(res["buffers"] * size / span / 1e6, 3),
        "bytes_per_transition": round(size / samples, 2),
        "buffers": res["buffers"],
        "transitions_per_buffer": samples,
        "seconds": round(span, 3),
        "cpu_cores": {  # the Twisted processes each endpoint and the relay run are counted with them
            "workers": _cores(group("tmrl-worker"), cpu0, cpu1, wall),
            "relay": _cores(group("tmrl-relay"), cpu0, cpu1, wall),
            "receiver": _cores(group("tmrl-trainer"), cpu0, cpu1, wall),
        },
        "receiver_us_per_buffer": round(1e6 * res["receive_s"] / max(1, res["buffers"]), 1),
        "worker_produce_us_per_buffer": round(1e6 * sum(d["produce_s"] for d in done) / max(1, produced), 1),
    }


def _tmrl_broadcast(kinds: list[str], workers: int, broadcasts: int) -> dict[str, Any]:
    port, relay_local, trainer_local, *worker_local = _free_ports(3 + workers)
    password = secrets.token_urlsafe(16)
    g = _Group(STARTUP_SECONDS + len(kinds) * (broadcasts + 1) * BROADCAST_TIMEOUT + 60.0)
    loaded_q = g.ctx.Queue()
    try:
        g.start(_tmrl_relay, "tmrl-relay", relay=True, port=port, local_port=relay_local, password=password,
                max_workers=workers)  # fmt: skip
        g.take("up")
        for w in range(workers):
            g.start(_tmrl_weights_worker, f"tmrl-weights-worker-{w}", port=port, local_port=worker_local[w],
                    password=password, worker=w, kinds=kinds, loaded_q=loaded_q)  # fmt: skip
        g.take("up", workers)
        g.start(_tmrl_weights_trainer, "tmrl-weights-trainer", port=port, local_port=trainer_local, password=password,
                kinds=kinds, workers=workers, broadcasts=broadcasts, loaded_q=loaded_q)  # fmt: skip
        out = g.take("done", timeout=STARTUP_SECONDS + len(kinds) * (broadcasts + 1) * BROADCAST_TIMEOUT)[0][2]
    finally:
        g.close()
        loaded_q.close()
        loaded_q.cancel_join_thread()
    return {"workers": workers, "broadcasts": broadcasts, **out}


# --------------------------------------------------------------------------- the bench


def _available(compress: str) -> bool:
    module = {"lz4": "lz4", "zstd": "zstandard"}.get(compress)
    return module is None or importlib.util.find_spec(module) is not None


def run(
    workers: int = 4,
    seconds: float = 5.0,
    warmup: float = 1.0,
    broadcast_workers: int = 8,
    broadcasts: int = 20,
    batch_steps: int | None = None,
    compress: Sequence[str] = ("none", "lz4"),
    obs: Sequence[str] = ("lidar", "images"),
    tmrl: bool = True,
) -> dict[str, Any]:
    """Measure EVO RL's transport, and TMRL's when ``tmrl`` (see the module docstring)."""
    if batch_steps is None:
        batch_steps = int(_config(9300, "lidar", 1).dist.batch_steps)
    if workers < 1 or seconds <= 0 or warmup < 0 or batch_steps < 1 or broadcast_workers < 0 or broadcasts < 0:
        raise TransportBenchError("workers and batch steps must be >= 1, seconds > 0, warm-up and broadcasts >= 0")
    kinds = [k for k in FLAVOURS if k in obs]
    unknown = sorted(set(obs) - set(FLAVOURS)) + sorted(set(compress) - {"none", "lz4", "zstd"})
    if unknown or not kinds:
        raise TransportBenchError(
            f"unknown observation kinds or compressions {unknown}; use {list(FLAVOURS)}, none/lz4/zstd"
        )
    from evo_rl.dist.worker import window

    load_before = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    cfg = _config(9300, "full", 1)
    notes: list[str] = []
    evo: dict[str, Any] = {}
    for kind in kinds:
        evo[kind] = {}
        for c in compress:
            if not _available(c):
                evo[kind][c] = None
                notes.append(
                    f"compress={c} skipped: {'lz4' if c == 'lz4' else 'zstandard'} is not installed (pip install {'lz4' if c == 'lz4' else 'zstandard'})"
                )
                continue
            evo[kind][c] = _evo_throughput(kind, c, workers, seconds, warmup, batch_steps)
    if broadcast_workers and broadcasts:
        evo["broadcast"] = _evo_broadcast(kinds, broadcast_workers, broadcasts)
    tm: dict[str, Any] | None = None
    if tmrl and importlib.util.find_spec("tlspyo") is None:
        notes.append("TMRL's relay skipped: tlspyo is not installed (pip install tlspyo)")
    elif tmrl:
        from importlib.metadata import version

        tm = {
            "relay": f"tlspyo {version('tlspyo')}",
            "tls": False,
            "tls_note": 'TMRL\'s default config.json has "TLS": false',
        }
        samples = (batch_steps // cfg.env.n_envs or 1) * cfg.env.n_envs  # the same transitions per message as EVO RL
        for kind in kinds:
            tm[kind] = _tmrl_throughput(kind, workers, seconds, warmup, samples, max(workers, broadcast_workers))
        if broadcast_workers and broadcasts:
            tm["broadcast"] = _tmrl_broadcast(kinds, broadcast_workers, broadcasts)
    elif not tmrl:
        notes.append("TMRL's relay not measured (--no-tmrl)")
    ratio: dict[str, float | None] | None = None
    if tm is not None:
        ratio = {}
        for kind in kinds:
            ours = (evo[kind].get("none") or next((v for v in evo[kind].values() if v), None) or {}).get(
                "transitions_per_s"
            )
            ratio[kind] = (
                round(ours / tm[kind]["transitions_per_s"], 2) if ours and tm[kind]["transitions_per_s"] else None
            )
    lidar = max((v["transitions_per_s"] for v in (evo.get("lidar") or {}).values() if v), default=None)
    targets = {
        "lidar_transitions_per_s_min": TARGET_LIDAR_PER_S,
        "lidar_transitions_per_s_met": None if lidar is None else lidar >= TARGET_LIDAR_PER_S,
        "vs_tmrl_min": TARGET_VS_TMRL,
        "vs_tmrl_met": None if not ratio else all(r is not None and r >= TARGET_VS_TMRL for r in ratio.values()),
    }
    return {
        "bench": "transport",
        "workers": workers,
        "seconds": seconds,
        "warmup": warmup,
        "batch_transitions": batch_steps,
        "cars_per_worker": cfg.env.n_envs,
        "window_batches": window(batch_steps),
        "image_shape": [cfg.env.hist_len, cfg.camera.height, cfg.camera.width],
        "cpu_count": os.cpu_count(),
        "loadavg_before": load_before,
        "evo_rl": evo,
        "tmrl": tm,
        "ratio_evo_rl_over_tmrl": ratio,
        "targets": targets,
        "notes": notes,
    }
