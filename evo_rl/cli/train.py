"""``evo-rl train``: train a policy in the built-in simulator.

With no arguments it trains the default algorithm (SAC) on the default track
with the default config, showing a live dashboard; everything goes to
``runs/<name>/`` (see :mod:`evo_rl.train.run`).
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evo_rl.cli.common import add_config_args

if TYPE_CHECKING:
    from evo_rl.config import EvoConfig
    from evo_rl.train.run import RunDir


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a policy (default: SAC on evo-test with LIDAR)",
        description=(
            "Train a policy in the built-in simulator (or in TrackMania 2020: --source tm2020, docs/games.md). Writes runs/<name>/: config.yaml, metrics.jsonl, "
            "TensorBoard logs (tb/), checkpoints/ and policy.safetensors. Ctrl-C saves a checkpoint before "
            "exiting; `evo-rl pause NAME` / `evo-rl resume NAME` pause a running training."
        ),
    )
    add_config_args(p)
    p.add_argument("--minutes", "-m", type=float, default=None, help="stop after M minutes (evaluate and save first)")
    p.add_argument("--name", "-n", default=None, help="run name (default: a timestamp)")
    p.add_argument(
        "--resume",
        "-r",
        metavar="RUN",
        default=None,
        help="continue RUN (folder or name) from its last good checkpoint; only train.* overrides are allowed",
    )
    p.add_argument(
        "--source",
        choices=("sim", "tm2020", "tmnf"),
        default=None,
        help="car source (env.source): sim, tm2020 (TrackMania 2020) or tmnf (TrackMania Nations Forever); "
        "game settings in the game section",
    )
    p.add_argument(
        "--workers",
        "-w",
        type=int,
        default=None,
        metavar="N",
        help="distributed on this machine: a server, N rollout worker processes and the trainer (docs/distributed.md)",
    )
    p.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="the rollout workers as Ray actors (N from --workers, default 2) on the Ray cluster at ADDRESS, "
        "or on a local Ray instance without one (pip install 'evo-rl[ray]')",
    )
    p.add_argument(
        "--init",
        metavar="RUN",
        default=None,
        help="start from RUN's agent (its last checkpoint) or a policy .safetensors file, e.g. a simulator run",
    )
    p.set_defaults(func=_train)


def _resume_config(args: argparse.Namespace):  # noqa: ANN202 - returns (RunDir, EvoConfig)
    from evo_rl.config import apply_overrides, load_config, parse_override, validate_config
    from evo_rl.errors import ConfigError
    from evo_rl.train.run import resolve_run

    if args.config is not None or args.name is not None:
        raise ConfigError("--resume continues a run with its own config.yaml and name; drop --config and --name")
    overrides = list(args.overrides or [])
    for text in overrides:
        path, _ = parse_override(text)
        if path[0] != "train":
            raise ConfigError(
                f"override {text!r}: a resumed run keeps its environment, algorithm and memory settings; "
                "only train.* may change (start a new run to change the rest)"
            )
    runs_dir = load_config(None, [o for o in overrides if o.startswith("train.runs_dir=")]).train.runs_dir
    run = resolve_run(args.resume, runs_dir)
    pid = run.trainer_pid()
    if pid is not None:
        who = f"process {pid}" if pid > 0 else "another process"
        raise ConfigError(f"run {run.path} is being trained right now by {who}; stop it before --resume")
    cfg = run.load_config()
    if overrides:
        data = apply_overrides(cfg.model_dump(mode="json"), overrides)
        cfg = validate_config(data, f"{run.config_path} + overrides")
    return run, cfg


def _check_minutes(minutes: float | None) -> None:
    if minutes is not None and not (math.isfinite(minutes) and minutes > 0):
        from evo_rl.errors import ConfigError

        raise ConfigError(f"--minutes must be a positive number of minutes, got {minutes}")


def _new_run(cfg: EvoConfig, name: str | None) -> tuple[RunDir, list[Path]]:
    """Create the run folder; returns it and the folders this call created (deepest first)."""
    from evo_rl.errors import ConfigError
    from evo_rl.train.run import create_run

    base = Path(cfg.train.runs_dir)
    missing = [p for p in (base, *base.parents) if not p.exists()]
    existed = name is not None and (base / name).is_dir()
    try:
        run = create_run(base, name, cfg)
    except OSError as e:
        raise ConfigError(
            f"train.runs_dir = {cfg.train.runs_dir!r}: cannot create the run folder: {e.strerror or e}"
        ) from None
    created = [] if existed else [run.path]
    return run, created + missing


START_FILES = {"config.yaml", "config.yaml.tmp", "checkpoints"}
"""What creating a run folder writes in it (``checkpoints`` empty)."""
CONTROL_FILES = {"trainer.lock", "trainer.json", "trainer.json.tmp"}
"""What a trainer's start may leave in the run folder besides (see :meth:`RunDir.lock`)."""


