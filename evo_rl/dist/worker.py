"""``evo-rl worker``: a rollout worker. It owns one car source (the simulator, TMNF instances or
a real-time game) and an actor, and feeds the trainer through the server.

Every batch goes to the worker's :class:`~evo_rl.dist.spool.Spool` before it is first sent, and
leaves it only when the trainer reports it inside a saved checkpoint. Sending is a window of
batches in flight, in sequence order: the trainer accepts batch ``seq`` only after ``seq - 1``
(each car's stream must stay in order), answers duplicates with an ack, and a gap with
``expect``. A batch not acknowledged within ``dist.resend_seconds`` is sent again, so a lost
message, a restarted server or a resumed trainer only delay batches. The worker takes new weights
between two steps and keeps acting while the server is away; a lock-step source (the simulator,
TMNF) waits when the trainer asks it to (``hold``) or when its spool is full.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from evo_rl.config import EvoConfig, apply_overrides, validate_config
from evo_rl.dist import wire
from evo_rl.dist.common import DistError, client_socket, encode_batch, matters, mismatches, send
from evo_rl.dist.server import log_line
from evo_rl.dist.spool import Spool
from evo_rl.train.collect import Collector, Transitions, exploring_actor

WINDOW_TRANSITIONS = 4096  # transitions in flight (sent, not acknowledged) per worker, at most


def window(batch_steps: int) -> int:
    """Batches a worker keeps in flight: ``WINDOW_TRANSITIONS`` worth, at least 2."""
    return max(2, WINDOW_TRANSITIONS // max(1, batch_steps))

PING_SECONDS = 1.0
SERVER_SILENT = 5.0  # s without a message from the server: report it unreachable
# what a worker may set for itself on top of the server's config: where it is and what it drives
LOCAL_SECTIONS = ("game", "dist", "sim")
LOCAL_KEYS = ("env.source", "env.seed", "train.device", "train.torch_threads")


def join(
    sock: Any, hello: dict[str, Any], timeout: float, stop: threading.Event, log: Callable[[str], None]
) -> wire.Message:
    """Say hello until the server welcomes us (or refuses: DistError), for at most ``timeout`` s."""
    import zmq

    # CurveZMQ refusals happen in the handshake, below the messages: watch for them on the socket's monitor
    monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL)
    try:
        return _join(sock, monitor, hello, time.monotonic() + timeout, stop, log)
    finally:
        sock.disable_monitor()
        monitor.close(0)


def _join(
    sock: Any, monitor: Any, hello: dict[str, Any], deadline: float, stop: threading.Event, log: Callable[[str], None]
) -> wire.Message:
    import zmq
    from zmq.utils.monitor import recv_monitor_message

    start = time.monotonic()
    said = 0.0
    told = False
    while time.monotonic() < deadline and not stop.is_set():
        if monitor.poll(0):
            event = recv_monitor_message(monitor)
            role = hello["role"]
            if event["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                raise DistError(
                    f"the server refused this {role}'s key (CurveZMQ status {event['value']}): copy {role}.key into "
                    "the server's allowed folder (dist.keys_dir/allowed) and start the server again"
                )
            raise DistError("the secure handshake with the server failed: check that both sides use the same dist.keys_dir")
        if time.monotonic() - said > 1.0:
            send(sock, wire.encode("hello", hello))
            said = time.monotonic()
        if sock.poll(100, zmq.POLLIN):
            try:
                msg = wire.decode(sock.recv_multipart(copy=False))
            except wire.WireError as e:
                log(f"unreadable message from the server ignored: {e}")
                continue
            if msg.kind == "welcome":
                return msg
            if msg.kind == "refused":
                raise DistError(f"the server refused this {hello['role']}: {msg.meta.get('why')}")
        elif not told and time.monotonic() - start > 3.0:
            log("waiting for the server ...")
            told = True
    raise DistError(f"no server answered within {deadline - start:.0f} s; is `evo-rl server` running, with this dist.port?")


def server_config(text: str, overrides: list[str], own: EvoConfig | None) -> EvoConfig:
    """The server's config with this machine's ``overrides`` (local sections only), checked against ``own``."""
    import yaml

    data = yaml.safe_load(text)
    for o in overrides:
        key = o.split("=", 1)[0].strip()
        if not (key.split(".")[0] in LOCAL_SECTIONS or key in LOCAL_KEYS):
            raise DistError(
                f"override {o!r}: a worker takes the server's config; only {', '.join(LOCAL_SECTIONS)} and "
                f"{', '.join(LOCAL_KEYS)} may be set per worker"
            )
    cfg = validate_config(apply_overrides(data, overrides), "the server's config + overrides")
    if own is not None:
        diff = mismatches(matters(cfg), matters(own))
        if diff:
            raise DistError("this worker's config differs from the server's in what matters: " + "; ".join(diff))
    return cfg


class Worker:
    """One rollout worker; :meth:`run` until stopped, or until ``steps`` transitions were produced."""

    def __init__(
        self,
        cfg: EvoConfig,
        worker_id: int,
        overrides: list[str] | None = None,
        own_config: EvoConfig | None = None,
        steps: int | None = None,
        name: str | None = None,
        log: Callable[[str], None] = log_line,
        join_timeout: float = 60.0,
    ) -> None:
        self.boot = cfg  # where the server is, how to connect
        self.id = int(worker_id)
        self.overrides = list(overrides or [])
        self.own = own_config
        self.steps = steps
        self.name = name or f"worker-{worker_id}"
        self.log = log
        self.join_timeout = join_timeout
        self._stop = threading.Event()
        self.stop_reason = ""
        # the sending state (set at the start of the loop)
        self.acked = 0  # last batch the trainer accepted
        self.cursor = 1  # next batch to send
        self.pending: list[Transitions] = []  # steps not yet in a batch
        self.hold = self.paused = self.random = False
        self.version = -1  # weights version acted with (-1: the initial random actor)
        self.weights_updates = 0
        self.last_ack = self.last_heard = self.pending_since = self._rate_t0 = 0.0
        self._rate_steps = 0

    def stop(self, reason: str = "stop") -> None:
        self.stop_reason = self.stop_reason or reason
        self._stop.set()

    def _spool_dir(self, cfg: EvoConfig) -> Path:
        if cfg.dist.spool_dir:
            return Path(cfg.dist.spool_dir).expanduser()
        return Path(cfg.train.runs_dir) / "spool" / f"worker-{self.id}"

    # ------------------------------------------------------------------ setup

    def _setup(self) -> None:
        import zmq

        from evo_rl.memory import ObsLayout
        from evo_rl.train.loop import configure_torch, make_env
        from evo_rl.train.policy import build_actor

        self.ctx = zmq.Context()
        self.sock = client_socket(self.ctx, self.boot, "worker")
        hello = {"role": "worker", "worker": self.id, "name": self.name}
        if self.own is not None:
            hello["matters"] = matters(self.own)
        self.hello = hello
        welcome = join(self.sock, hello, self.join_timeout, self._stop, self.log)
        cfg = server_config(welcome.meta["config"], self.overrides, self.own)
        cfg.dist = self.boot.dist  # this machine's connection settings
        cfg.env.seed = cfg.env.seed + 1000 * (self.id + 1)  # every worker drives other episodes
        cfg.train.seed = cfg.train.seed + 1000 * (self.id + 1)
        self.cfg = cfg
        if cfg.algo.name == "ppo":
            raise DistError("PPO learns on-policy from its own rollouts: train it with `evo-rl train` (no workers)")
        self.spool = Spool(self._spool_dir(cfg), int(cfg.dist.spool_mb * 2**20))
        configure_torch(cfg)
        self.env = make_env(cfg)
        self.actor = build_actor(cfg).eval()
        layout = ObsLayout.from_space(self.env.single_observation_space, cfg.env.hist_len, cfg.env.act_buf_len, cfg.env.flavour)
        acting = exploring_actor(self.actor, cfg.train.param_noise, cfg.train.seed)  # the actor, or its noisy copies
        self.collector = Collector(self.env, layout, acting, np.random.default_rng(cfg.train.seed))
        self.lockstep = cfg.env.source in ("sim", "tmnf")
        self.log(
            f"worker {self.id} joined: {cfg.algo.name} on {cfg.env.track} ({cfg.env.source}, {self.env.num_envs} cars); "
            f"spool {self.spool.folder}: {len(self.spool)} batches waiting"
        )

    # ------------------------------------------------------------------ messages

    def _handle(self, msg: wire.Message) -> None:
        m = msg.meta
        if msg.kind == "ack" and m.get("worker") == self.id:
            self.acked = int(m["seq"])
            self.last_ack = time.monotonic()
            if m.get("gap") and int(m["expect"]) < self.cursor:
                self.cursor = int(m["expect"])
            self.cursor = max(self.cursor, self.acked + 1)
            durable = int(m.get("durable", 0))
            if durable:
                self.spool.drop_through(durable)
            self.hold = bool(m.get("hold"))
            self.random = bool(m.get("random"))
        elif msg.kind == "weights":
            self._load_weights(msg)
        elif msg.kind == "control":
            paused = bool(m.get("paused"))
            if paused != self.paused:
                self.log("paused by the trainer: acting stops" if paused else "resumed by the trainer")
            self.paused = paused
            if m.get("stop"):
                self.stop("the trainer stopped the run")
        elif msg.kind == "trainer_up":
            self.cursor = self.acked + 1  # a (new) trainer: everything unacknowledged goes again
            self.last_ack = time.monotonic()
        elif msg.kind == "refused":
            if m.get("why") == "say hello first":  # the server restarted and forgot us
                send(self.sock, wire.encode("hello", self.hello))
            else:
                raise DistError(f"the trainer refused this worker's batches: {m.get('why')}")

    def _load_weights(self, msg: wire.Message) -> None:
        import torch

        try:
            tensors, _ = wire.weights_from_bytes(msg.arrays["safetensors"].tobytes())
            with torch.no_grad():
                self.actor.load_state_dict(tensors)
        except (KeyError, RuntimeError, wire.WireError) as e:
            self.log(f"weights version {msg.meta.get('version')} not loaded: {e}")
            return
        if hasattr(self.collector.actor, "set_actor"):  # parameter noise: perturb the new weights from the next step
            self.collector.actor.set_actor(self.actor)
        self.version = int(msg.meta.get("version", 0))
        self.weights_updates = int(msg.meta.get("updates", 0))
        if int(msg.meta.get("env_steps", 0)) >= self.cfg.train.start_steps:
            self.random = False

    def _poll(self, timeout_ms: int) -> None:
        import zmq

        if not self.sock.poll(timeout_ms, zmq.POLLIN):
            return
        for _ in range(100):
            try:
                frames = self.sock.recv_multipart(flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self.last_heard = time.monotonic()
            try:
                msg = wire.decode(frames)
            except wire.WireError as e:
                self.log(f"unreadable message from the server ignored: {e}")
                continue
            self._handle(msg)

    # ------------------------------------------------------------------ sending

    def _flush(self) -> None:
        """Put the gathered steps into the spool as one batch."""
        if not self.pending:
            return
        meta = {
            "worker": self.id,
            "seq": self.spool.next_seq,
            "session": self.spool.session,
            "first": (self.spool.seqs() or [self.spool.next_seq])[0],
            "lockstep": self.lockstep,
            "stats": {
                "steps_per_s": self._rate(),
                "weights_updates": self.weights_updates,
                "version": self.version,
                "spooled": len(self.spool) + 1,
            },
        }
        frames, n = encode_batch(self.pending, meta, self.cfg.dist.compress)
        self.spool.put(frames, n)
        self.pending = []
        self.pending_since = time.monotonic()

    def _send_window(self) -> None:
        now = time.monotonic()
        if self.cursor > self.acked + 1 and now - self.last_ack > self.cfg.dist.resend_seconds:
            self.cursor = self.acked + 1  # nothing acknowledged for a while: send the unacknowledged again
            self.last_ack = now
        seqs = self.spool.seqs()
        if seqs and self.cursor < seqs[0]:
            self.cursor = seqs[0]
        while self.cursor < self.spool.next_seq and self.cursor - self.acked <= window(self.cfg.dist.batch_steps):
            if self.cursor in self.spool:
                if not send(self.sock, self.spool.get(self.cursor)):
                    return  # not connected: the spool keeps it
            self.cursor += 1

    def _rate(self) -> float:
        span = time.monotonic() - self._rate_t0
        return self._rate_steps / span if span > 0 else 0.0

    # ------------------------------------------------------------------ main loop

    def run(self) -> dict[str, Any]:
        old = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                old[sig] = signal.signal(sig, lambda s, f: self.stop(signal.Signals(s).name))
        try:
            self._setup()
            return self._loop()
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
            self._close()

    def _loop(self) -> dict[str, Any]:
        cfg = self.cfg
        self.acked = (self.spool.seqs() or [self.spool.next_seq])[0] - 1
        self.cursor = self.acked + 1
        self.last_ack = self.last_heard = self.pending_since = self._rate_t0 = time.monotonic()
        self._rate_steps = 0
        self.pending = []
        self.hold = False
        self.paused = False
        self.random = cfg.train.start_steps > 0
        self.version = -1
        self.weights_updates = 0
        cars = self.env.num_envs
        self.collector.reset(seed=cfg.env.seed)
        next_ping = 0.0
        unreachable = False
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_ping:
                send(self.sock, wire.encode("ping", {"worker": self.id}))
                next_ping = now + PING_SECONDS
            silent = now - self.last_heard > SERVER_SILENT
            if silent != unreachable:
                unreachable = silent
                self.log("the server is unreachable: acting on, batches are kept in the spool" if silent
                         else "the server is back: sending the spooled batches")  # fmt: skip
            done = self.steps is not None and self.spool.produced >= self.steps
            wait = self.paused or done or (self.lockstep and (self.hold or self.spool.full()))
            self._poll(50 if wait else 0)
            self._send_window()
            if done and self.acked >= self.spool.next_seq - 1:
                self.stop_reason = f"{self.spool.produced:,} transitions produced and received"
                break
            if wait:
                continue
            self.pending.append(self.collector.step(random=self.random))
            self._rate_steps += cars
            if now - self._rate_t0 > 10.0:
                self._rate_t0, self._rate_steps = now, 0
            gathered = len(self.pending) * cars
            if self.steps is not None and self.spool.produced + gathered >= self.steps:
                self._flush()
            elif gathered >= cfg.dist.batch_steps or now - self.pending_since >= cfg.dist.batch_seconds:
                self._flush()
        self._flush()  # a stop keeps what was gathered: it goes at the next start
        self._send_window()
        self.log(
            f"worker {self.id} stopping ({self.stop_reason or 'stopped'}): {self.spool.produced:,} transitions produced, "
            f"{len(self.spool)} batches kept in the spool"
        )
        return {"produced": self.spool.produced, "spooled": len(self.spool), "reason": self.stop_reason}

    def _close(self) -> None:
        sock = getattr(self, "sock", None)
        if sock is not None:
            send(sock, wire.encode("bye", {"worker": self.id}))
            time.sleep(0.05)
            sock.close(0)
            self.ctx.term()
        env = getattr(self, "env", None)
        if env is not None:
            env.close()
