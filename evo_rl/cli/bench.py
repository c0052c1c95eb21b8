"""``evo-rl bench sim|replay|learner``: speed benchmarks, each printing one JSON object."""

from __future__ import annotations

import argparse
import importlib

from evo_rl.cli.common import add_config_args, config_from_args, print_json

BENCHES = {
    "sim": "simulator: full environment steps per second over many cars",
    "replay": "replay memory: microseconds per sampled batch, inserts per second",
    "learner": "learning algorithms: gradient updates per second",
}


CONFIGURED = {"sim"}  # benches that run on a config (--config and section.key=value overrides)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="speed benchmarks (JSON output)")
    bsub = p.add_subparsers(dest="bench_command", metavar="BENCH", required=True)
    for name, help_text in BENCHES.items():
        bp = bsub.add_parser(name, help=help_text)
        bp.add_argument("--json", action="store_true", help="print only the JSON object (the default output)")
        bp.set_defaults(func=_run, bench_name=name)
        _module(name).add_arguments(bp)
        if name in CONFIGURED:
            add_config_args(bp)  # e.g. a reward to compare: `reward=[{term: progress_trajectory}]`


def _module(name: str):
    return importlib.import_module(f"evo_rl.bench.{name}")


def _run(args: argparse.Namespace) -> int:
    module = _module(args.bench_name)
    result = module.run(args, config_from_args(args)) if args.bench_name in CONFIGURED else module.run(args)
    print_json(result)
    return 0
