"""``evo-rl train``: train a policy in the built-in simulator.

With no arguments it trains the default algorithm (SAC) on the default track
with the default config, showing a live dashboard; everything goes to
``runs/<name>/`` (see :mod:`evo_rl.train.run`).
"""

from __future__ import annotations

import argparse

from evo_rl.cli.common import add_config_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a policy (default: SAC on evo-test with LIDAR)",
        description=(
            "Train a policy in the built-in simulator. Writes runs/<name>/: config.yaml, metrics.jsonl, "
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
    p.set_defaults(func=_train)


def _resume_config(args: argparse.Namespace):  # noqa: ANN202 - returns (RunDir, EvoConfig)
    from evo_rl.config import _apply, load_config, parse_override
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
        raise ConfigError(f"run {run.path} is being trained right now by process {pid}; stop it before --resume")
    cfg = run.load_config()
    if overrides:
        data = cfg.model_dump(mode="json")
        for text in overrides:
            keys, value = parse_override(text)
            _apply(data, keys, value, text)
        from pydantic import ValidationError

        from evo_rl.config import EvoConfig, _format_errors

        try:
            cfg = EvoConfig.model_validate(data)
        except ValidationError as e:
            raise ConfigError(_format_errors(e, f"{run.config_path} + overrides")) from None
        run.write_config(cfg)
    return run, cfg


def _train(args: argparse.Namespace) -> int:
    from evo_rl.cli.common import config_from_args
    from evo_rl.train.loop import Trainer
    from evo_rl.train.run import create_run

    if args.minutes is not None and args.minutes <= 0:
        from evo_rl.errors import ConfigError

        raise ConfigError(f"--minutes must be positive, got {args.minutes}")
    if args.resume is not None:
        run, cfg = _resume_config(args)
    else:
        cfg = config_from_args(args)
        if args.minutes is not None:
            cfg.train.minutes = args.minutes
        run = create_run(cfg.train.runs_dir, args.name, cfg)
    trainer = Trainer(cfg, run, resume=args.resume is not None, minutes=args.minutes)
    c = trainer.train()
    ev = trainer.last_eval
    summary = f"{run.path}: {c.env_steps:,} env steps, {c.updates:,} updates, {c.episodes:,} episodes"
    if ev is not None:
        lap = f", mean lap {ev.mean_lap_time:.2f} s" if ev.mean_lap_time is not None else ""
        ref = f" (reference {ev.reference_lap_time:.2f} s)" if ev.reference_lap_time else ""
        summary += f"; last evaluation: finish rate {100 * ev.finish_rate:.0f}%{lap}{ref}"
    print(summary, flush=True)
    return {"SIGINT": 130, "SIGTERM": 143}.get(trainer.stop_reason, 0)
