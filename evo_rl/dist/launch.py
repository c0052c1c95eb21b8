"""``evo-rl train --workers N``: a server, N workers and the trainer on this machine, one dashboard.

The trainer runs in this process (it owns the dashboard); the server and the workers are child
processes whose output goes to ``<run>/logs/``. A child that exits is started again (its spool
keeps what it had produced). Ctrl-C reaches every process of the terminal's group: workers keep
their unsent batches in their spools, the trainer saves a checkpoint, and this process then
stops whatever is left (SIGTERM, then SIGKILL after ``STOP_SECONDS``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from evo_rl.config import EvoConfig
from evo_rl.dist.common import DistError

STOP_SECONDS = 15.0
RESTART_SECONDS = 2.0  # a child that exits sooner than this after its start is not restarted again


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def evo_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "evo_rl", *args]


class Child:
    """A child process, restarted when it exits."""

    def __init__(self, name: str, argv: list[str], log_path: Path) -> None:
        self.name, self.argv, self.log_path = name, argv, log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: IO[bytes] | None = None
        self.started = 0.0
        self.restarts = 0

    def start(self) -> None:
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - open while the child runs
        self.proc = subprocess.Popen(self.argv, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.started = time.monotonic()

    def check(self) -> str | None:
        """Restart the child if it exited; returns a message saying so."""
        if self.proc is None or self.proc.poll() is None:
            return None
        code = self.proc.returncode
        if time.monotonic() - self.started < RESTART_SECONDS and self.restarts:
            raise DistError(f"{self.name} keeps exiting (code {code}); see {self.log_path}")
        self.restarts += 1
        self.start()
        return f"{self.name} exited (code {code}); started again (see {self.log_path})"

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, deadline: float) -> None:
        if self.proc is None:
            return
        try:
            self.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.log is not None:
            self.log.close()


class LocalCluster:
    """The server and workers of a local distributed run (the trainer is the caller)."""

    def __init__(self, cfg: EvoConfig, run_path: Path, workers: int) -> None:
        self.cfg = cfg
        logs = run_path / "logs"
        logs.mkdir(exist_ok=True)
        port = f"dist.port={cfg.dist.port}"
        config = str(run_path / "config.yaml")
        self.server = Child("server", evo_command("server", "--config", config, port), logs / "server.log")
        self.workers = [
            Child(
                f"worker {i}",
                evo_command("worker", "--id", str(i), port, f"dist.spool_dir={run_path / 'spool' / f'worker-{i}'}"),
                logs / f"worker-{i}.log",
            )
            for i in range(workers)
        ]
        self._next_check = 0.0

    def start(self) -> None:
        self.server.start()
        for w in self.workers:
            w.start()

    def supervise(self, message: Any) -> None:
        """Restart children that exited (called from the trainer's loop, about once a second)."""
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + 1.0
        for child in (self.server, *self.workers):
            note = child.check()
            if note:
                message(f"warning: {note}")

    def stop(self) -> None:
        children = [*self.workers, self.server]  # workers first: they spool what they hold
        for child in children:
            child.stop(signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for child in children:
            child.wait(deadline)


def train_with_workers(trainer: Any, workers: int) -> Any:
    """Run ``trainer`` (a :class:`~evo_rl.dist.trainer.DistTrainer`) with a local server and workers."""
    cluster = LocalCluster(trainer.cfg, trainer.run.path, workers)
    trainer.supervisor = cluster.supervise
    cluster.start()
    try:
        return trainer.train()
    finally:
        cluster.stop()


def local_config(cfg: EvoConfig, workers: int, resume: bool) -> EvoConfig:
    """The run's config for ``--workers N`` on this machine: a free loopback port, N worker slots."""
    if workers < 1:
        raise DistError(f"--workers must be at least 1, got {workers}")
    if resume:
        if workers > cfg.dist.max_workers:
            raise DistError(
                f"--workers {workers}: this run's replay holds dist.max_workers={cfg.dist.max_workers} workers' cars; "
                f"resume it with at most {cfg.dist.max_workers} workers"
            )
    else:
        cfg.dist.max_workers = workers
    cfg.dist.host = "127.0.0.1"
    cfg.dist.port = free_port()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return cfg
