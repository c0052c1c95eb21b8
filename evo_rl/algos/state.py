"""Agent state as safetensors: tensors by name plus a JSON skeleton, no pickle.

``flatten_state(state)`` walks a nested state (dicts with str or int keys,
lists, tuples, tensors, numbers, strings, None; the shape of module and
optimiser ``state_dict`` s) and returns ``(tensors, meta)``: every tensor under a
``/``-joined path name, and a JSON-able skeleton of the structure that holds the
non-tensor leaves and refers to tensors by name. ``unflatten_state`` rebuilds
the exact structure (int keys stay ints, tuples stay tuples).

``save_state(path, state)`` / ``load_state(path)`` store both in one
``.safetensors`` file (the skeleton in its string metadata).

Every safetensors file EVO RL writes (state files, checkpoints' ``agent.safetensors``,
policy files) carries ``tensors_sha256`` in its metadata: the sha256 of its tensors'
names, dtypes, shapes and bytes (:func:`tensor_digest`). :func:`save_tensors` writes it,
:func:`load_tensors` checks it and raises :class:`CheckpointError` naming the file when the
tensor data was damaged; a file without it (older EVO RL) still loads, with a warning.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from evo_rl.errors import CheckpointError

META_KEY = "evo_rl_state"
DIGEST_KEY = "tensors_sha256"


def flatten_state(state: Any, prefix: str = "") -> tuple[dict[str, torch.Tensor], Any]:
    """Split a nested state into ``{name: tensor}`` and a JSON-able skeleton.

    Tensor names are the ``/``-joined keys, after ``prefix`` when one is given
    (e.g. ``"agent"`` to share a file with other tensors).
    """
    tensors: dict[str, torch.Tensor] = {}

    def walk(node: Any, path: str) -> Any:
        if isinstance(node, torch.Tensor):
            tensors[path] = node.detach().to("cpu").contiguous().clone()
            return {"tensor": path}
        if isinstance(node, dict):
            items = []
            for key, value in node.items():
                if not isinstance(key, (str, int)) or isinstance(key, bool):
                    raise TypeError(f"state key {key!r} at {path or '/'} must be a str or an int")
                items.append([key, walk(value, f"{path}/{key}" if path else str(key))])
            return {"dict": items}
        if isinstance(node, (list, tuple)):
            values = [walk(v, f"{path}/{i}" if path else str(i)) for i, v in enumerate(node)]
            return {"tuple" if isinstance(node, tuple) else "list": values}
        if isinstance(node, float) and not math.isfinite(node):
            return {"float": repr(node)}
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        raise TypeError(f"state value at {path or '/'} has unsupported type {type(node).__name__}")

    return tensors, walk(state, prefix)


def unflatten_state(tensors: dict[str, torch.Tensor], meta: Any) -> Any:
    """Inverse of :func:`flatten_state`."""

    def build(node: Any) -> Any:
        if isinstance(node, dict):
            if "tensor" in node:
                return tensors[node["tensor"]]
            if "dict" in node:
                return {key: build(value) for key, value in node["dict"]}
            if "list" in node:
                return [build(v) for v in node["list"]]
            if "tuple" in node:
                return tuple(build(v) for v in node["tuple"])
            if "float" in node:
                return float(node["float"])
            raise ValueError(f"unknown state skeleton node {node!r}")
        return node

    return build(meta)


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(f"{name}\0{t.dtype}\0{list(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write tensors to a safetensors file with their :func:`tensor_digest` in the metadata."""
    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}  # no shared storage
    save_file(flat, str(path), metadata={**(metadata or {}), DIGEST_KEY: tensor_digest(flat)})


def load_tensors(
    path: str | Path, device: str | torch.device = "cpu", what: str = "file"
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read every tensor and the metadata of a safetensors file and check its ``tensors_sha256``.

    Raises :class:`CheckpointError` naming the file (``what`` describes it, e.g. "policy
    file") when it cannot be read or its tensors fail the check; a file without a digest
    loads with a warning.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} {path} does not exist")
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            meta = dict(f.metadata() or {})
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    except Exception as e:  # noqa: BLE001 - any read failure means the same to the user
        raise CheckpointError(f"cannot read {what} {path}: {type(e).__name__}: {e}") from None
    want = meta.get(DIGEST_KEY)
    if want is None:
        warnings.warn(
            f"{what} {path} carries no tensors_sha256 checksum (written by an older EVO RL); "
            "its tensor data cannot be verified",
            stacklevel=2,
        )
    elif tensor_digest(tensors) != want:
        raise CheckpointError(
            f"{what} {path} is damaged: its tensor data fails the sha256 check stored in the file "
            "(a changed or corrupted byte); use another copy"
        )
    return tensors, meta


def save_state(path: str | Path, state: Any) -> None:
    """Write a nested state to one safetensors file (with its checksum)."""
    tensors, meta = flatten_state(state)
    save_tensors(path, tensors, metadata={META_KEY: json.dumps(meta)})


def load_state(path: str | Path, device: str | torch.device = "cpu") -> Any:
    """Read a state written by :func:`save_state`, checking its checksum."""
    path = Path(path)
    tensors, metadata = load_tensors(path, device, what="state file")
    meta = metadata.get(META_KEY)
    if meta is None:
        raise CheckpointError(f"{path} is a safetensors file without EVO RL state metadata ({META_KEY!r})")
    try:
        return unflatten_state(tensors, json.loads(meta))
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: damaged state metadata ({type(e).__name__}: {e})") from None
