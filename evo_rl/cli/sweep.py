"""``evo-rl sweep``: a grid or random search over config overrides and seeds with Ray Tune
(``pip install 'evo-rl[ray]'``); every trial is an ordinary run folder."""

from __future__ import annotations

import argparse
import time

from evo_rl.cli.common import add_config_args, config_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="grid or random search over config overrides and seeds (Ray Tune)",
        description="Train one run folder per trial for --minutes, each with its own overrides and seed, on a "
        "local Ray instance or the cluster at --address; then print a results table and write "
        "results.csv, results.json and results.png in the sweep folder (<train.runs_dir>/<name>).",
    )
    add_config_args(p)
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2", help="values to try (grids multiply)")
    p.add_argument(
        "--random",
        action="append",
        default=[],
        metavar="KEY=KIND:ARGS",
        help="a random draw per sample: uniform:LO:HI, loguniform:LO:HI, int:LO:HI or choice:A,B",
    )
    p.add_argument("--samples", type=int, default=1, help="random draws per grid point (default 1)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds, each configuration once per seed (default 0)")
    p.add_argument("--minutes", "-m", type=float, default=5.0, help="training minutes per trial (default 5)")
    p.add_argument("--metric", default="score", help="what ranks trials: score (default), finish_rate, lap_time_ratio")
    p.add_argument("--name", "-n", default=None, help="sweep folder name (default: sweep-<timestamp>)")
    p.add_argument("--concurrent", type=int, default=None, help="trials at once (default: as many as CPUs allow)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs Ray reserves per trial (default 1)")
    p.add_argument("--address", default=None, help="a Ray cluster's address (default: a local Ray instance)")
    p.set_defaults(func=_sweep)


def _sweep(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from evo_rl.dist.common import DistError
    from evo_rl.dist.sweep import parse_grid, parse_random, sweep

    cfg = config_from_args(args)
    try:
        seeds = [int(s) for s in str(args.seeds).split(",") if s.strip()]
    except ValueError:
        raise DistError(f"--seeds {args.seeds!r}: write comma-separated integers, for example 0,1,2") from None
    out = sweep(
        cfg,
        args.name or time.strftime("sweep-%Y%m%d-%H%M%S"),
        parse_grid(args.grid),
        parse_random(args.random),
        seeds,
        args.samples,
        args.minutes,
        metric=args.metric,
        concurrent=args.concurrent,
        address=args.address,
        cpus_per_trial=args.cpus_per_trial,
    )
    table = Table(title=f"{out['dir']}: {len(out['rows'])} trials, best {out['metric']} first")
    cols = [*out["params"], "finish_rate", "lap_time_ratio", "score", "env_steps"]
    for c in cols:
        table.add_column(c, justify="right")
    for row in out["rows"]:
        cells = []
        for c in cols:
            v = row.get(c)
            cells.append(
                "-" if v is None else f"{v:.4g}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v)
            )
        table.add_row(*cells)
    Console().print(table)
    failed = [r for r in out["rows"] if r["error"]]
    for r in failed:
        print(f"trial failed: {r['error']}")
    print(f"results: {out['dir']}/results.csv, results.json, results.png")
    return 1 if failed and len(failed) == len(out["rows"]) else 0
