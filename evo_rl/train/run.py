"""The run folder: where one training run keeps everything it writes.

```
runs/<name>/
  config.yaml          resolved configuration
  metrics.jsonl        one JSON object per log interval (appended on resume)
  tb/                  TensorBoard event files
  checkpoints/         step-<env steps>/ folders (see checkpoint.py)
  policy.safetensors   latest actor weights, loadable by `evo-rl eval`
  PAUSED               present while the trainer is paused (`evo-rl pause`)
  trainer.json         process id of the trainer while it runs
```
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from evo_rl.config import EvoConfig, config_to_yaml, load_config
from evo_rl.errors import CheckpointError, ConfigError


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

    def mark_running(self) -> None:
        """Record this process as the run's trainer (read by ``evo-rl pause``)."""
        self.trainer_path.write_text(json.dumps({"pid": os.getpid(), "started": time.time()}) + "\n")

    def mark_stopped(self) -> None:
        self.trainer_path.unlink(missing_ok=True)

    def trainer_pid(self) -> int | None:
        """Process id of the trainer running this run, or None when none runs."""
        try:
            pid = int(json.loads(self.trainer_path.read_text())["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid

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

    Raises :class:`ConfigError` when a run of that name exists (use ``--resume``).
    """
    if name is not None and (not name or "/" in name or name in (".", "..")):
        raise ConfigError(f"run name {name!r} must be a plain folder name (letters, digits, '-', '_')")
    base = Path(runs_dir)
    run_name = name or default_run_name()
    path = base / run_name
    if name is None:  # two runs started in the same second get distinct names
        n = 1
        while path.exists():
            n += 1
            path = base / f"{run_name}-{n}"
    elif path.exists() and any(path.iterdir()):
        raise ConfigError(f"run folder {path} already exists; continue it with --resume {name} or pick another --name")
    path.mkdir(parents=True, exist_ok=True)
    run = RunDir(path)
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
