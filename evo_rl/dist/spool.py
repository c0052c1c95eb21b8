"""A worker's spool: every batch it produced and the trainer has not yet made durable, on disk.

A batch is written here before it is first sent, and deleted only when the trainer reports it
inside a saved checkpoint (``durable``). So a worker that is killed, a server that restarts and
a trainer that is killed and resumed from its checkpoint all lose nothing: the batches after the
trainer's last checkpoint are still in some worker's spool and are sent again.

Layout of the folder::

    state.json         {"next_seq": int, "produced": int, "session": int}  (written atomically)
    <seq:012d>.batch   one encoded message: u32 frame count, then per frame u32 length + bytes

Files are written to a temporary name and renamed, so a kill leaves either the whole batch or
nothing (a power cut can lose the newest few: there is no fsync per batch, it would cost more
than the batches). The spool is bounded by ``max_bytes``: :meth:`full` tells the worker to wait.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from evo_rl.errors import EvoError

_U32 = struct.Struct("<I")
SUFFIX = ".batch"


class SpoolError(EvoError):
    """A spool folder that cannot be used (another worker's, unreadable)."""


class Spool:
    """Batches ``seq -> frames`` on disk, oldest first."""

    def __init__(self, folder: str | Path, max_bytes: int) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_bytes = int(max_bytes)
        for tmp in self.folder.glob("*.tmp"):  # what a kill left mid-write
            tmp.unlink(missing_ok=True)
        state = self._read_state()
        self.next_seq: int = state.get("next_seq", 1)
        self.produced: int = state.get("produced", 0)  # transitions ever put in the spool
        self.session: int = state.get("session", 0) + 1  # this worker process's incarnation
        self._sizes: dict[int, int] = {}
        for path in self.folder.glob("*" + SUFFIX):
            try:
                seq = int(path.stem)
            except ValueError:
                continue
            self._sizes[seq] = path.stat().st_size
            self.next_seq = max(self.next_seq, seq + 1)
        self.bytes = sum(self._sizes.values())
        self._write_state()

    def _read_state(self) -> dict[str, int]:
        path = self.folder / "state.json"
        if not path.exists():
            return {}
        try:
            data = json.loads(path.read_text())
            return {k: int(data[k]) for k in ("next_seq", "produced", "session") if k in data}
        except (OSError, ValueError, TypeError) as e:
            raise SpoolError(f"spool {self.folder}: state.json is unreadable ({e}); move the folder away") from None

    def _write_state(self) -> None:
        tmp = self.folder / "state.json.tmp"
        tmp.write_text(json.dumps({"next_seq": self.next_seq, "produced": self.produced, "session": self.session}))
        os.replace(tmp, self.folder / "state.json")

    def __len__(self) -> int:
        return len(self._sizes)

    def __contains__(self, seq: int) -> bool:
        return seq in self._sizes

    def full(self) -> bool:
        return self.bytes >= self.max_bytes

    def seqs(self) -> list[int]:
        """Sequence numbers held, oldest first."""
        return sorted(self._sizes)

    def put(self, frames: list[bytes | memoryview], transitions: int) -> int:
        """Store a new batch of ``transitions``; returns its sequence number."""
        seq = self.next_seq
        path = self.folder / f"{seq:012d}{SUFFIX}"
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(_U32.pack(len(frames)))
            for fr in frames:
                f.write(_U32.pack(len(fr)))
                f.write(fr)
            size = f.tell()
        os.replace(tmp, path)
        self._sizes[seq] = size
        self.bytes += size
        self.next_seq = seq + 1
        self.produced += int(transitions)
        self._write_state()
        return seq

    def get(self, seq: int) -> list[bytes]:
        """The frames of batch ``seq`` (a damaged file raises SpoolError)."""
        data = (self.folder / f"{seq:012d}{SUFFIX}").read_bytes()
        frames, at = [], 4
        try:
            (count,) = _U32.unpack_from(data, 0)
            for _ in range(count):
                (n,) = _U32.unpack_from(data, at)
                if at + 4 + n > len(data):
                    raise struct.error("frame runs past the end")
                frames.append(data[at + 4 : at + 4 + n])
                at += 4 + n
        except struct.error as e:
            raise SpoolError(f"spool {self.folder}: batch {seq} is damaged ({e})") from None
        return frames

    def drop_through(self, seq: int) -> int:
        """Delete every batch up to and including ``seq`` (the trainer made them durable)."""
        gone = [s for s in self._sizes if s <= seq]
        for s in gone:
            (self.folder / f"{s:012d}{SUFFIX}").unlink(missing_ok=True)
            self.bytes -= self._sizes.pop(s)
        return len(gone)
