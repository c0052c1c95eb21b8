"""``evo-rl drive``: the scripted expert drives a lap; print its lap time beside the reference, write a GIF."""

from __future__ import annotations

import argparse

from evo_rl.cli.common import add_config_args, config_from_args, print_json
from evo_rl.errors import EvoError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "drive",
        help="drive a lap with the scripted expert: lap time vs the reference, optional GIF",
        description="The scripted expert (pure pursuit on the racing line, pedals towards the reference speed) "
        "drives one lap with the configured car and controls. Prints its lap time beside the reference lap time "
        "and, with --out, writes an animation of the lap.",
    )
    p.add_argument("--track", "-t", default=None, help="built-in track name or .track file (default: env.track)")
    p.add_argument("--out", "-o", default=None, help="write an animated top view of the lap, .gif")
    p.add_argument("--fps", type=float, default=10.0, help="animation frames per second of lap time (default: 10)")
    p.add_argument(
        "--size", type=int, default=640, help="size of the track view in pixels, longest side (default: 640)"
    )
    p.add_argument("--max-seconds", type=float, default=300.0, help="give up after this much race time (default: 300)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    add_config_args(p)
    p.set_defaults(func=_drive)


def _drive(args: argparse.Namespace) -> int:
    from evo_rl.envs.core import resolve_track
    from evo_rl.sim.expert import run_expert_lap

    if args.out is not None and not args.out.lower().endswith(".gif"):
        raise EvoError(f"--out {args.out}: the animation is a GIF; give a path ending in .gif")
    if not args.fps > 0:
        raise EvoError(f"--fps {args.fps}: give a positive number of frames per second")
    if args.size < 64:
        raise EvoError(f"--size {args.size}: use at least 64 pixels")
    if not args.max_seconds > 0:
        raise EvoError(f"--max-seconds {args.max_seconds}: give a positive number of seconds")
    cfg = config_from_args(args)
    if args.track is not None:
        cfg.env.track = args.track
    track = resolve_track(None, cfg)
    lap = run_expert_lap(track, cfg, max_seconds=args.max_seconds)
    lap_time = round(lap.lap_time, 3) if lap.lap_time is not None else None
    result = {
        "track": track.name,
        "finished": lap.finished,
        "lap_time": lap_time,
        "reference_lap_time": round(lap.reference_lap_time, 3),
    }
    if args.out is not None:
        from evo_rl.sim.animate import animate_lap

        animate_lap(
            track, lap.xy, lap.yaw, lap.speeds, args.out, dt=cfg.sim.dt, fps=args.fps, gears=lap.gears,
            times=lap.times, title=f"{track.name}: expert", lap_time=lap.lap_time,
            reference_lap_time=lap.reference_lap_time, size=args.size,
        )  # fmt: skip
        result["out"] = args.out
    if args.json:
        print_json(result)
        return 0
    if lap.lap_time is not None:
        gap = 100.0 * (lap.lap_time / lap.reference_lap_time - 1.0)
        print(f"{track.name}: expert lap {lap.lap_time:.2f} s, reference {lap.reference_lap_time:.2f} s ({gap:+.1f}%)")
    else:
        print(
            f"{track.name}: the expert did not finish within {args.max_seconds:g} s "
            f"(reference {lap.reference_lap_time:.2f} s)"
        )
    if lap.wall_contacts:
        print(f"wall contacts: {lap.wall_contacts} control steps")
    if args.out is not None:
        print(f"animation: {args.out}")
    return 0
