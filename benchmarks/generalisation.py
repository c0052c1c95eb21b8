"""How well a policy drives tracks it never trained on: finish rate and lap ratios on held-out tracks.

    python benchmarks/generalisation.py [POLICY] [--tracks 20] [--episodes 3] [--first-seed 90000] [--no-builtin]

POLICY is a policy file, a run folder or name, or ``pretrained`` (the default). The held-out set
is ``--tracks`` generated tracks with the default generator knobs, seeds ``--first-seed`` onwards
(training configs and presets of EVO RL draw their generated tracks from seeds below 10,000, so
these are never trained on), plus the built-in tracks. Every track is driven ``--episodes`` times
with the deterministic policy (the episodes of a track at once, their start perturbations differ).

Prints one JSON object: per track the finish rate, mean lap time, its ratio to the track's
reference lap (``lap_time_ratio``) and, where the track has a record lap, to the record
(``record_ratio``); and the summary over the generated set and over the built-in tracks.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np

from evo_rl.sim.catalog import list_tracks


def evaluate(policy: Any, track: str, episodes: int) -> dict[str, Any]:
    """One track's evaluation by :class:`~evo_rl.train.evaluate.Evaluator` (its own step limit)."""
    from evo_rl.train.evaluate import Evaluator

    cfg = policy.cfg.model_copy(deep=True)
    cfg.env.track = track
    cfg.env.max_steps = None
    r = Evaluator(cfg, episodes).run(lambda obs: policy.actor.act(obs, test=True))
    out = {
        "track": track,
        "finish_rate": r.finish_rate,
        "mean_lap_time": r.mean_lap_time,
        "reference_lap_time": round(r.reference_lap_time, 3) if r.reference_lap_time else None,
        "lap_time_ratio": round(r.lap_time_ratio, 4) if r.lap_time_ratio else None,
        "mean_progress": round(r.mean_progress, 4),
        "end_reasons": r.end_reasons,
    }
    record_ratio = getattr(r, "record_ratio", None)
    if record_ratio is not None:
        out["record_ratio"] = round(record_ratio, 4)
    return out


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Finish rate over all episodes and the mean lap ratios of the finished tracks."""
    ratios = [r["lap_time_ratio"] for r in rows if r["lap_time_ratio"]]
    records = [r["record_ratio"] for r in rows if r.get("record_ratio")]
    return {
        "tracks": len(rows),
        "finish_rate": round(float(np.mean([r["finish_rate"] for r in rows])), 4) if rows else None,
        "tracks_always_finished": sum(r["finish_rate"] == 1.0 for r in rows),
        "mean_lap_time_ratio": round(float(np.mean(ratios)), 4) if ratios else None,
        "mean_record_ratio": round(float(np.mean(records)), 4) if records else None,
        "mean_progress": round(float(np.mean([r["mean_progress"] for r in rows])), 4) if rows else None,
    }


def main(argv: list[str] | None = None) -> int:
    from evo_rl.cli.eval import policy_path
    from evo_rl.train.loop import configure_torch
    from evo_rl.train.policy import load_policy

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("policy", nargs="?", default="pretrained", help="policy file, run folder or name, or pretrained")
    p.add_argument("--tracks", type=int, default=20, help="held-out generated tracks (default 20)")
    p.add_argument("--episodes", type=int, default=3, help="episodes per track (default 3)")
    p.add_argument("--first-seed", type=int, default=90_000, help="seed of the first held-out track")
    p.add_argument("--runs-dir", default="runs", help="folder of run folders (for a run name)")
    p.add_argument("--no-builtin", action="store_true", help="skip the built-in tracks")
    args = p.parse_args(argv)
    path = policy_path(args.policy, args.runs_dir)
    policy = load_policy(path)
    configure_torch(policy.cfg)
    start = time.monotonic()
    held_out = [evaluate(policy, f"gen-{args.first_seed + i}", args.episodes) for i in range(args.tracks)]
    builtin = [] if args.no_builtin else [evaluate(policy, name, args.episodes) for name in list_tracks()]
    out = {
        "bench": "generalisation",
        "policy": str(path),
        "trained_on": policy.cfg.env.tracks if policy.cfg.env.tracks is not None else policy.cfg.env.track,
        "episodes_per_track": args.episodes,
        "held_out": summary(held_out),
        "builtin": summary(builtin) if builtin else None,
        "per_track": held_out + builtin,
        "seconds": round(time.monotonic() - start, 1),
    }
    print(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
