"""The run folder: where one training run keeps everything it writes.

```
runs/<name>/
  config.yaml          resolved configuration
  metrics.jsonl        one JSON object per log interval (appended on resume)
  tb/                  TensorBoard event files
  checkpoints/         ckpt-<seq>-step-<env steps>/ folders and replay/ chunks (see checkpoint.py)
  policy.safetensors   latest actor weights, loadable by `evo-rl eval`
  PAUSED               present while the trainer is paused (`evo-rl pause`)
  trainer.lock         the trainer holds an exclusive OS lock on it while it lives
  trainer.json         process id of the trainer holding the lock
```

One trainer per run folder: a trainer takes the lock (:meth:`RunDir.lock`) before it
builds anything and keeps it until it stops; a second one is refused with the pid of
the first. The OS releases the lock when its process dies, even by ``kill -9``, so a
stale ``trainer.json`` never blocks a run nor names a process that is not its trainer.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from evo_rl.config import EvoConfig, config_to_yaml, load_config
from evo_rl.errors import CheckpointError, ConfigError

LOCK_WAIT_SECONDS = 0.25  # how long lock() retries: trainer_pid() probes hold the lock for microseconds


def os_lock(fh: IO[Any], lock: bool = True) -> bool:
    """Take (``lock=True``) or release an exclusive, non-blocking OS lock on the open file
    ``fh``: ``fcntl.flock`` on POSIX, ``msvcrt.locking`` of its first byte on Windows.
    Returns False when another open file (any process, this one included) holds it."""
    if os.name == "nt":
        import msvcrt

        fh.seek(0)
        try:
            msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK if lock else msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fh.fileno(), (fcntl.LOCK_EX | fcntl.LOCK_NB) if lock else fcntl.LOCK_UN)
    except OSError:  # BlockingIOError (EWOULDBLOCK), or EACCES on some systems
        return False
    return True


class RunLockedError(ConfigError):
    """Another trainer holds the run folder's lock."""


class RunLock:
    """The exclusive lock of one run folder, held until :meth:`release` (or the process ends)."""

    def __init__(self, run: RunDir, fh: IO[Any]) -> None:
        self.run = run
        self._fh: IO[Any] | None = fh

    @property
    def held(self) -> bool:
        return self._fh is not None

    def release(self) -> None:
        if self._fh is None:
            return
        self.run.trainer_path.unlink(missing_ok=True)
        os_lock(self._fh, lock=False)
        self._fh.close()
        self._fh = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@dataclass(frozen=True)
