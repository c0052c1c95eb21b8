"""``evo-rl pause RUN`` / ``evo-rl resume RUN``: pause a running training and let
it continue, without restarting it (the trainer polls a control file)."""

from __future__ import annotations

import argparse

from evo_rl.train.run import resolve_run


def register(sub: argparse._SubParsersAction) -> None:
    for name, paused, text in (
        ("pause", True, "pause a running training (it keeps its state in memory)"),
        ("resume", False, "let a paused training continue"),
    ):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("run", metavar="RUN", help="run folder, or a run name under --runs-dir")
        p.add_argument("--runs-dir", default="runs", help="folder holding run folders (default: runs)")
        p.set_defaults(func=_control, paused=paused)


def _control(args: argparse.Namespace) -> int:
    run = resolve_run(args.run, args.runs_dir)
    run.set_paused(args.paused)
    state = "paused" if args.paused else "running"
    pid = run.trainer_pid()  # from the run's lock: a trainer.json left by a killed trainer does not count
    if pid is None:
        print(f"{run.path}: marked {state}; no trainer is running it now (a --resume will start {state})")
    else:
        who = f"pid {pid}" if pid > 0 else "starting"
        print(f"{run.path}: trainer ({who}) is {state}")
    return 0
