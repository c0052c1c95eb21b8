"""``evo-rl tracks list|show|generate``: built-in tracks, top-view pictures, random tracks."""

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

    lst = tsub.add_parser("list", help="built-in tracks: length, checkpoints, reference lap time")
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


def _list(args: argparse.Namespace) -> int:
    from evo_rl.sim.catalog import BUILTIN, get_track, list_tracks
    from evo_rl.sim.reference_lap import compute_reference_lap

    car = config_from_args(args).car
    rows = []
    for name in list_tracks():
        track = get_track(name)
        ref = compute_reference_lap(track, car)
        rows.append(
            {
                "name": name,
                "length_m": round(track.length, 1),
                "checkpoints": len(track.checkpoints),
                "lap_time_s": round(ref.lap_time, 2),
                "description": BUILTIN[name].description,
            }
        )
    if args.json:
        print_json(rows)
        return 0
    print(f"{'name':15s} {'length m':>9s} {'cps':>4s} {'lap s':>6s}  description")
    for r in rows:
        print(f"{r['name']:15s} {r['length_m']:9.0f} {r['checkpoints']:4d} {r['lap_time_s']:6.1f}  {r['description']}")
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
