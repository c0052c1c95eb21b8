"""``evo-rl bench sim|replay|learner|realtime|capture|tmnf``: speed benchmarks, each printing one JSON object.

The options live here; each :mod:`evo_rl.bench` module's ``run`` takes them as plain keyword
arguments (and ``bench sim`` an :class:`~evo_rl.config.EvoConfig`) and returns the JSON-ready result.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

from evo_rl.cli.common import add_config_args, config_from_args, print_json

BENCHES = {
    "sim": "simulator: full environment steps per second over many cars",
    "replay": "replay memory: microseconds per sampled batch, inserts per second",
    "learner": "learning algorithms: gradient updates per second",
    "realtime": "real-time environment against a virtual TrackMania 2020: step period, jitter, latency",
    "capture": "capture of a virtual game's window and TMRL's screen LIDAR, per frame",
    "tmnf": "lock-step steps per second through the TMNF protocol against virtual TMNF instances",
    "transport": "distributed transport: worker-to-trainer transitions/s and weight broadcasts, beside TMRL's relay",
}


def _sim_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cars", type=int, default=4096, help="cars stepped together (default 4096)")
    p.add_argument("--seconds", type=float, default=10.0, help="timed seconds of stepping (default 10)")
    p.add_argument("--obs", choices=["lidar", "full"], default="lidar", help="LIDAR or 64x64 camera observations")
    p.add_argument("--track", default="evo-test", help="built-in track name or .track path (default evo-test)")
    p.add_argument("--threads", type=int, default=0, help="numba threads; 0 = all cores")
    p.add_argument(
        "--tracks", type=int, default=1, help="drive this many generated tracks (seeds 0..N-1) instead of --track"
    )
    add_config_args(p)  # e.g. a reward to compare: `reward=[{term: progress_trajectory}]`


def _replay_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--transitions", type=int, default=100_000, help="transitions in each LIDAR memory")
    p.add_argument("--image-transitions", type=int, default=100_000, help="transitions in each image memory")
    p.add_argument("--batch-size", type=int, default=256, help="transitions per sampled batch")
    p.add_argument("--n-envs", type=int, default=16, help="cars per insert call")
    p.add_argument("--samples", type=int, default=2000, help="timed LIDAR batches (image: a tenth)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data and of sampling")


def _learner_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--algo", choices=["sac", "redq", "ppo"], default="sac", help="algorithm to measure")
    p.add_argument("--seconds", type=float, default=10.0, help="measuring time of each timed part, seconds")
    p.add_argument("--batch", type=int, default=256, help="batch (minibatch for PPO) size")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 = one per core")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda or auto")
    p.add_argument(
        "--amp",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="EVO RL's agents in mixed precision (algo.amp: float16 on CUDA, bfloat16 on the CPU) or not; "
        "default as algo.amp: null (on with CUDA only)",
    )


def _realtime_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=int, default=1200, help="control steps to drive (default 1200: 60 s at 1x)")
    p.add_argument("--time-scale", type=float, default=1.0, help="virtual game seconds per real second (default 1)")
    p.add_argument("--track", default="evo-test", help="the virtual game's track (default evo-test)")


def _capture_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frames", type=int, default=200, help="timed frames (default 200)")


def _tmnf_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--instances", type=int, default=1, help="virtual TMNF instances (default 1)")
    p.add_argument("--steps", type=int, default=2000, help="steps per instance (default 2000)")
    p.add_argument("--threads", action="store_true", help="instances as threads of this process, not processes")


def _transport_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=4, help="worker processes sending batches (default 4)")
    p.add_argument("--seconds", type=float, default=5.0, help="timed seconds of each throughput run (default 5)")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds before timing starts (default 1)")
    p.add_argument(
        "--batch-steps", type=int, default=None, help="transitions per batch (default: dist.batch_steps, 1024)"
    )
    p.add_argument("--broadcast-workers", type=int, default=8, help="workers receiving weight broadcasts (default 8)")
    p.add_argument("--broadcasts", type=int, default=20, help="timed weight broadcasts (default 20; 0 = none)")
    p.add_argument("--compress", nargs="+", default=["none", "lz4"], choices=["none", "lz4", "zstd"])
    p.add_argument("--obs", nargs="+", default=["lidar", "images"], choices=["lidar", "images"])
    p.add_argument("--no-tmrl", action="store_true", help="skip TMRL's relay (tlspyo)")


ARGUMENTS = {
    "sim": _sim_arguments,
    "replay": _replay_arguments,
    "learner": _learner_arguments,
    "realtime": _realtime_arguments,
    "capture": _capture_arguments,
    "tmnf": _tmnf_arguments,
    "transport": _transport_arguments,
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="speed benchmarks (JSON output)")
    bsub = p.add_subparsers(dest="bench_command", metavar="BENCH", required=True)
    for name, help_text in BENCHES.items():
        bp = bsub.add_parser(name, help=help_text)
        bp.add_argument("--json", action="store_true", help="print only the JSON object (the default output)")
        bp.set_defaults(func=_run, bench_name=name)
        ARGUMENTS[name](bp)


def bench_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of ``evo_rl.bench.<name>.run`` from parsed options."""
    name = args.bench_name
    if name == "sim":
        return {
            "cfg": config_from_args(args),
            "cars": args.cars,
            "seconds": args.seconds,
            "obs": args.obs,
            "track": args.track,
            "threads": args.threads,
            "tracks": args.tracks,
        }
    if name == "replay":
        return {
            "transitions": args.transitions,
            "image_transitions": args.image_transitions,
            "batch_size": args.batch_size,
            "n_envs": args.n_envs,
            "samples": args.samples,
            "seed": args.seed,
        }
    if name == "tmnf":
        return {"instances": args.instances, "steps": args.steps, "processes": not args.threads}
    if name == "transport":
        return {
            "workers": args.workers,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "batch_steps": args.batch_steps,
            "broadcast_workers": args.broadcast_workers,
            "broadcasts": args.broadcasts,
            "compress": args.compress,
            "obs": args.obs,
            "tmrl": not args.no_tmrl,
        }
    if name == "capture":
        return {"frames": args.frames}
    if name == "realtime":
        return {"steps": args.steps, "time_scale": args.time_scale, "track": args.track}
    return {
        "algo": args.algo,
        "seconds": args.seconds,
        "batch": args.batch,
        "threads": args.threads,
        "device": args.device,
        "amp": args.amp,
    }


def _run(args: argparse.Namespace) -> int:
    module = importlib.import_module(f"evo_rl.bench.{args.bench_name}")
    print_json(module.run(**bench_kwargs(args)))
    return 0
