"""``evo-rl server``: the relay between rollout workers and the trainer.

One ROUTER socket; workers and the trainer connect to it (DEALER) and introduce themselves with a
``hello``. The server hands them its config, relays sample batches to the trainer and acks back to
their worker, keeps the latest weights for workers that join late, and stays up whatever arrives:
a message it cannot read, from a peer it does not know, or from a key it does not allow, is
counted, logged and dropped (see :mod:`evo_rl.dist.common` for the message kinds).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from evo_rl.config import EvoConfig, config_to_yaml
from evo_rl.dist import wire
from evo_rl.dist.common import matters, mismatches, send, server_socket

PEER_TIMEOUT = 10.0  # s without a message: the peer is gone
STATUS_SECONDS = 1.0  # how often the trainer gets the list of workers


@dataclass
class Peer:
    role: str
    worker: int | None
    name: str
    last_seen: float = field(default_factory=time.monotonic)


def log_line(text: str, file: Any = None) -> None:
    print(time.strftime("%H:%M:%S ") + text, file=file, flush=True)


class Server:
    """The relay. ``run()`` serves until :meth:`stop` (or SIGINT/SIGTERM in the main thread)."""

    def __init__(self, cfg: EvoConfig, log: Callable[[str], None] = log_line) -> None:
        import zmq

        self.cfg = cfg
        self.log = log
        self.yaml = config_to_yaml(cfg)
        self.matters = matters(cfg)
        self.ctx = zmq.Context()
        self.sock, self.auth = server_socket(self.ctx, cfg, log)
        self.limits = wire.Limits()
        self.peers: dict[bytes, Peer] = {}
        self.workers: dict[int, bytes] = {}  # worker id -> identity of its newest connection
        self.trainer: bytes | None = None
        self.weights: list[Any] | None = None  # the latest weights message, as received
        self.control: list[Any] | None = None  # the latest control message
        self.stats = {"relayed": 0, "malformed": 0, "unknown_peer": 0, "refused": 0}
        self._stop = threading.Event()
        self._complaints: dict[bytes, int] = {}

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self.sock.close(0)
        if self.auth is not None:
            self.auth.stop()
        self.ctx.term()

    def run(self) -> None:
        import zmq

        old = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                old[sig] = signal.signal(sig, lambda *_: self._stop.set())
        secure = "CurveZMQ" if self.auth is not None else "plaintext"
        self.log(f"server listening on tcp://{self.cfg.dist.host}:{self.cfg.dist.port} ({secure})")
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        next_status = 0.0
        try:
            while not self._stop.is_set():
                if poller.poll(100):
                    for _ in range(1000):  # drain what is queued, then look at the clock again
                        try:
                            frames = self.sock.recv_multipart(flags=zmq.NOBLOCK, copy=False)
                        except zmq.Again:
                            break
                        self._handle(frames)
                now = time.monotonic()
                if now >= next_status:
                    next_status = now + STATUS_SECONDS
                    self._expire(now)
                    self._send_status()
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
            s = self.stats
            self.log(
                f"server stopped: {s['relayed']:,} messages relayed, {s['malformed']:,} malformed, "
                f"{s['unknown_peer']:,} from unknown peers, {s['refused']:,} refused"
            )
            self.close()

    # ------------------------------------------------------------------ messages

    def _complain(self, ident: bytes, text: str) -> None:
        n = self._complaints.get(ident, 0) + 1
        self._complaints[ident] = n
        if n <= 3 or n % 10_000 == 0:
            self.log(f"peer {ident.hex()[:8]}: {text}" + (f" ({n:,} so far)" if n > 3 else ""))

    def _handle(self, frames: list[Any]) -> None:
        ident, payload = bytes(frames[0]), frames[1:]
        try:
            kind, meta = wire.peek(payload, self.limits)
        except wire.WireError as e:
            self.stats["malformed"] += 1
            self._complain(ident, f"malformed message dropped: {e}")
            return
        peer = self.peers.get(ident)
        if kind == "hello":
            self._hello(ident, meta)
            return
        if peer is None:
            self.stats["unknown_peer"] += 1
            self._complain(ident, f"{kind!r} from a peer that has not said hello: dropped")
            send(self.sock, wire.encode("refused", {"why": "say hello first"}), [ident])
            return
        peer.last_seen = time.monotonic()
        if kind == "ping":
            send(self.sock, wire.encode("pong", {"trainer": self.trainer is not None}), [ident])
        elif kind == "batch" and peer.role == "worker" and meta.get("worker") == peer.worker:
            if self.trainer is not None and send(self.sock, payload, [self.trainer]):
                self.stats["relayed"] += 1  # else dropped: the worker sends it again, it is in its spool
        elif kind == "ack" and peer.role == "trainer":
            dest = self.workers.get(meta.get("worker", -1))
            if dest is not None and send(self.sock, payload, [dest]):
                self.stats["relayed"] += 1
        elif kind in ("weights", "control") and peer.role == "trainer":
            if kind == "weights":
                self.weights = payload
            else:
                self.control = payload
            for dest in self.workers.values():
                send(self.sock, payload, [dest])
        elif kind == "bye":
            self._leave(ident, "left")
        else:
            self.stats["malformed"] += 1
            self._complain(ident, f"unexpected {kind!r} from a {peer.role}: dropped")

    def _hello(self, ident: bytes, meta: dict[str, Any]) -> None:
        role, worker, name = meta.get("role"), meta.get("worker"), str(meta.get("name", ""))[:100]
        why = None
        if role not in ("worker", "trainer"):
            why = f"unknown role {role!r}"
        elif role == "worker" and not (isinstance(worker, int) and 0 <= worker < self.cfg.dist.max_workers):
            why = f"worker id {worker!r} is outside 0..{self.cfg.dist.max_workers - 1} (dist.max_workers)"
        elif isinstance(meta.get("matters"), dict):
            diff = mismatches(self.matters, meta["matters"])
            if diff:
                why = "its config differs from the server's in what matters: " + "; ".join(sorted(diff))
        if why is not None:
            self.stats["refused"] += 1
            self.log(f"refused {role} {name!r}: {why}")
            send(self.sock, wire.encode("refused", {"why": why}), [ident])
            return
        if role == "trainer":
            if self.trainer is not None and self.trainer != ident:
                self.log("a new trainer joined; the previous one is replaced")
                self.peers.pop(self.trainer, None)
            self.trainer = ident
        else:
            old = self.workers.get(worker)  # type: ignore[arg-type]
            if old is not None and old != ident:
                self.log(f"worker {worker} joined again; its previous connection is replaced")
                self.peers.pop(old, None)
            self.workers[worker] = ident  # type: ignore[index]
        self.peers[ident] = Peer(str(role), worker if role == "worker" else None, name)
        self.log(f"{role} {name!r} joined" + (f" as worker {worker}" if role == "worker" else ""))
        send(self.sock, wire.encode("welcome", {"config": self.yaml, "trainer": self.trainer is not None}), [ident])
        if role == "worker":
            for msg in (self.weights, self.control):
                if msg is not None:
                    send(self.sock, msg, [ident])
        else:
            for dest in self.workers.values():
                send(self.sock, wire.encode("trainer_up"), [dest])

    def _leave(self, ident: bytes, why: str) -> None:
        peer = self.peers.pop(ident, None)
        if peer is None:
            return
        self.log(f"{peer.role} {peer.name!r} {why}")
        if ident == self.trainer:
            self.trainer = None
        if peer.worker is not None and self.workers.get(peer.worker) == ident:
            del self.workers[peer.worker]

    def _expire(self, now: float) -> None:
        for ident, peer in list(self.peers.items()):
            if now - peer.last_seen > PEER_TIMEOUT:
                self._leave(ident, f"silent for {PEER_TIMEOUT:g} s: dropped")

    def _send_status(self) -> None:
        if self.trainer is None:
            return
        now = time.monotonic()
        workers = [
            {"worker": p.worker, "name": p.name, "seen": round(now - p.last_seen, 2)}
            for p in self.peers.values()
            if p.role == "worker"
        ]
        send(self.sock, wire.encode("status", {"workers": workers, "stats": self.stats}), [self.trainer])
