"""Checkpoints: atomic folders of safetensors + JSON, verified by sha256.

One checkpoint is a folder ``checkpoints/ckpt-<seq>-step-<env steps>/`` holding

- ``agent.safetensors``: the agent's weights and optimiser state, plus the torch
  RNG state (no pickle anywhere);
- ``state.json``: counters, NumPy / Python RNG states, the evaluation result;
- ``replay/``: the replay memory (latest checkpoint only; it is big);
- ``manifest.json``: size and sha256 of every other file.

A checkpoint is written into a temporary folder, every file is fsync'ed, and the
folder is renamed into place, so a crash leaves either the whole checkpoint or
none. Loading checks the manifest; a checkpoint that fails (truncated file, bad
checksum, missing manifest) is reported and the previous one is used.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from evo_rl.errors import CheckpointError

MANIFEST = "manifest.json"
AGENT_FILE = "agent.safetensors"
STATE_FILE = "state.json"
REPLAY_DIR = "replay"
_NAME = re.compile(r"^ckpt-(\d+)-step-(\d+)$")


@dataclass
class Checkpoint:
    """A verified checkpoint read back from disk."""

    path: Path
    tensors: dict[str, torch.Tensor]
    state: dict[str, Any]
    replay_path: Path | None  # None when this checkpoint holds no replay memory


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # platforms without directory handles
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


# --------------------------------------------------------------------------- RNG


def rng_state(np_rng: np.random.Generator) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """JSON-able NumPy / Python RNG states and the torch RNG state as tensors."""
    version, internal, gauss = random.getstate()
    js = {"numpy": np_rng.bit_generator.state, "python": [version, list(internal), gauss]}
    tensors = {"rng/torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda{i}"] = s
    return js, tensors


def set_rng_state(np_rng: np.random.Generator, js: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    """Restore what :func:`rng_state` captured."""
    np_rng.bit_generator.state = js["numpy"]
    version, internal, gauss = js["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(tensors["rng/torch"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng/cuda")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


# --------------------------------------------------------------------------- manager


class CheckpointManager:
    """Writes, lists, verifies, prunes and loads the checkpoints of one run.

    Kept after every save: the latest checkpoint plus the ``keep_best`` best by
    evaluation score (checkpoints without a score rank last). Only the latest
    keeps its replay memory.
    """

    def __init__(self, directory: str | Path, keep_best: int = 3) -> None:
        self.dir = Path(directory)
        self.keep_best = keep_best
        self.dir.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ listing

    def list(self) -> list[Path]:
        """Checkpoint folders, newest first."""
        found = []
        for p in self.dir.iterdir():
            m = _NAME.match(p.name)
            if m and p.is_dir():
                found.append((int(m.group(1)), p))
        return [p for _, p in sorted(found, reverse=True)]

    def _next_seq(self) -> int:
        latest = self.list()
        return int(_NAME.match(latest[0].name).group(1)) + 1 if latest else 1

    # ------------------------------------------------------------------ saving

    def save(
        self,
        tensors: dict[str, torch.Tensor],
        state: dict[str, Any],
        score: float | None = None,
        write_replay: Callable[[Path], None] | None = None,
    ) -> Path:
        """Write a checkpoint atomically and prune old ones; returns its folder.

        ``state`` must be JSON-able and hold ``env_steps``; ``write_replay(path)``
        (optional) saves the replay memory at ``path`` inside the new checkpoint.
        """
        seq = self._next_seq()
        final = self.dir / f"ckpt-{seq:06d}-step-{int(state['env_steps']):012d}"
        tmp = self.dir / f".tmp-{final.name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
            save_file(flat, str(tmp / AGENT_FILE))
            with open(tmp / STATE_FILE, "w") as f:
                json.dump({**state, "score": score}, f)
            if write_replay is not None:
                write_replay(tmp / REPLAY_DIR)
            files = {}
            for p in _files(tmp):
                _fsync_file(p)
                files[p.relative_to(tmp).as_posix()] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
            manifest = {
                "version": 1,
                "seq": seq,
                "env_steps": int(state["env_steps"]),
                "score": score,
                "created": time.time(),
                "files": files,
            }
            _write_json_atomic(tmp / MANIFEST, manifest)
            _fsync_dir(tmp)
            os.replace(tmp, final)
            _fsync_dir(self.dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._prune(final)
        return final

    def _score(self, path: Path) -> float:
        try:
            score = json.loads((path / MANIFEST).read_text()).get("score")
        except (OSError, ValueError):
            return float("-inf")
        return float("-inf") if score is None else float(score)

    def _prune(self, latest: Path) -> None:
        others = [p for p in self.list() if p != latest]
        ranked = sorted(others, key=self._score, reverse=True)  # stable: newer first among equal scores
        keep = {p for p in ranked[: self.keep_best] if self._score(p) > float("-inf")}
        for p in others:
            if p not in keep:
                shutil.rmtree(p, ignore_errors=True)
            elif (p / REPLAY_DIR).exists():
                self._drop_replay(p)

    def _drop_replay(self, path: Path) -> None:
        """Remove the replay memory of an older checkpoint and its manifest entries."""
        manifest = json.loads((path / MANIFEST).read_text())
        manifest["files"] = {k: v for k, v in manifest["files"].items() if not k.startswith(REPLAY_DIR + "/")}
        _write_json_atomic(path / MANIFEST, manifest)
        shutil.rmtree(path / REPLAY_DIR, ignore_errors=True)

    # ------------------------------------------------------------------ loading

    def verify(self, path: Path) -> dict[str, Any]:
        """Check every file of a checkpoint against its manifest; returns the manifest."""
        try:
            manifest = json.loads((path / MANIFEST).read_text())
            files = manifest["files"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"checkpoint {path}: missing or unreadable {MANIFEST} ({e})") from None
        for required in (AGENT_FILE, STATE_FILE):
            if required not in files:
                raise CheckpointError(f"checkpoint {path}: manifest lists no {required}")
        for rel, entry in files.items():
            p = path / rel
            if not p.is_file():
                raise CheckpointError(f"checkpoint {path}: file {rel} is missing")
            size = p.stat().st_size
            if size != entry["bytes"]:
                raise CheckpointError(f"checkpoint {path}: file {rel} has {size} bytes, manifest says {entry['bytes']}")
            if sha256_file(p) != entry["sha256"]:
                raise CheckpointError(f"checkpoint {path}: file {rel} fails its sha256 check")
        return manifest

    def load(self, path: Path) -> Checkpoint:
        """Verify and read one checkpoint."""
        manifest = self.verify(path)
        try:
            tensors = load_file(str(path / AGENT_FILE))
            state = json.loads((path / STATE_FILE).read_text())
        except Exception as e:  # noqa: BLE001 - any decoding failure means a bad checkpoint
            raise CheckpointError(f"checkpoint {path}: cannot be read ({type(e).__name__}: {e})") from None
        has_replay = any(k.startswith(REPLAY_DIR + "/") for k in manifest["files"])
        return Checkpoint(path, tensors, state, path / REPLAY_DIR if has_replay else None)

    def load_latest(self, report: Callable[[str], None] | None = None) -> Checkpoint | None:
        """The newest checkpoint that verifies; corrupt ones are reported and skipped.

        ``report`` receives one message per skipped checkpoint (default: a warning).
        Returns None when the run has no checkpoint.
        """
        say = report or (lambda msg: warnings.warn(msg, stacklevel=3))
        candidates = self.list()
        for p in candidates:
            try:
                return self.load(p)
            except CheckpointError as e:
                say(f"{e}; using the previous checkpoint")
        if candidates:
            raise CheckpointError(f"every checkpoint in {self.dir} is corrupt; start a new run instead of --resume")
        return None
