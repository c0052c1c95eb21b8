"""``evo-rl tracks list|show|generate|record``: built-in tracks, top-view pictures, random tracks, record laps."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from evo_rl.cli.common import add_config_args, config_from_args, print_json
from evo_rl.errors import EvoError

if TYPE_CHECKING:
    from PIL.Image import Image

    from evo_rl.sim.render import TopView


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tracks", help="list, draw and generate tracks")
    tsub = p.add_subparsers(dest="tracks_command", metavar="ACTION", required=True)

    lst = tsub.add_parser("list", help="built-in tracks: length, checkpoints, reference and record lap times")
    lst.add_argument("--json", action="store_true", help="print one JSON list instead of a table")
    add_config_args(lst)
    lst.set_defaults(func=_list)

    show = tsub.add_parser("show", help="draw a track from above with its racing line, as a PNG")
    show.add_argument("track", metavar="NAME_OR_FILE", help="built-in track name or .track file")
    show.add_argument("--out", required=True, help="output image, .png")
    show.add_argument("--size", type=int, default=900, help="image size in pixels (longest side)")
    show.add_argument("--no-line", action="store_true", help="leave out the racing line")
    add_config_args(show)
    show.set_defaults(func=_show)

    gen = tsub.add_parser("generate", help="generate a random block track from a seed and save it")
    gen.add_argument("--seed", type=int, required=True, help="random seed; the same seed gives the same track")
    gen.add_argument("--blocks", type=int, default=16, help="blocks between the start and finish blocks")
    gen.add_argument("--min-radius", type=float, default=16.0, help="tightest centre-line radius allowed, m")
    gen.add_argument("--checkpoints", type=int, default=4, help="checkpoint gates")
    gen.add_argument("--width", type=float, default=20.0, help="road width, m")
    gen.add_argument("--name", help="track name (default: the output file's stem)")
    gen.add_argument("--out", required=True, help="output track file, .track")
    gen.set_defaults(func=_generate)

    rec = tsub.add_parser(
        "record",
        help="drive a track's record lap with the planner (slow), optionally store it",
        description="The model-predictive planner (evo-rl drive --planner mpc) drives the track once per seed; "
        "the fastest lap is the record. --write stores it: in EVO RL's own records (evo_rl/data/records.json) "
        "for a built-in track with the default config, else in the records cache ($EVO_RL_RECORDS, default "
        "~/.cache/evo_rl/records.json). A slower lap never replaces a faster record.",
    )
    rec.add_argument("track", metavar="NAME_OR_FILE", help="built-in track name or .track file")
    rec.add_argument("--seeds", type=int, default=1, help="laps to drive, seeds --seed, --seed + 1, ... (default: 1)")
    rec.add_argument("--write", action="store_true", help="store the record (see above)")
    rec.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    from evo_rl.cli.drive import add_planner_args

    add_planner_args(rec, "planner")
    add_config_args(rec)
    rec.set_defaults(func=_record)


def _list(args: argparse.Namespace) -> int:
    from evo_rl.sim.catalog import BUILTIN, get_track, list_tracks
    from evo_rl.sim.records import record_lap_time
    from evo_rl.sim.reference_lap import compute_reference_lap

    cfg = config_from_args(args)
    rows = []
    for name in list_tracks():
        track = get_track(name)
        ref = compute_reference_lap(track, cfg.car)
        record = record_lap_time(track, cfg)
        rows.append(
            {
                "name": name,
                "length_m": round(track.length, 1),
                "checkpoints": len(track.checkpoints),
                "lap_time_s": round(ref.lap_time, 2),
                "record_lap_s": round(record, 2) if record is not None else None,
                "description": BUILTIN[name].description,
            }
        )
    if args.json:
        print_json(rows)
        return 0
    print(f"{'name':15s} {'length m':>9s} {'cps':>4s} {'lap s':>6s} {'record s':>8s}  description")
    for r in rows:
        shown = f"{r['record_lap_s']:8.2f}" if r["record_lap_s"] is not None else f"{'-':>8s}"
        print(
            f"{r['name']:15s} {r['length_m']:9.0f} {r['checkpoints']:4d} {r['lap_time_s']:6.2f} {shown}  "
            f"{r['description']}"
        )
    print("lap s: the reference lap (racing line and speed profile); record s: the planner's record lap")
    return 0


def _show(args: argparse.Namespace) -> int:
    from evo_rl.sim.catalog import get_track
    from evo_rl.sim.render import TopView

    if Path(args.out).suffix.lower() != ".png":
        raise EvoError(f"--out {args.out}: write a .png file")
    if args.size < 64:
        raise EvoError(f"--size {args.size}: use at least 64 pixels")
    track = get_track(args.track)
    view = TopView(track, size=args.size)
    text = [f"{track.name}: {track.length:.0f} m, {len(track.checkpoints)} checkpoints"]
    summary = {"out": args.out, "track": track.name, "length_m": round(track.length, 1)}
    if args.no_line:
        img = view.draw_base()
    else:
        from evo_rl.sim.reference_lap import compute_reference_lap

        ref = compute_reference_lap(track, config_from_args(args).car)
        img = view.draw_base(racing_line=ref.line, racing_speed=ref.speed)
        text.append(f"reference lap {ref.lap_time:.2f} s, top speed {ref.speed.max() * 3.6:.0f} km/h")
        summary["lap_time_s"] = round(ref.lap_time, 2)
    page = _with_header(view, img, text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    page.save(args.out)
    print_json(summary)
    return 0


def _with_header(view: TopView, img: Image, lines: list[str]) -> Image:
    """``img`` below a band holding ``lines`` of text, so the text never covers the track."""
    from PIL import Image

    from evo_rl.sim.render import GRASS

    band = 12 + 22 * len(lines)
    page = Image.new("RGB", (img.width, img.height + band), GRASS)
    page.paste(img, (0, band))
    view.draw_text(page, lines, xy=(view.margin, 6), size=16)
    return page


def _generate(args: argparse.Namespace) -> int:
    from evo_rl.sim.blocks import blocks_code
    from evo_rl.sim.generate import generate

    out = Path(args.out)
    if out.suffix != ".track":
        raise EvoError(f"--out {args.out}: write a .track file")
    track, blocks = generate(
        args.seed,
        n_blocks=args.blocks,
        min_radius=args.min_radius,
        n_checkpoints=args.checkpoints,
        width=args.width,
        name=args.name or out.stem,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    track.save(out)
    print_json(
        {
            "out": str(out),
            "name": track.name,
            "seed": args.seed,
            "blocks": blocks_code(blocks),
            "length_m": round(track.length, 1),
            "quads": track.n_quads,
            "checkpoints": len(track.checkpoints),
        }
    )
    return 0


def _record(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from evo_rl.cli.drive import planner_settings
    from evo_rl.config import EvoConfig
    from evo_rl.sim import records
    from evo_rl.sim.catalog import BUILTIN, get_track
    from evo_rl.sim.planner import plan_lap
    from evo_rl.sim.reference_lap import compute_reference_lap

    if args.seeds < 1:
        raise EvoError(f"--seeds {args.seeds}: drive at least one lap")
    cfg = config_from_args(args)
    settings = planner_settings(args)
    track = get_track(args.track)
    ref = compute_reference_lap(track, cfg.car)
    laps = []
    for k in range(args.seeds):
        planned = plan_lap(track, cfg, replace(settings, seed=settings.seed + k), reference=ref)
        laps.append(planned)
        if not args.json:
            lap_time = f"{planned.lap_time:.2f} s" if planned.lap_time is not None else "no finish"
            print(
                f"seed {settings.seed + k}: {lap_time} (reference {ref.lap_time:.2f} s), "
                f"{planned.lap.wall_contacts} wall-contact steps, planned in {planned.plan_seconds:.1f} s"
            )
    finished = [p for p in laps if p.lap_time is not None]
    if not finished:
        raise EvoError(f"track {track.name!r}: the planner finished none of its {args.seeds} laps; no record")
    best = min(finished, key=lambda p: p.lap.lap_time or 0.0)
    record = records.new_record(track, cfg, best)
    previous = records.find_record(track, cfg)
    out: dict = {
        "track": track.name,
        "record_lap_time": record.lap_time,
        "reference_lap_time": record.reference_lap_time,
        "ratio": round(record.lap_time / record.reference_lap_time, 4),
        "lap_times": [p.lap_time for p in laps],
        "seed": best.settings.seed,
        "plan_seconds": [round(p.plan_seconds, 1) for p in laps],
        "previous_record": previous.lap_time if previous is not None else None,
    }
    if args.write:
        default = records.config_key(cfg) == records.config_key(EvoConfig())
        path = records.PACKAGE_RECORDS if (args.track in BUILTIN and default) else records.cache_path()
        out["written"] = records.store_record(record, path)
        out["path"] = str(path)
    if args.json:
        print_json(out)
        return 0
    gap = 100.0 * (record.lap_time / record.reference_lap_time - 1.0)
    print(
        f"{track.name}: record lap {record.lap_time:.2f} s, reference {record.reference_lap_time:.2f} s ({gap:+.1f}%)"
    )
    if previous is not None:
        print(f"previous record {previous.lap_time:.2f} s")
    if args.write:
        print(f"{'written to' if out['written'] else 'not written (a record as fast is stored) in'} {out['path']}")
    return 0