class RunDir:
    """Paths of one run folder."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def tensorboard_dir(self) -> Path:
        return self.path / "tb"

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def policy_path(self) -> Path:
        return self.path / "policy.safetensors"

    @property
    def pause_path(self) -> Path:
        return self.path / "PAUSED"

    @property
    def trainer_path(self) -> Path:
        return self.path / "trainer.json"

    # ------------------------------------------------------------------ control

    def is_paused(self) -> bool:
        """Whether ``evo-rl pause`` asked the trainer of this run to pause."""
        return self.pause_path.exists()

    def set_paused(self, paused: bool) -> None:
        if paused:
            self.pause_path.write_text(f"paused at {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        else:
            self.pause_path.unlink(missing_ok=True)

    @property
    def lock_path(self) -> Path:
        return self.path / "trainer.lock"

    def lock(self, wait: float = LOCK_WAIT_SECONDS) -> RunLock:
        """Take the run's exclusive lock and record this process in ``trainer.json``.

        Raises :class:`RunLockedError` naming the pid of the trainer that holds it.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        fh = open(self.lock_path, "a+")  # noqa: SIM115 - held by the returned RunLock
        deadline = time.monotonic() + wait
        while not os_lock(fh):
            if time.monotonic() >= deadline:
                fh.close()
                pid = self._recorded_pid()
                who = f"process {pid}" if pid else "another process"
                raise RunLockedError(
                    f"run {self.path} is being trained right now by {who} (it holds {self.lock_path}); "
                    "stop that trainer (Ctrl-C in its terminal) before starting another one on this run"
                )
            time.sleep(0.02)
        lock = RunLock(self, fh)
        try:
            tmp = self.trainer_path.with_name(self.trainer_path.name + ".tmp")
            tmp.write_text(json.dumps({"pid": os.getpid(), "started": time.time()}) + "\n")
            os.replace(tmp, self.trainer_path)
        except BaseException:
            lock.release()
            raise
        return lock

    def _recorded_pid(self) -> int | None:
        try:
            return int(json.loads(self.trainer_path.read_text())["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def trainer_pid(self) -> int | None:
        """Process id of the trainer running this run, or None when none runs.

        Asks the OS lock, not ``trainer.json``: a trainer killed with ``kill -9`` leaves its
        ``trainer.json`` behind, but its lock goes with it. Returns -1 when a trainer holds
        the lock but has not recorded its pid yet (it is starting).
        """
        if not self.lock_path.is_file():
            return None
        try:
            fh = open(self.lock_path, "a+")  # noqa: SIM115 - closed below
        except OSError:
            return None
        with fh:
            if os_lock(fh):
                os_lock(fh, lock=False)
                return None
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while (pid := self._recorded_pid()) is None and time.monotonic() < deadline:
            time.sleep(0.02)
        return pid if pid is not None else -1

    # ------------------------------------------------------------------ config

    def load_config(self) -> EvoConfig:
        if not self.config_path.is_file():
            raise CheckpointError(f"run folder {self.path} has no config.yaml; is it an EVO RL run folder?")
        return load_config(self.config_path)

    def write_config(self, cfg: EvoConfig) -> None:
        tmp = self.config_path.with_suffix(".yaml.tmp")
        tmp.write_text(config_to_yaml(cfg))
        os.replace(tmp, self.config_path)


def default_run_name() -> str:
    """A timestamp name such as ``20250101-120000``."""
    return time.strftime("%Y%m%d-%H%M%S")


def create_run(runs_dir: str | Path, name: str | None, cfg: EvoConfig) -> RunDir:
    """Create a new run folder and write its resolved config.

    Raises :class:`ConfigError` when a run of that name exists (use ``--resume``) or is
    being created or trained right now. The folder is claimed under the run's lock, so two
    processes creating the same name cannot both write it.
    """
    if name is not None and (not name or "/" in name or "\\" in name or name in (".", "..")):
        raise ConfigError(f"run name {name!r} must be a plain folder name (letters, digits, '-', '_')")
    base = Path(runs_dir)
    base.mkdir(parents=True, exist_ok=True)
    run_name = name or default_run_name()
    path = base / run_name
    if name is None:  # two runs started in the same second get distinct names: mkdir claims one
        n = 1
        while True:
            try:
                path.mkdir()
                break
            except FileExistsError:
                n += 1
                path = base / f"{run_name}-{n}"
    run = RunDir(path)
    exists = f"run folder {path} already exists; continue it with --resume {run_name} or pick another --name"
    try:
        lock = run.lock()
    except RunLockedError:
        raise ConfigError(exists + " (a trainer is running it now)") from None
    with lock:
        control = {run.lock_path.name, run.trainer_path.name}
        if any(p.name not in control for p in path.iterdir()):
            raise ConfigError(exists)
        run.checkpoints_dir.mkdir(exist_ok=True)
        run.write_config(cfg)
    return run


def resolve_run(text: str | Path, runs_dir: str | Path = "runs") -> RunDir:
    """A run given as a folder path or as a name under ``runs_dir``."""
    p = Path(text)
    for candidate in (p, Path(runs_dir) / p):
        if candidate.is_dir() and (candidate / "config.yaml").is_file():
            return RunDir(candidate)
    raise CheckpointError(
        f"no run folder {str(text)!r} (looked for {p} and {Path(runs_dir) / p}, each with a config.yaml); "
        f"runs are listed under {runs_dir}/"
    )
