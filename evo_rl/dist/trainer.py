"""``evo-rl trainer``: the learner of a distributed run, fed by rollout workers through the server.

It is :class:`~evo_rl.train.loop.Trainer` with its collector replaced by the network: the same
replay memory, updates, evaluations, checkpoints, metrics, dashboard and pause. Worker ``w``'s
cars are the replay's car streams ``w * n .. w * n + n - 1`` (``n = env.n_envs``).

Nothing lost, nothing twice: batches of worker ``w`` are accepted in sequence order only; the
last accepted sequence number of every worker is saved in each checkpoint, and every ack carries
the newest *durable* one (inside a saved checkpoint), which is when a worker deletes a batch from
its spool. A trainer killed and resumed from its checkpoint therefore asks again for exactly the
batches after it, and drops the duplicates.

Pacing: received car-steps owe ``train.updates_per_step`` updates each, paid as in local
training; at ``dist.hold_steps`` car-steps of debt, lock-step workers are told to wait (``hold``).
A lock-step worker's batches are always owed in full (what it gathered while the trainer was busy
evaluating or updating included), so with lock-step workers the updates-to-data ratio is exactly
``train.updates_per_step``. A real-time worker cannot wait: the debt its batches add is capped at
``hold_steps`` plus what every worker can have in flight, and ``updates_skipped`` counts what its
surplus would have owed. Waiting for batches is a poll on the socket, never a busy loop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evo_rl.dist import wire
from evo_rl.dist.common import DistError, client_socket, decode_batch, matters, send
from evo_rl.dist.worker import join, window
from evo_rl.train.loop import Trainer

RECEIVE_MS = 50  # longest wait for a message when nothing else is to be done
MESSAGES_PER_SERVICE = 64
PING_SECONDS = 1.0
GAP_ANSWER_SECONDS = 0.5  # at most one "expect" answer per worker this often


@dataclass
class WorkerState:
    """What the trainer knows of one worker (``dist`` in its checkpoints: seq and session)."""

    seq: int = 0  # last accepted batch
    session: int = -1  # the worker incarnation of that batch
    durable: int = 0  # last batch inside a saved checkpoint
    received: int = 0  # transitions accepted, all sessions
    episodes: int = 0  # episodes ended in the accepted batches
    duplicates: int = 0
    lost: int = 0  # batches the worker no longer held when they were asked for
    stats: dict[str, Any] = field(default_factory=dict)
    last_seen: float = 0.0
    gap_answered: float = 0.0


class _Cars:
    """Stands for the vector env of a distributed trainer: the worker cars' spaces and count."""

    def __init__(self, cfg: Any) -> None:
        from evo_rl.envs.spaces import action_space, observation_space

        self.num_envs = cfg.dist.max_workers * cfg.env.n_envs
        self.single_observation_space = observation_space(cfg)
        self.single_action_space = action_space()
        self.track = None
        self.np_random = np.random.default_rng(cfg.env.seed)

    def close(self) -> None:
        pass


