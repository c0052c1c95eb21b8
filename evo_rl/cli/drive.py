"""``evo-rl drive``: the scripted expert or the planner drives a lap; print its lap time beside the reference
and the record lap, write a GIF."""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from typing import TYPE_CHECKING

from evo_rl.cli.common import add_config_args, config_from_args, print_json
from evo_rl.errors import EvoError

if TYPE_CHECKING:
    from evo_rl.sim.planner import PlannerSettings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "drive",
        help="drive a lap with the scripted expert or the planner: lap time vs the reference, optional GIF",
        description="The scripted expert (pure pursuit on the racing line, pedals towards the reference speed) "
        "or, with --planner mpc, the sampling-based planner (the cross-entropy method with the simulator as its "
        "model) drives one lap with the configured car and controls. Prints its lap time beside the reference "
        "lap time and the record lap and, with --out, writes an animation of the lap.",
    )
    p.add_argument(
        "--planner",
        choices=("expert", "mpc"),
        default="expert",
        help="who drives: the scripted expert (default) or the model-predictive planner (slow: about a second "
        "of planning per second of lap with the defaults)",
    )
    p.add_argument("--track", "-t", default=None, help="built-in track name or .track file (default: env.track)")
    p.add_argument("--out", "-o", default=None, help="write an animated top view of the lap, .gif")
    p.add_argument("--fps", type=float, default=10.0, help="animation frames per second of lap time (default: 10)")
    p.add_argument(
        "--size", type=int, default=640, help="size of the track view in pixels, longest side (default: 640)"
    )
    p.add_argument("--max-seconds", type=float, default=300.0, help="give up after this much race time (default: 300)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    add_planner_args(p)
    add_config_args(p)
    p.set_defaults(func=_drive)


def add_planner_args(p: argparse.ArgumentParser, title: str = "planner (--planner mpc)") -> None:
    """The planner's knobs (defaults: :class:`~evo_rl.sim.planner.PlannerSettings`)."""
    from evo_rl.sim.planner import PlannerSettings

    d = PlannerSettings()
    g = p.add_argument_group(title)
    g.add_argument(
        "--samples", type=int, default=d.samples, help=f"candidate plans per iteration (default: {d.samples})"
    )
    g.add_argument(
        "--horizon", type=int, default=d.horizon, help=f"control steps each plan looks ahead (default: {d.horizon})"
    )
    g.add_argument(
        "--iterations", type=int, default=d.iterations, help=f"CEM refits per control step (default: {d.iterations})"
    )
    g.add_argument("--elites", type=int, default=d.elites, help=f"plans each refit keeps (default: {d.elites})")
    g.add_argument(
        "--wall-penalty",
        type=float,
        default=d.wall_penalty,
        help=f"seconds of cost per control step touching a wall (default: {d.wall_penalty:g})",
    )
    g.add_argument("--seed", type=int, default=d.seed, help=f"seed of the sampling noise (default: {d.seed})")


def planner_settings(args: argparse.Namespace) -> PlannerSettings:
    """The :class:`PlannerSettings` of the planner arguments (checked)."""
    from evo_rl.sim.planner import PlannerSettings

    settings = PlannerSettings(
        samples=args.samples,
        horizon=args.horizon,
        iterations=args.iterations,
        elites=args.elites,
        wall_penalty=args.wall_penalty,
        seed=args.seed,
    )
    settings.check()
    return settings


def _drive(args: argparse.Namespace) -> int:
    from evo_rl.envs.core import resolve_track
    from evo_rl.sim.expert import run_expert_lap
    from evo_rl.sim.records import record_lap_time

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
    settings = planner_settings(args) if args.planner == "mpc" else None
    track = resolve_track(None, cfg)
    start = time.perf_counter()
    if settings is None:
        lap = run_expert_lap(track, cfg, max_seconds=args.max_seconds)
    else:
        from evo_rl.sim.planner import plan_lap

        lap = plan_lap(track, cfg, settings, max_seconds=args.max_seconds).lap
    seconds = time.perf_counter() - start
    record = record_lap_time(track, cfg)
    who = "expert" if settings is None else "planner"
    lap_time = round(lap.lap_time, 3) if lap.lap_time is not None else None
    result = {
        "track": track.name,
        "planner": args.planner,
        "finished": lap.finished,
        "lap_time": lap_time,
        "reference_lap_time": round(lap.reference_lap_time, 3),
        "record_lap_time": record,
        "wall_contacts": lap.wall_contacts,
        "wall_seconds": round(seconds, 2),
    }
    if settings is not None:
        result["settings"] = asdict(settings)
    if args.out is not None:
        from evo_rl.sim.animate import animate_lap

        animate_lap(
            track, lap.xy, lap.yaw, lap.speeds, args.out, dt=cfg.sim.dt, fps=args.fps, gears=lap.gears,
            times=lap.times, title=f"{track.name}: {who}", lap_time=lap.lap_time,
            reference_lap_time=lap.reference_lap_time, size=args.size,
        )  # fmt: skip
        result["out"] = args.out
    if args.json:
        print_json(result)
        return 0
    if lap.lap_time is not None:
        gap = 100.0 * (lap.lap_time / lap.reference_lap_time - 1.0)
        line = f"{track.name}: {who} lap {lap.lap_time:.2f} s, reference {lap.reference_lap_time:.2f} s ({gap:+.1f}%)"
        if record is not None:
            line += f", record {record:.2f} s ({100.0 * (lap.lap_time / record - 1.0):+.1f}%)"
        print(line)
    else:
        print(
            f"{track.name}: the {who} did not finish within {args.max_seconds:g} s "
            f"(reference {lap.reference_lap_time:.2f} s)"
        )
    if record is None:
        print("no record lap is known for this track and config (evo-rl tracks record NAME computes one)")
    if lap.wall_contacts:
        print(f"wall contacts: {lap.wall_contacts} control steps")
    steps = max(len(lap.times) - 1, 1)
    print(f"driven in {seconds:.1f} s ({1000.0 * seconds / steps:.1f} ms per control step)")
    if args.out is not None:
        print(f"animation: {args.out}")
    return 0
