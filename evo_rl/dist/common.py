"""What the server, the trainer and the workers share: sockets, the config check, sample batches.

Message kinds (each a :mod:`evo_rl.dist.wire` message; ``->`` is the direction)::

    hello      client -> server    {role, worker, name, matters}: join; answered by welcome or refused
    welcome    server -> client    {config (YAML), trainer (bool)} (+ the latest weights, for a worker)
    refused    server -> client    {why}: a config mismatch or a full worker slot
    batch      worker -> trainer   {worker, seq, first, session, steps, episodes, stats} + sample arrays
    ack        trainer -> worker   {worker, seq, expect, gap, durable, hold, random, env_steps}
    weights    trainer -> workers  {version, updates, env_steps} + safetensors bytes; the server keeps the latest
    control    trainer -> workers  {paused, stop}
    trainer_up server -> workers   a trainer joined: send unacknowledged batches again now
    ping/pong  client <-> server   liveness, every second
    bye        client -> server    leaving cleanly

The server relays batches and acks by ``worker`` id, checking only their envelopes
(:func:`wire.peek`); the trainer decodes and checks every array against its replay's layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from evo_rl.config import EvoConfig
from evo_rl.dist import wire
from evo_rl.errors import EvoError
from evo_rl.memory.layout import ObsLayout
from evo_rl.train.collect import EpisodeEnd, Transitions

# what must agree between the server's config and a worker's or trainer's own (section, key)
MATTERS: tuple[tuple[str, str], ...] = (
    ("algo", "name"),
    ("env", "flavour"),
    ("env", "hist_len"),
    ("env", "act_buf_len"),
    ("env", "flat"),
    ("lidar", "kind"),
    ("lidar", "layout"),
    ("lidar", "beams"),
    ("lidar", "range"),
    ("camera", "width"),
    ("camera", "height"),
)


def matters(cfg: EvoConfig) -> dict[str, Any]:
    """The settings that decide the observation layout and the algorithm, as ``{"section.key": value}``."""
    return {f"{s}.{k}": getattr(getattr(cfg, s), k) for s, k in MATTERS}


def mismatches(ours: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    """``section.key: A there, B here`` for every setting that differs."""
    return [
        f"{key}: {theirs.get(key)!r} there, {ours.get(key)!r} here"
        for key in ours.keys() | theirs.keys()
        if ours.get(key) != theirs.get(key)
    ]


class DistError(EvoError):
    """A distributed-training failure a user can act on (refused, unreachable, incompatible)."""


def endpoint(cfg: EvoConfig) -> str:
    return f"tcp://{cfg.dist.host}:{cfg.dist.port}"


# --------------------------------------------------------------------------- sample batches


def encode_batch(
    steps: list[Transitions], meta: dict[str, Any], compress: str = "none"
) -> tuple[list[bytes | memoryview], int]:
    """Stack T steps of m cars into arrays: ``f<i>`` [T, m, *frame], ``act`` [T, m, A], ``rew``,
    ``term``, ``trunc`` [T, m], ``fin<i>`` [K, *frame] (final frames, step by step). Returns the
    frames and the number of transitions (T * m)."""
    arrays: dict[str, np.ndarray] = {}
    for i in range(len(steps[0].frames)):
        arrays[f"f{i}"] = np.stack([s.frames[i] for s in steps])
        arrays[f"fin{i}"] = np.concatenate([s.final_frames[i] for s in steps])
    arrays["act"] = np.stack([s.action for s in steps]).astype(np.float32, copy=False)
    arrays["rew"] = np.stack([s.reward for s in steps]).astype(np.float32, copy=False)
    arrays["term"] = np.stack([s.terminated for s in steps])
    arrays["trunc"] = np.stack([s.truncated for s in steps])
    episodes = [e.to_dict() for s in steps for e in s.episodes]
    frames = wire.encode("batch", meta | {"steps": len(steps), "episodes": episodes}, arrays, compress)
    return frames, len(steps) * steps[0].n_cars


def decode_batch(msg: wire.Message, layout: ObsLayout, cars: int) -> tuple[list[Transitions], list[EpisodeEnd]]:
    """The steps of a batch, every array checked against ``layout`` and ``cars`` per worker."""
    a = msg.arrays
    try:
        t = int(msg.meta["steps"])
        act, rew, term, trunc = a["act"], a["rew"], a["term"], a["trunc"]
        if not 1 <= t <= 1_000_000 or act.shape != (t, cars, layout.act_dim) or act.dtype != np.float32:
            raise ValueError(f"act should be float32 [{t}, {cars}, {layout.act_dim}], got {act.dtype} {act.shape}")
        for name, x, dt in (("rew", rew, np.float32), ("term", term, np.bool_), ("trunc", trunc, np.bool_)):
            if x.shape != (t, cars) or x.dtype != dt:
                raise ValueError(f"{name} should be {np.dtype(dt)} [{t}, {cars}], got {x.dtype} {x.shape}")
        done = term | trunc
        k = int(done.sum())
        frames, finals = [], []
        for i, f in enumerate(layout.fields):
            x, fin = a[f"f{i}"], a[f"fin{i}"]
            if x.shape != (t, cars, *f.shape) or x.dtype != np.dtype(f.dtype):
                raise ValueError(f"f{i} ({f.name}) should be {f.dtype} {[t, cars, *f.shape]}, got {x.dtype} {x.shape}")
            if fin.shape != (k, *f.shape) or fin.dtype != np.dtype(f.dtype):
                raise ValueError(f"fin{i} ({f.name}) should be {f.dtype} {[k, *f.shape]}, got {fin.dtype} {fin.shape}")
            frames.append(x)
            finals.append(fin)
        if len(a) != 4 + 2 * len(layout.fields):
            raise ValueError(f"unexpected arrays {sorted(a)}")
        episodes = [EpisodeEnd.from_dict(e) for e in msg.meta["episodes"]]
    except (KeyError, ValueError, TypeError) as e:
        raise wire.WireError(f"bad batch: {type(e).__name__}: {e}") from None
    out, at = [], 0
    ends = np.cumsum(done.sum(axis=1))
    for j in range(t):
        out.append(
            Transitions(
                frames=[x[j] for x in frames],
                action=act[j],
                reward=rew[j],
                terminated=term[j],
                truncated=trunc[j],
                final_frames=[fin[at : ends[j]] for fin in finals],
                episodes=[],
            )
        )
        at = int(ends[j])
    return out, episodes


# --------------------------------------------------------------------------- sockets


def _check_plaintext(cfg: EvoConfig) -> None:
    from evo_rl.dist.keys import is_loopback

    if cfg.dist.keys_dir is None and not is_loopback(cfg.dist.host) and not cfg.dist.allow_plaintext:
        raise DistError(
            f"dist.host {cfg.dist.host} is not a loopback address and dist.keys_dir is not set: traffic would be "
            "unencrypted and anyone could join; run `evo-rl keys generate DIR` and set dist.keys_dir=DIR on every "
            "machine, or set dist.allow_plaintext=true on a trusted private network"
        )


def _keys_file(cfg: EvoConfig, name: str) -> Any:
    from pathlib import Path

    path = Path(str(cfg.dist.keys_dir)).expanduser() / name
    if not path.is_file():
        raise DistError(f"dist.keys_dir: {path} is missing (`evo-rl keys generate {cfg.dist.keys_dir}` writes it)")
    return path


def server_socket(ctx: Any, cfg: EvoConfig, log: Any) -> tuple[Any, Any]:
    """The server's ROUTER socket, bound; CurveZMQ with an allow-list when ``dist.keys_dir`` is set.
    Returns the socket and the authenticator (None in plaintext)."""
    import zmq

    from evo_rl.dist import keys

    _check_plaintext(cfg)
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 0)  # a message to a peer that left is dropped, never blocks
    sock.setsockopt(zmq.MAXMSGSIZE, wire.Limits().max_message_bytes)
    sock.setsockopt(zmq.RCVHWM, 10_000)
    sock.setsockopt(zmq.SNDHWM, 10_000)
    auth = None
    if cfg.dist.keys_dir is not None:
        allowed = _keys_file(cfg, "server.key_secret").parent / "allowed"
        if not allowed.is_dir():
            raise DistError(f"dist.keys_dir: {allowed} (the public keys of allowed trainers and workers) is missing")
        auth = keys.Authenticator(ctx, allowed, log)
        keys.secure_server(sock, keys.load_keypair(_keys_file(cfg, "server.key_secret")))
    try:
        sock.bind(endpoint(cfg) if cfg.dist.host not in ("localhost",) else f"tcp://127.0.0.1:{cfg.dist.port}")
    except zmq.ZMQError as e:
        sock.close(0)
        if auth is not None:
            auth.stop()
        raise DistError(
            f"cannot listen on {endpoint(cfg)} ({e}): is another server running? choose another dist.port"
        ) from None
    return sock, auth


def client_socket(ctx: Any, cfg: EvoConfig, role: str) -> Any:
    """A DEALER connected to the server (it reconnects by itself when the server comes back)."""
    import zmq

    from evo_rl.dist import keys

    _check_plaintext(cfg)
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.IMMEDIATE, 1)  # nothing queued for a server that is not connected: the spool holds it
    sock.setsockopt(zmq.MAXMSGSIZE, wire.Limits().max_message_bytes)
    sock.setsockopt(zmq.SNDHWM, 1000)
    sock.setsockopt(zmq.RCVHWM, 1000)
    sock.setsockopt(zmq.RECONNECT_IVL, 100)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
    if cfg.dist.keys_dir is not None:
        pair = keys.load_keypair(_keys_file(cfg, f"{role}.key_secret"))
        keys.secure_client(sock, pair, keys.load_public(_keys_file(cfg, "server.key")))
    host = "127.0.0.1" if cfg.dist.host == "localhost" else cfg.dist.host
    sock.connect(f"tcp://{host}:{cfg.dist.port}")
    return sock


def send(sock: Any, frames: Sequence[Any], prefix: list[bytes] | None = None) -> bool:
    """Send without blocking; False when the message could not be queued (peer gone, queue full)."""
    import zmq

    try:
        sock.send_multipart((prefix or []) + list(frames), flags=zmq.NOBLOCK, copy=False)
        return True
    except zmq.Again:
        return False
    except zmq.ZMQError as e:
        if e.errno == zmq.EHOSTUNREACH:
            return False
        raise