class DistTrainer(Trainer):
    """The learner of a distributed run (see the module docstring)."""

    def _make_env(self) -> Any:
        if self.cfg.algo.name == "ppo":
            raise DistError("PPO learns on-policy from its own rollouts: train it with `evo-rl train` (no workers)")
        return _Cars(self.cfg)

    def _make_collector(self, layout: Any) -> None:
        self.layout = layout
        self.workers: dict[int, WorkerState] = {}
        self.skipped = 0.0
        self._lockstep_batch = False  # the batch being counted comes from a lock-step worker
        self.version = 0
        self.sock: Any = None
        self.supervisor: Any = None  # called from the loop: `train --workers` restarts exited children
        self.server_status: dict[str, Any] = {}
        return None

    def _reset_env(self, seed: int) -> None:
        self.obs = None

    # ------------------------------------------------------------------ connection

    def _connect(self) -> None:
        import zmq

        self.ctx = zmq.Context()
        self.sock = client_socket(self.ctx, self.cfg, "trainer")
        hello = {"role": "trainer", "name": self.run.name, "matters": matters(self.cfg)}
        join(self.sock, hello, 60.0, _never, self.dashboard.message)
        self.hello = hello
        self._next_ping = self._next_weights = 0.0
        self._held: set[int] = set()
        self.dashboard.message(f"trainer connected to the server at tcp://{self.cfg.dist.host}:{self.cfg.dist.port}")
        self._publish()

    def _disconnect(self) -> None:
        if self.sock is not None:
            send(self.sock, wire.encode("bye"))
            time.sleep(0.05)
            self.sock.close(0)
            self.ctx.term()
            self.sock = None

    def train(self) -> Any:
        self._connect()
        try:
            return super().train()
        finally:
            self._disconnect()

    def _publish(self) -> None:
        """Send the actor's weights (the server keeps them for workers that join later)."""
        self.version += 1
        c = self.counters
        assert self.learner is not None
        data = wire.weights_to_bytes(self.learner.actor_weights(), {"version": str(self.version)})
        meta = {"version": self.version, "updates": c.updates, "env_steps": c.env_steps}
        send(self.sock, wire.encode("weights", meta, {"safetensors": np.frombuffer(data, np.uint8)}))
        self._published_updates = c.updates
        self._next_weights = time.monotonic() + self.cfg.dist.weights_every_seconds

    def _ack(self, w: int, st: WorkerState, gap: bool = False) -> None:
        c = self.counters
        meta = {
            "worker": w,
            "seq": st.seq,
            "expect": st.seq + 1,
            "gap": gap,
            "durable": st.durable,
            "hold": w in self._held,
            "random": self._random_phase(),
            "env_steps": c.env_steps,
        }
        send(self.sock, wire.encode("ack", meta))

    # ------------------------------------------------------------------ receiving

    def _service(self, timeout_ms: int) -> None:
        """Handle what arrived (waiting at most ``timeout_ms`` for the first message)."""
        import zmq

        now = time.monotonic()
        if self.supervisor is not None:
            self.supervisor(self.dashboard.message)
        if now >= self._next_ping:
            send(self.sock, wire.encode("ping"))
            self._next_ping = now + PING_SECONDS
        if now >= self._next_weights and self.counters.updates != self._published_updates:
            self._publish()
        if not self.sock.poll(timeout_ms, zmq.POLLIN):
            return
        for _ in range(MESSAGES_PER_SERVICE):
            try:
                frames = self.sock.recv_multipart(flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            try:
                msg = wire.decode(frames)
                if msg.kind == "batch":
                    self._batch(msg)
                elif msg.kind == "status":
                    self._status(msg.meta)
                elif msg.kind == "refused" and msg.meta.get("why") == "say hello first":
                    send(self.sock, wire.encode("hello", self.hello))  # the server restarted
                    self._publish()
            except wire.WireError as e:
                self.dashboard.message(f"warning: a message was dropped: {e}")
        self._update_holds()

    def _batch(self, msg: wire.Message) -> None:
        m = msg.meta
        w, seq, session = m.get("worker"), m.get("seq"), m.get("session")
        if not (isinstance(w, int) and 0 <= w < self.cfg.dist.max_workers and isinstance(seq, int)):
            raise wire.WireError(f"a batch with worker {w!r} and seq {seq!r}")
        if not isinstance(session, int):
            raise wire.WireError(f"a batch with session {session!r}")
        st = self.workers.setdefault(w, WorkerState())
        st.last_seen = time.monotonic()
        if seq <= st.seq:  # sent again: already stored
            st.duplicates += 1
            self._ack(w, st)
            return
        if seq > st.seq + 1:
            first = m.get("first")
            if not (isinstance(first, int) and first == seq):  # the worker still holds the missing ones
                if st.last_seen - st.gap_answered > GAP_ANSWER_SECONDS:
                    st.gap_answered = st.last_seen
                    self._ack(w, st, gap=True)
                return
            st.lost += seq - st.seq - 1
            self.dashboard.message(
                f"warning: worker {w} no longer holds batches {st.seq + 1}..{seq - 1} (its spool was removed?)"
            )
        steps, episodes = decode_batch(msg, self.layout, self.cfg.env.n_envs)
        assert self.learner is not None and self.memory is not None  # off-policy: checked in _make_env
        n = self.cfg.env.n_envs
        cars = np.arange(w * n, (w + 1) * n)
        if session != st.session:  # a (re)started worker drives new episodes: close its cars' streams
            self.memory.end_episodes(cars)
            st.session = session
        for tr in steps:
            self.learner.add(tr, cars)
        st.seq = seq
        got = len(steps) * n
        st.received += got
        st.episodes += len(episodes)
        st.stats = dict(m.get("stats") or {})
        self._record_episodes(episodes)
        self._lockstep_batch = m.get("lockstep") is True
        self._count_steps(got)
        self._ack(w, st)

    def _owe(self, updates: float) -> None:
        """Owe the updates of received data, to be paid between receives. A lock-step worker's are
        owed in full (it waits while they are paid); a real-time worker's only up to what held
        lock-step workers can still deliver (``hold_steps`` plus every worker's window in flight)."""
        c, d = self.counters, self.cfg.dist
        if self._lockstep_batch:
            c.update_debt += updates
            return
        in_flight = d.max_workers * window(d.batch_steps) * d.batch_steps
        room = max(0.0, (d.hold_steps + in_flight) * self.cfg.train.updates_per_step - c.update_debt)
        c.update_debt += min(updates, room)
        self.skipped += updates - min(updates, room)

    def _update_holds(self) -> None:
        hold = self.counters.update_debt >= self.cfg.dist.hold_steps * self.cfg.train.updates_per_step
        want = set(self.workers) if hold else set()
        changed = want ^ self._held
        self._held = want
        for w in changed:
            self._ack(w, self.workers[w])

    def _status(self, meta: dict[str, Any]) -> None:
        self.server_status = meta

    # ------------------------------------------------------------------ the loop's hooks

    def _offpolicy_step(self) -> None:
        if self._owes_updates():
            self._pay_updates()
            self._service(0)
        else:
            self._service(RECEIVE_MS)

    def _idle(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._service(RECEIVE_MS)

    def _on_pause(self, paused: bool) -> None:
        send(self.sock, wire.encode("control", {"paused": paused}))

    def _state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        tensors, state = super()._state()
        self._pending_durable = {w: st.seq for w, st in self.workers.items()}
        state["dist"] = {
            "workers": {
                str(w): {
                    "seq": st.seq,
                    "session": st.session,
                    "received": st.received,
                    "lost": st.lost,
                    "episodes": st.episodes,
                }
                for w, st in self.workers.items()
            }  # fmt: skip
        }
        return tensors, state

    def _restore_extra(self, state: dict[str, Any]) -> None:
        for key, d in (state.get("dist") or {}).get("workers", {}).items():
            st = WorkerState(seq=int(d["seq"]), session=-1, durable=int(d["seq"]), received=int(d["received"]))
            st.lost = int(d.get("lost", 0))
            st.episodes = int(d.get("episodes", 0))
            self.workers[int(key)] = st

    def save_checkpoint(self) -> Any:
        path = super().save_checkpoint()
        if path is not None and self.sock is not None:
            for w, seq in self._pending_durable.items():
                st = self.workers[w]
                st.durable = seq
                self._ack(w, st)
        self._write_status()
        return path

    def _write_status(self) -> None:
        """``dist.json`` in the run folder: what every worker delivered (read by tests and users)."""
        import json

        data = {
            str(w): {"seq": st.seq, "durable": st.durable, "received": st.received, "episodes": st.episodes,
                     "duplicates": st.duplicates,
                     "lost": st.lost, "stats": st.stats}
            for w, st in self.workers.items()
        }  # fmt: skip
        tmp = self.run.path / "dist.json.tmp"
        tmp.write_text(json.dumps({"workers": data, "updates_skipped": self.skipped}, indent=1))
        tmp.replace(self.run.path / "dist.json")

    def _snapshot(self, session_elapsed: float, paused: bool) -> dict[str, Any]:
        snap = super()._snapshot(session_elapsed, paused)
        now, c = time.monotonic(), self.counters
        snap["workers"] = [
            {
                "worker": w,
                "steps_per_s": float(st.stats.get("steps_per_s", 0.0)),
                "received": st.received,
                "episodes": st.episodes,
                "lag": max(0, c.updates - int(st.stats.get("weights_updates", 0))),
                "seen": now - st.last_seen,
                "spooled": int(st.stats.get("spooled", 0)),
            }
            for w, st in sorted(self.workers.items())
        ]
        if not self.workers:
            snap["status"] = "waiting for workers"
        return snap


class _Never:
    def is_set(self) -> bool:
        return False


_never: Any = _Never()
