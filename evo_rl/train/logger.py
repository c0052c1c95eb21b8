"""Metrics logging: ``metrics.jsonl``, TensorBoard and (optionally) Weights & Biases."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from evo_rl.config import EvoConfig
from evo_rl.errors import ConfigError


def flatten(record: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested record as ``{"a/b": value}``; None and NaN are left out."""
    out: dict[str, float] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "/"))
        elif isinstance(value, bool):
            out[name] = float(value)
        elif isinstance(value, int | float) and math.isfinite(value):
            out[name] = float(value)
    return out


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):  # NumPy / torch scalars
        return _json_safe(value.item())
    return value


class MetricsLogger:
    """Appends one JSON object per interval to ``metrics.jsonl`` and mirrors the
    numeric values to TensorBoard (and W&B when ``train.wandb`` is on).

    The step of every record is its ``env_steps`` field. ``purge_step`` (a resumed run:
    the restored checkpoint's env steps + 1) hides TensorBoard events of that step and
    later that a killed session had written. A failed write (a full disk) is counted in
    ``write_errors`` and training goes on.
    """

    def __init__(
        self,
        run_path: str | Path,
        cfg: EvoConfig,
        run_name: str,
        tensorboard: bool = True,
        purge_step: int | None = None,
    ) -> None:
        self.path = Path(run_path) / "metrics.jsonl"
        self._file = open(self.path, "a", buffering=1)  # noqa: SIM115 - closed in close()
        self.write_errors = 0
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(Path(run_path) / "tb"), purge_step=purge_step)
        self._wandb = None
        if cfg.train.wandb:
            try:
                import wandb
            except ImportError:
                raise ConfigError(
                    "train.wandb is true but the wandb package is not installed; "
                    "install it (pip install wandb) or set train.wandb=false"
                ) from None
            self._wandb = wandb.init(
                project=cfg.train.wandb_project,
                name=run_name,
                id=run_name,
                resume="allow",
                config=cfg.model_dump(mode="json"),
            )

    def log(self, record: dict[str, Any]) -> None:
        """Write one record; it must hold ``env_steps``."""
        record = _json_safe(record)
        try:
            self._file.write(json.dumps(record) + "\n")
        except OSError:
            self.write_errors += 1
        step = int(record["env_steps"])
        scalars = flatten({k: v for k, v in record.items() if k not in ("env_steps", "time")})
        if self._tb is not None:
            for key, value in scalars.items():
                self._tb.add_scalar(key, value, step)
        if self._wandb is not None:
            self._wandb.log(scalars, step=step)

    def flush(self) -> None:
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError:
            self.write_errors += 1
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        try:
            self._file.close()
        except OSError:
            self.write_errors += 1
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Every record of a ``metrics.jsonl``; a torn last line (killed trainer) is skipped."""
    records = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def truncate_metrics(path: str | Path, env_steps: int) -> int:
    """Keep only the records of ``metrics.jsonl`` at or before ``env_steps`` (a resumed run
    drops what a killed session logged after its last checkpoint); torn lines go too.
    Rewrites the file atomically; returns how many lines were dropped."""
    path = Path(path)
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    with open(path) as f:
        for line in f:
            try:
                record = json.loads(line)
                keep = int(record["env_steps"]) <= env_steps
            except (ValueError, KeyError, TypeError):
                keep = False
            if keep:
                kept.append(line if line.endswith("\n") else line + "\n")
            elif line.strip():
                dropped += 1
    if not dropped:
        return 0
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.writelines(kept)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return dropped
