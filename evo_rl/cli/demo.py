"""``evo-rl demo``: drive the default track with the policy shipped in the package,
write an animation of the lap and print its lap time."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="drive a lap with the shipped pretrained policy and write an animation of it",
        description="Drive one lap of a track with a trained policy (default: the one shipped with EVO RL), "
        "write a GIF of it and print the lap time.",
    )
    p.add_argument("--out", "-o", default="demo.gif", help="animation to write (default: demo.gif)")
    p.add_argument(
        "--policy",
        default="pretrained",
        help="`pretrained`, `general`, a policy .safetensors or a run folder (default: pretrained)",
    )
    p.add_argument("--track", "-t", default=None, help="track name or .track file (default: the policy's track)")
    p.add_argument("--runs-dir", default="runs", help="folder holding run folders (default: runs)")
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from evo_rl.cli.eval import load_for_driving
    from evo_rl.train.demo import drive_lap, write_animation

    _, policy = load_for_driving(args.policy, args.runs_dir, args.track)
    cfg = policy.cfg
    lap = drive_lap(policy.actor, cfg)
    out = write_animation(lap, args.out, title=f"EVO RL {cfg.algo.name.upper()} on {lap.track.name}")
    ref = f" (reference {lap.reference_lap_time:.2f} s)" if lap.reference_lap_time else ""
    if lap.finished:
        print(f"lap time {lap.lap_time:.2f} s{ref} on {lap.track.name}; animation: {out}")
    else:
        print(
            f"no finish on {lap.track.name}: {lap.end_reason} after {lap.race_time:.2f} s "
            f"({100 * lap.progress:.0f}% of the track){ref}; animation: {out}"
        )
    return 0