def _discard_new_run(run: RunDir, created: list[Path]) -> None:
    """Undo :func:`_new_run` after a failed start: remove the run's config, its empty checkpoints
    folder, its lock files and the folders that call created, but only while the run folder
    holds nothing else and no trainer holds it."""
    try:
        entries = set(os.listdir(run.path))
        if entries - START_FILES - CONTROL_FILES or (
            run.checkpoints_dir.is_dir() and any(run.checkpoints_dir.iterdir())
        ):
            return  # something else wrote here: keep it all
        if run.trainer_pid() is not None:
            return  # another trainer took the folder meanwhile
        for leftover in sorted(entries & (START_FILES | CONTROL_FILES) - {"checkpoints"}):
            (run.path / leftover).unlink(missing_ok=True)
        if run.checkpoints_dir.is_dir():
            run.checkpoints_dir.rmdir()
        for folder in created:
            folder.rmdir()  # deepest first; fails (and stops) at a folder that holds anything
    except OSError:
        return


def _ray_config(cfg: Any, address: str | None) -> Any:
    if address is None:
        return cfg
    from evo_rl.dist.ray_workers import import_ray, ray_config

    import_ray()  # a clear message naming the extra before a run folder is made
    return ray_config(cfg, None if address == "local" else address)


def _train(args: argparse.Namespace, distributed: bool = False) -> int:
    from evo_rl.cli.common import config_from_args
    from evo_rl.train.loop import Trainer
    from evo_rl.train.preflight import check_startup

    _check_minutes(args.minutes)
    workers: int | None = getattr(args, "workers", None)
    ray_address: str | None = getattr(args, "ray", None)
    if ray_address is not None and workers is None:
        workers = 2
    trainer_cls: type[Trainer] = Trainer
    if distributed or workers is not None:
        from evo_rl.dist.trainer import DistTrainer

        trainer_cls = DistTrainer
    if args.resume is not None:
        if args.init is not None or args.source is not None:
            from evo_rl.errors import ConfigError

            raise ConfigError("--resume continues a run as it was; drop --init and --source")
        run, cfg = _resume_config(args)
        if workers is not None:
            from evo_rl.dist.launch import local_config

            cfg = local_config(cfg, workers, resume=True)
            cfg = _ray_config(cfg, ray_address)
        check_startup(cfg, new_run=False)
        if args.overrides or workers is not None:
            run.write_config(cfg)
        trainer = trainer_cls(cfg, run, resume=True, minutes=args.minutes)
    else:
        cfg = config_from_args(args)
        if args.source is not None:
            cfg.env.source = args.source
        if args.minutes is not None:
            cfg.train.minutes = args.minutes
        if workers is not None:
            from evo_rl.dist.launch import local_config

            cfg = local_config(cfg, workers, resume=False)
            cfg = _ray_config(cfg, ray_address)
        check_startup(cfg)
        run, created = _new_run(cfg, args.name)
        try:
            trainer = trainer_cls(cfg, run, resume=False, minutes=args.minutes, init=args.init)
        except BaseException:
            _discard_new_run(run, created)
            raise
    if ray_address is not None and workers is not None:
        from evo_rl.dist.ray_workers import train_with_ray

        c = train_with_ray(trainer, workers, None if ray_address == "local" else ray_address)
    elif workers is not None:
        from evo_rl.dist.launch import train_with_workers

        c = train_with_workers(trainer, workers)
    else:
        c = trainer.train()
    ev = trainer.last_eval
    summary = f"{run.path}: {c.env_steps:,} env steps, {c.updates:,} updates, {c.episodes:,} episodes"
    if ev is not None:
        lap = f", mean lap {ev.mean_lap_time:.2f} s" if ev.mean_lap_time is not None else ""
        ref = f" (reference {ev.reference_lap_time:.2f} s)" if ev.reference_lap_time else ""
        summary += f"; last evaluation: finish rate {100 * ev.finish_rate:.0f}%{lap}{ref}"
    print(summary, flush=True)
    return {"SIGINT": 130, "SIGTERM": 143}.get(trainer.stop_reason, 0)
