"""How well an ``evo-rl train`` run learned, from its ``metrics.jsonl``, as one JSON object.

    evo-rl train --minutes 30 --name bench train.eval_every_minutes=1
    python benchmarks/run_summary.py runs/bench

Prints the wall-clock minutes to the first evaluation with a finished lap, and the
last evaluation's finish rate and lap-time ratio (mean lap over the reference).
"""

from __future__ import annotations

import argparse
import json
import sys

from evo_rl.train.logger import read_metrics
from evo_rl.train.run import resolve_run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="run folder or name")
    parser.add_argument("--runs-dir", default="runs")
    args = parser.parse_args(argv)
    run = resolve_run(args.run, args.runs_dir)
    records = read_metrics(run.metrics_path)
    evals = [r for r in records if "eval" in r]
    first = next((r for r in evals if r["eval"]["finish_rate"] > 0), None)
    last = evals[-1] if evals else None
    cfg = run.load_config()
    summary = {
        "run": str(run.path),
        "algo": cfg.algo.name,
        "flavour": cfg.env.flavour,
        "track": cfg.env.track,
        "minutes": records[-1]["elapsed"] / 60.0 if records else 0.0,
        "env_steps": records[-1]["env_steps"] if records else 0,
        "updates": records[-1]["updates"] if records else 0,
        "first_finish_minutes": first["elapsed"] / 60.0 if first else None,
        "finish_rate": last["eval"]["finish_rate"] if last else None,
        "mean_lap_time": last["eval"]["mean_lap_time"] if last else None,
        "reference_lap_time": last["eval"]["reference_lap_time"] if last else None,
        "lap_time_ratio": last["eval"]["lap_time_ratio"] if last else None,
        "evaluations": [
            {
                "minutes": r["elapsed"] / 60.0,
                "env_steps": r["env_steps"],
                "finish_rate": r["eval"]["finish_rate"],
                "lap_time_ratio": r["eval"]["lap_time_ratio"],
                "mean_progress": r["eval"]["mean_progress"],
            }
            for r in evals
        ],
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
