"""``evo-rl train --ray [ADDRESS]``: the rollout workers as Ray actors, on a Ray cluster or a local
Ray instance, feeding the same server and trainer as ``--workers N``.

Each actor runs one :class:`~evo_rl.dist.worker.Worker` (the same code as ``evo-rl worker``): it
joins the server, takes the run's config and the latest weights, and sends its batches through
the wire protocol, with its spool, its sequence numbers and the trainer's acks; Ray only places
and supervises the processes. An actor that dies (its node lost, killed) is started again, and its
spool (on its node) still holds what it had produced. Ray is an optional extra (``pip install
'evo-rl[ray]'``), imported only here.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from evo_rl.config import EvoConfig, config_to_yaml
from evo_rl.dist.common import DistError
from evo_rl.dist.keys import is_loopback
from evo_rl.dist.launch import STOP_SECONDS, LocalCluster

RAY_EXTRA = "pip install 'evo-rl[ray]'"


def import_ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise DistError(f"--ray needs Ray, an optional extra: {RAY_EXTRA}") from e
    return ray


class RolloutActor:
    """One rollout worker in a Ray actor process (``max_concurrency=2``: :meth:`stop` runs beside :meth:`run`)."""

    def __init__(self, run_config: str, worker_id: int, overrides: list[str], log_path: str | None) -> None:
        import yaml

        from evo_rl.config import validate_config
        from evo_rl.dist.server import log_line
        from evo_rl.dist.worker import Worker

        cfg = validate_config(yaml.safe_load(run_config), "the run's config")
        self.log_file = open(log_path, "a", buffering=1) if log_path else None  # noqa: SIM115 - the actor's life

        self.worker = Worker(cfg, worker_id, overrides=overrides, log=lambda text: log_line(text, self.log_file))

    def run(self) -> dict[str, Any]:
        return self.worker.run()

    def stop(self) -> None:
        self.worker.stop("stop")


class RayCluster(LocalCluster):
    """The server as a child process, the workers as Ray actors (the trainer is the caller)."""

    def __init__(self, cfg: EvoConfig, run_path: Path, workers: int, address: str | None) -> None:
        super().__init__(cfg, run_path, workers=0)
        self.ray = import_ray()
        self.n = workers
        self.address = address
        self.run_path = run_path
        self.actors: list[Any] = [None] * workers
        self.runs: list[Any] = [None] * workers
        self.restarts = 0
        self.started_ray = False

    def _overrides(self, i: int) -> tuple[list[str], str | None]:
        if self.address is None:  # this machine: spools and logs in the run folder
            spool = self.run_path / "spool" / f"worker-{i}"
            return [f"dist.spool_dir={spool}"], str(self.run_path / "logs" / f"worker-{i}.log")
        # a cluster: the actor's node keeps its spool; its output goes to Ray's logs
        spool = Path(tempfile.gettempdir()) / "evo-rl-spool" / self.run_path.name / f"worker-{i}"
        return [f"dist.spool_dir={spool}"], None

    def _start_actor(self, i: int) -> None:
        ray = self.ray
        actor_cls = ray.remote(max_concurrency=2, num_cpus=1)(RolloutActor)
        overrides, log_path = self._overrides(i)
        self.actors[i] = actor_cls.options(name=None).remote(config_to_yaml(self.cfg), i, overrides, log_path)
        self.runs[i] = self.actors[i].run.remote()

    def start(self) -> None:
        ray = self.ray
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if self.address is None:
                kwargs["num_cpus"] = max(self.n, 1)  # one slot per rollout actor on this machine
            ray.init(address=self.address, **kwargs)
            self.started_ray = True
        self.server.start()
        for i in range(self.n):
            self._start_actor(i)

    def supervise(self, message: Any) -> None:
        """Restart the server or actors that ended (called from the trainer's loop)."""
        now = time.monotonic()
        if now < self._next_check:
            return
        super().supervise(message)
        ray = self.ray
        for i, ref in enumerate(self.runs):
            done, _ = ray.wait([ref], timeout=0)
            if not done:
                continue
            try:
                result = ray.get(done[0])
                why = f"stopped ({result.get('reason')})"
            except Exception as e:  # the actor died or raised: start another
                why = f"failed: {str(e).splitlines()[0][:200] if str(e) else type(e).__name__}"
            ray.kill(self.actors[i], no_restart=True)
            self.restarts += 1
            self._start_actor(i)
            message(f"warning: Ray worker {i} {why}; started again")

    def stop(self) -> None:
        ray = self.ray
        live = [a for a in self.actors if a is not None]
        for a in live:
            a.stop.remote()
        ray.wait([r for r in self.runs if r is not None], num_returns=len(live), timeout=STOP_SECONDS)
        for a in live:
            ray.kill(a, no_restart=True)
        super().stop()  # the server
        if self.started_ray:
            ray.shutdown()


def ray_config(cfg: EvoConfig, address: str | None) -> EvoConfig:
    """Where the server listens for a Ray run: loopback on this machine, this node's address on a cluster."""
    if address is None:
        return cfg
    ray = import_ray()
    cfg.dist.host = ray.util.get_node_ip_address()
    if not is_loopback(cfg.dist.host) and cfg.dist.keys_dir is None and not cfg.dist.allow_plaintext:
        raise DistError(
            f"--ray {address}: workers on other nodes reach the server at {cfg.dist.host}, beyond loopback; "
            "set dist.keys_dir (see `evo-rl keys generate`) or dist.allow_plaintext=true on a trusted network"
        )
    return cfg


def train_with_ray(trainer: Any, workers: int, address: str | None) -> Any:
    """Run ``trainer`` (a :class:`~evo_rl.dist.trainer.DistTrainer`) with Ray actors as its workers."""
    cluster = RayCluster(trainer.cfg, trainer.run.path, workers, address)
    trainer.supervisor = cluster.supervise
    try:
        cluster.start()
        return trainer.train()
    finally:
        cluster.stop()
