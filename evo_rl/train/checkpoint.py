"""Checkpoints: atomic folders of safetensors + JSON, verified by sha256, and an
append-only replay memory shared between them.

```
checkpoints/
  ckpt-<seq>-step-<env steps>/
    agent.safetensors   the agent's weights, optimiser state and torch RNG state
                        (no pickle; the tensors' sha256 in its metadata)
    state.json          counters, NumPy / Python RNG states, the evaluation result
    replay/             the replay memory's index: memory.json (settings, counts, sampler RNG,
                        the chunks it needs), pos.npy, prio.npy (prioritised)
    manifest.json       size and sha256 of every file above and of every chunk file it needs
  replay/chunk-<seq>/   append-only replay chunks (ReplayMemory.write_chunk): the elements
                        added between two checkpoints, plain .npy files
```

A checkpoint writes one new chunk (only what was added since the previous one) and
references every chunk that still holds stored elements; a chunk is deleted once no
kept checkpoint references it. Kept: the latest and the previous checkpoint with their
replay memory (the previous one is the fallback when the latest is damaged), plus the
``keep_best`` best by evaluation score without theirs.

A checkpoint is written into a temporary folder, every file is fsync'ed, and the folder
is renamed into place, so a crash leaves either the whole checkpoint or none (chunks
likewise). Loading checks the manifest; a checkpoint that fails (truncated file, bad
checksum, missing manifest or chunk) is reported and the previous one is used.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from evo_rl.algos.state import load_tensors, save_tensors
from evo_rl.errors import CheckpointError
from evo_rl.memory.replay import fsync_dir

MANIFEST = "manifest.json"
AGENT_FILE = "agent.safetensors"
STATE_FILE = "state.json"
REPLAY_DIR = "replay"  # in a checkpoint: the replay index; in checkpoints/: the chunks
NPZ_REPLAY = "memory.npz"  # the whole memory in one file (checkpoints of older EVO RL versions)
CORRUPT_PREFIX = "corrupt-"  # damaged checkpoints are moved aside under this prefix on resume
_NAME = re.compile(r"^ckpt-(\d+)-step-(\d+)$")
_CHUNK = re.compile(r"^chunk-(\d+)$")


class ReplaySource(Protocol):
    """What a checkpoint needs of a replay memory (:class:`evo_rl.memory.ReplayMemory`)."""

    def write_chunk(self, folder: Path) -> Any: ...
    def commit_chunk(self, info: Any) -> None: ...
    def chunk_needed(self, info: Any) -> bool: ...
    def write_index(self, folder: Path, chunks: list[str]) -> None: ...
    def load_chunks(self, folder: Path, chunk_dir: Path) -> list[tuple[str, Any]]: ...
    def load(self, path: Path) -> None: ...


@dataclass
class Checkpoint:
    """A verified checkpoint read back from disk."""

    path: Path
    tensors: dict[str, torch.Tensor]
    state: dict[str, Any]
    replay_path: Path | None  # its replay/ folder; None when this checkpoint holds no replay memory
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def replay_chunks(self) -> list[str]:
        """Names of the replay chunks this checkpoint needs (in ``checkpoints/replay/``)."""
        return list(self.manifest.get("chunks", {})) if self.replay_path is not None else []


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _entries(root: Path) -> dict[str, dict[str, Any]]:
    """fsync every file under ``root``; their sha256 and sizes by relative path."""
    out = {}
    for p in _files(root):
        _fsync_file(p)
        out[p.relative_to(root).as_posix()] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    return out


def _check_files(root: Path, files: dict[str, Any], shown: str) -> list[str]:
    """Problems of the files under ``root`` against their manifest entries (``shown``: how to name root)."""
    problems = []
    for rel, entry in files.items():
        p = root / rel
        name = f"{shown}/{rel}" if shown else rel
        if not p.is_file():
            problems.append(f"{name} is missing")
            continue
        size = p.stat().st_size
        if size != entry["bytes"]:
            problems.append(f"{name} has {size} bytes, manifest says {entry['bytes']}")
        elif sha256_file(p) != entry["sha256"]:
            problems.append(f"{name} fails its sha256 check")
    return problems


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


def _seq(pattern: re.Pattern[str], name: str) -> int:
    """The sequence number in a name that ``pattern`` matched when the name was listed."""
    m = pattern.match(name)
    if m is None:
        raise CheckpointError(f"{name!r} is not a checkpoint or chunk name")
    return int(m.group(1))


class CheckpointManager:
    """Writes, lists, verifies, prunes and loads the checkpoints of one run.

    Kept after every save: the latest and the previous checkpoint, both with their
    replay memory, plus the ``keep_best`` best by evaluation score (checkpoints
    without a score rank last), whose replay references are dropped.
    """

    def __init__(self, directory: str | Path, keep_best: int = 3) -> None:
        self.dir = Path(directory)
        self.keep_best = keep_best
        self.dir.mkdir(parents=True, exist_ok=True)
        self.chunk_dir = self.dir / REPLAY_DIR
        # chunks the live memory still needs, oldest first: name -> (what it holds, its manifest entries)
        self._chunks: dict[str, tuple[Any, dict[str, Any]]] = {}
        self._chunk_seq: int | None = None

    # ------------------------------------------------------------------ listing

    def saved(self) -> list[Path]:
        """Checkpoint folders, newest first."""
        found = []
        for p in self.dir.iterdir():
            m = _NAME.match(p.name)
            if m and p.is_dir():
                found.append((int(m.group(1)), p))
        return [p for _, p in sorted(found, reverse=True)]

    def _next_seq(self) -> int:
        latest = self.saved()
        return _seq(_NAME, latest[0].name) + 1 if latest else 1

    def _chunk_names(self) -> list[str]:
        if not self.chunk_dir.is_dir():
            return []
        return sorted(p.name for p in self.chunk_dir.iterdir() if _CHUNK.match(p.name) and p.is_dir())

    def _next_chunk(self) -> str:
        if self._chunk_seq is None:  # never reuse a name, even one a dead session left behind
            names = self._chunk_names()
            self._chunk_seq = _seq(_CHUNK, names[-1]) if names else 0
        return f"chunk-{self._chunk_seq + 1:06d}"

    def cleanup(self) -> list[str]:
        """Remove what a killed writer left behind: ``.tmp-*`` checkpoint and chunk folders, and
        chunks no checkpoint references. Only while this process holds the run's lock (no
        other trainer writes here). Returns the removed names."""
        removed = []
        for folder in (self.dir, self.chunk_dir):
            if not folder.is_dir():
                continue
            for p in folder.iterdir():
                if not p.name.startswith(".tmp-"):
                    continue
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
                removed.append(p.name)
        removed += self._collect_chunks()
        return removed

    # ------------------------------------------------------------------ saving

    def save(
        self,
        tensors: dict[str, torch.Tensor],
        state: dict[str, Any],
        score: float | None = None,
        replay: ReplaySource | None = None,
    ) -> Path:
        """Write a checkpoint atomically and prune old ones; returns its folder.

        ``state`` must be JSON-able and hold ``env_steps``. With ``replay`` (a replay
        memory), the elements it gained since the last checkpoint go into a new chunk and
        the checkpoint references every chunk the memory still needs. An OSError (a full
        disk) leaves the previous checkpoints as they were and propagates.
        """
        names: list[str] = []
        if replay is not None:
            self._write_chunk(replay)
            self._chunks = {n: v for n, v in self._chunks.items() if replay.chunk_needed(v[0])}
            names = list(self._chunks)
        seq = self._next_seq()
        final = self.dir / f"ckpt-{seq:06d}-step-{int(state['env_steps']):012d}"
        tmp = self.dir / f".tmp-{final.name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            save_tensors(tmp / AGENT_FILE, tensors)
            with open(tmp / STATE_FILE, "w") as f:
                json.dump({**state, "score": score}, f)
            if replay is not None:
                replay.write_index(tmp / REPLAY_DIR, names)
            manifest = {
                "version": 2,
                "seq": seq,
                "env_steps": int(state["env_steps"]),
                "score": score,
                "created": time.time(),
                "files": _entries(tmp),
                "chunks": {n: self._chunks[n][1] for n in names},
            }
            _write_json_atomic(tmp / MANIFEST, manifest)
            fsync_dir(tmp)
            os.replace(tmp, final)
            fsync_dir(self.dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        try:
            self._prune(final)
        except OSError:  # pruning frees space; it is tried again at the next save
            pass
        return final

    def _write_chunk(self, memory: ReplaySource) -> None:
        """Write and commit the memory's new elements as the next chunk (nothing when none)."""
        name = self._next_chunk()
        tmp = self.chunk_dir / f".tmp-{name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            info = memory.write_chunk(tmp)
            if info is None:
                return
            files = _entries(tmp)
            os.replace(tmp, self.chunk_dir / name)
            fsync_dir(self.chunk_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        memory.commit_chunk(info)  # in place: later checkpoints reference it, even if this one fails
        self._chunks[name] = (info, files)
        self._chunk_seq = _seq(_CHUNK, name)

    def _score(self, path: Path) -> float:
        try:
            score = json.loads((path / MANIFEST).read_text()).get("score")
        except (OSError, ValueError):
            return float("-inf")
        return float("-inf") if score is None else float(score)

    def _prune(self, latest: Path) -> None:
        others = [p for p in self.saved() if p != latest]  # newest first
        fallback = others[:1]  # the previous checkpoint keeps its replay memory
        ranked = sorted(others, key=self._score, reverse=True)  # stable: newer first among equal scores
        best = {p for p in ranked[: self.keep_best] if self._score(p) > float("-inf")}
        for p in others:
            if p in fallback:
                continue
            if p not in best:
                shutil.rmtree(p, ignore_errors=True)
            elif (p / REPLAY_DIR).exists():
                self._drop_replay(p)
        self._collect_chunks()

    def _drop_replay(self, path: Path) -> None:
        """Remove the replay memory of an older checkpoint and its manifest entries."""
        manifest = json.loads((path / MANIFEST).read_text())
        manifest["files"] = {k: v for k, v in manifest["files"].items() if not k.startswith(REPLAY_DIR + "/")}
        manifest["chunks"] = {}
        _write_json_atomic(path / MANIFEST, manifest)
        shutil.rmtree(path / REPLAY_DIR, ignore_errors=True)

    def _collect_chunks(self) -> list[str]:
        """Delete the chunks that neither a kept checkpoint nor the live memory references."""
        wanted = set(self._chunks)
        for p in self.saved():
            try:
                wanted |= set(json.loads((p / MANIFEST).read_text()).get("chunks", {}))
            except (OSError, ValueError, AttributeError):
                continue  # an unreadable manifest: that checkpoint cannot be loaded anyway
        removed = [n for n in self._chunk_names() if n not in wanted]
        for name in removed:
            shutil.rmtree(self.chunk_dir / name, ignore_errors=True)
        return removed

    # ------------------------------------------------------------------ loading

    def verify(self, path: Path, replay: bool = True) -> dict[str, Any]:
        """Check every file of a checkpoint (and, with ``replay``, of the chunks it needs)
        against its manifest; returns the manifest. The error names every failing file."""
        try:
            manifest = json.loads((path / MANIFEST).read_text())
            files = manifest["files"]
            chunks = manifest.get("chunks", {})
            if not isinstance(files, dict) or not isinstance(chunks, dict):
                raise TypeError("files and chunks must be objects")
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"checkpoint {path}: missing or unreadable {MANIFEST} ({e})") from None
        for required in (AGENT_FILE, STATE_FILE):
            if required not in files:
                raise CheckpointError(f"checkpoint {path}: manifest lists no {required}")
        if not replay:
            files = {k: v for k, v in files.items() if not k.startswith(REPLAY_DIR + "/")}
            chunks = {}
        problems = _check_files(path, files, "")
        for name, entries in chunks.items():
            problems += _check_files(self.chunk_dir / name, entries, f"{REPLAY_DIR}/{name}")
        if problems:
            raise CheckpointError(f"checkpoint {path}: " + "; ".join(problems))
        return manifest

    def load(self, path: Path, replay: bool = True) -> Checkpoint:
        """Verify and read one checkpoint (``replay=False``: without its replay memory)."""
        manifest = self.verify(path, replay=replay)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # checkpoints of older versions carry no tensor digest
                tensors, _ = load_tensors(path / AGENT_FILE, what="checkpoint file")
            state = json.loads((path / STATE_FILE).read_text())
        except CheckpointError as e:
            raise CheckpointError(f"checkpoint {path}: {e}") from None
        except Exception as e:  # noqa: BLE001 - any decoding failure means a bad checkpoint
            raise CheckpointError(f"checkpoint {path}: cannot be read ({type(e).__name__}: {e})") from None
        has_replay = replay and any(k.startswith(REPLAY_DIR + "/") for k in manifest["files"])
        return Checkpoint(path, tensors, state, path / REPLAY_DIR if has_replay else None, manifest)

    def load_latest(self, report: Callable[[str], None] | None = None, set_aside: bool = False) -> Checkpoint | None:
        """The newest checkpoint that verifies; corrupt ones are reported and skipped.

        When no checkpoint verifies whole, the newest whose agent and state verify is
        returned without its replay memory. ``report`` receives one message per skipped
        checkpoint (default: a warning). ``set_aside`` (only while holding the run's lock)
        renames skipped checkpoints newer than the one returned to ``corrupt-<name>``, so
        that they are neither listed nor pruned. Returns None when the run has no
        checkpoint; raises CheckpointError naming every failing file when none can be used.
        """
        say = report or (lambda msg: warnings.warn(msg, stacklevel=3))
        candidates = self.saved()
        failures: list[str] = []
        found = None
        for p in candidates:
            try:
                found = self.load(p)
                break
            except CheckpointError as e:
                failures.append(str(e))
                say(f"{e}; trying the previous checkpoint")
        if found is None:
            for p in candidates:  # every replay memory is damaged: the newest sound agent, without one
                try:
                    found = self.load(p, replay=False)
                except CheckpointError:
                    continue
                say(f"checkpoint {p.name} is used without its replay memory (its replay files are damaged)")
                break
        if found is None:
            if not candidates:
                return None
            raise CheckpointError(
                f"every checkpoint in {self.dir} is corrupt:\n  "
                + "\n  ".join(failures)
                + f"\nmove {self.dir} aside (or delete it) to start the run again from scratch with --resume"
            )
        if set_aside:
            for p in candidates:
                if p == found.path:
                    break
                os.replace(p, p.with_name(CORRUPT_PREFIX + p.name))
                say(f"moved the damaged checkpoint {p.name} aside as {CORRUPT_PREFIX + p.name}")
        return found

    def restore_replay(self, ck: Checkpoint, memory: ReplaySource) -> bool:
        """Load a checkpoint's replay memory into ``memory``; later saves continue its chunks.
        False when the checkpoint holds none."""
        self._chunks = {}
        if ck.replay_path is None:
            return False
        if (ck.replay_path / NPZ_REPLAY).is_file():  # an older checkpoint: the whole memory in one file
            memory.load(ck.replay_path / NPZ_REPLAY)  # its first chunk will hold every stored element
            return True
        infos = memory.load_chunks(ck.replay_path, self.chunk_dir)
        entries = ck.manifest.get("chunks", {})
        missing = [name for name, _ in infos if name not in entries]
        if missing:
            raise CheckpointError(f"checkpoint {ck.path}: its manifest does not list the replay chunks {missing}")
        self._chunks = {name: (info, entries[name]) for name, info in infos}
        return True
