"""The wire format of distributed training: one msgpack envelope and raw array frames.

A message is a ZeroMQ multipart message::

    frame 0    msgpack {"v": PROTOCOL, "k": kind, "m": meta, "a": [[name, dtype, shape, nbytes], ...], "z": codec}
    frame 1..  the bytes of each array of "a", in order (compressed with "z" when it is not "none")

Nothing is unpickled: the envelope is msgpack (plain maps, lists, strings and numbers) and every
array is rebuilt with :func:`numpy.frombuffer` from a dtype in :data:`DTYPES`, after its shape,
size and the whole message were checked against :class:`Limits`. Decompression is bounded by the
declared size. Weights travel as safetensors bytes (:func:`weights_to_bytes`).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

from evo_rl.errors import EvoError

PROTOCOL = 1

# the dtypes an array may have on the wire (little-endian; bool is one byte)
DTYPES: frozenset[str] = frozenset(
    {"|b1", "|u1", "|i1", "<u2", "<i2", "<u4", "<i4", "<u8", "<i8", "<f2", "<f4", "<f8"}
)
CODECS = ("none", "lz4", "zstd")


class WireError(EvoError):
    """A message that is not a valid EVO RL message (garbage, truncated, too large, another version)."""


@dataclass(frozen=True)
class Limits:
    """What a receiver accepts before it allocates anything."""

    max_message_bytes: int = 256 << 20
    max_arrays: int = 64
    max_envelope_bytes: int = 4 << 20
    max_dims: int = 8


@dataclass
class Message:
    kind: str
    meta: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


def _compressor(codec: str) -> Any:
    try:
        if codec == "lz4":
            import lz4.block

            return lz4.block
        import zstandard

        return zstandard
    except ImportError:
        package = {"lz4": "lz4", "zstd": "zstandard"}[codec]
        raise WireError(f"compression {codec!r} needs the {package} package: pip install {package}") from None


def _compress(codec: str, data: memoryview) -> bytes:
    mod = _compressor(codec)
    if codec == "lz4":
        return bytes(mod.compress(data, store_size=False))
    return bytes(mod.ZstdCompressor(level=1).compress(data))


def _decompress(codec: str, data: memoryview, nbytes: int) -> bytes:
    mod = _compressor(codec)
    try:
        if codec == "lz4":
            out = mod.decompress(data, uncompressed_size=nbytes)
        else:
            out = mod.ZstdDecompressor().decompress(data, max_output_size=nbytes)
    except Exception as e:  # each codec raises its own error type for corrupt input
        raise WireError(f"corrupt {codec} data: {e}") from None
    if len(out) != nbytes:
        raise WireError(f"{codec} data decompressed to {len(out)} bytes, {nbytes} declared")
    return bytes(out)


def encode(
    kind: str,
    meta: Mapping[str, Any] | None = None,
    arrays: Mapping[str, np.ndarray] | None = None,
    compress: str = "none",
) -> list[bytes | memoryview]:
    """The frames of one message. Arrays are sent from their own memory when uncompressed."""
    if compress not in CODECS:
        raise WireError(f"unknown compression {compress!r}; use one of {', '.join(CODECS)}")
    head, frames = [], []
    for name, x in (arrays or {}).items():
        x = np.ascontiguousarray(x)
        dt = x.dtype.newbyteorder("<") if x.dtype.byteorder == ">" else x.dtype
        x = x.astype(dt, copy=False)
        if dt.str not in DTYPES:
            raise WireError(f"array {name!r}: dtype {x.dtype} cannot be sent (use one of {sorted(DTYPES)})")
        data = x.reshape(-1).view(np.uint8).data if x.size else memoryview(b"")
        head.append([name, dt.str, list(x.shape), x.nbytes])
        frames.append(data if compress == "none" else _compress(compress, data))
    envelope = msgpack.packb({"v": PROTOCOL, "k": kind, "m": dict(meta or {}), "a": head, "z": compress})
    return [envelope, *frames]


def _buffer(frame: Any) -> memoryview:
    buf = getattr(frame, "buffer", None)  # a zmq.Frame received with copy=False
    return memoryview(buf if buf is not None else frame).cast("B")


def _envelope(frames: Sequence[Any], limits: Limits) -> tuple[dict[str, Any], list[memoryview]]:
    if not frames:
        raise WireError("empty message")
    bufs = [_buffer(f) for f in frames]
    if len(bufs[0]) > limits.max_envelope_bytes:
        raise WireError(f"envelope of {len(bufs[0])} bytes (at most {limits.max_envelope_bytes})")
    if sum(len(b) for b in bufs) > limits.max_message_bytes:
        raise WireError(f"message larger than {limits.max_message_bytes} bytes")
    try:
        env = msgpack.unpackb(bufs[0], raw=False, strict_map_key=True, use_list=True)
    except (ValueError, TypeError, OverflowError, msgpack.UnpackException) as e:
        raise WireError(f"envelope is not msgpack: {type(e).__name__}") from None
    if not isinstance(env, dict) or env.keys() != {"v", "k", "m", "a", "z"}:
        raise WireError("envelope is not an EVO RL envelope")
    if env["v"] != PROTOCOL:
        raise WireError(f"protocol version {env['v']!r}, this EVO RL speaks {PROTOCOL}: upgrade both sides")
    if not isinstance(env["k"], str) or not isinstance(env["m"], dict) or env["z"] not in CODECS:
        raise WireError("envelope has a bad kind, meta or codec")
    head = env["a"]
    if not isinstance(head, list) or len(head) > limits.max_arrays:
        raise WireError(f"envelope lists {len(head) if isinstance(head, list) else '?'} arrays")
    if len(head) != len(bufs) - 1:
        raise WireError(f"envelope lists {len(head)} arrays, the message has {len(bufs) - 1}")
    total = 0
    for entry in head:
        ok = isinstance(entry, list) and len(entry) == 4 and isinstance(entry[0], str) and entry[1] in DTYPES
        shape: list[Any] = entry[2] if ok and isinstance(entry[2], list) else []
        ok = ok and isinstance(entry[2], list) and len(shape) <= limits.max_dims
        ok = ok and all(type(d) is int and 0 <= d < 1 << 40 for d in shape) and type(entry[3]) is int
        if not ok:
            raise WireError(f"bad array entry {str(entry)[:80]}")
        nbytes = math.prod(shape) * np.dtype(entry[1]).itemsize
        if nbytes != entry[3]:
            raise WireError(f"array {entry[0]!r}: {entry[3]} bytes declared, its shape needs {nbytes}")
        total += nbytes
    if total > limits.max_message_bytes:
        raise WireError(f"arrays of {total} bytes (at most {limits.max_message_bytes})")
    return env, bufs[1:]


def peek(frames: Sequence[Any], limits: Limits | None = None) -> tuple[str, dict[str, Any]]:
    """The kind and meta of a message, its envelope checked, its arrays left as bytes (for a relay)."""
    env, bufs = _envelope(frames, limits or Limits())
    if env["z"] == "none":
        for (name, _, _, nbytes), b in zip(env["a"], bufs, strict=True):
            if len(b) != nbytes:
                raise WireError(f"array {name!r}: {len(b)} bytes, {nbytes} declared")
    return env["k"], env["m"]


def decode(frames: Sequence[Any], limits: Limits | None = None) -> Message:
    """A checked message; its arrays are read-only views of the received frames when uncompressed."""
    env, bufs = _envelope(frames, limits or Limits())
    arrays: dict[str, np.ndarray] = {}
    for (name, dtype, shape, nbytes), b in zip(env["a"], bufs, strict=True):
        data: Any = b if env["z"] == "none" else _decompress(env["z"], b, nbytes)
        if len(data) != nbytes:
            raise WireError(f"array {name!r}: {len(data)} bytes, {nbytes} declared")
        if name in arrays:
            raise WireError(f"array {name!r} twice")
        arrays[name] = np.frombuffer(data, dtype=np.dtype(dtype)).reshape(shape)
    return Message(env["k"], env["m"], arrays)


# --------------------------------------------------------------------------- weights


def weights_to_bytes(state: Mapping[str, Any], metadata: Mapping[str, str] | None = None) -> bytes:
    """A state dict of tensors as safetensors bytes."""
    from safetensors.torch import save

    return bytes(save({k: v.detach().contiguous().cpu() for k, v in state.items()}, metadata=dict(metadata or {})))


def weights_from_bytes(data: bytes) -> tuple[dict[str, Any], dict[str, str]]:
    """The tensors and metadata of safetensors bytes; a damaged buffer raises WireError."""
    from safetensors.torch import load

    try:
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + n]) if 0 < n <= len(data) - 8 else None
        if not isinstance(header, dict):
            raise ValueError("no safetensors header")
        meta = header.get("__metadata__") or {}
        return load(data), {str(k): str(v) for k, v in meta.items()}
    except Exception as e:  # safetensors raises its own error type for damaged buffers
        raise WireError(f"damaged weights: {type(e).__name__}: {e}") from None
