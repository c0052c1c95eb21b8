"""``evo-rl plot RUN --out curves.png``: learning curves of a run."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plot",
        help="draw a run's learning curves (reward, lap time, finish rate, losses) to a PNG",
        description="Draw a run's learning curves from its metrics.jsonl.",
    )
    p.add_argument("run", metavar="RUN", help="run folder, or a run name under --runs-dir")
    p.add_argument("--out", "-o", default=None, help="PNG to write (default: RUN/curves.png)")
    p.add_argument("--runs-dir", default="runs", help="folder holding run folders (default: runs)")
    p.set_defaults(func=_plot)


def _plot(args: argparse.Namespace) -> int:
    from evo_rl.train.plot import plot_run
    from evo_rl.train.run import resolve_run

    run = resolve_run(args.run, args.runs_dir)
    out = plot_run(run.metrics_path, args.out or run.path / "curves.png", title=run.name)
    print(out)
    return 0
