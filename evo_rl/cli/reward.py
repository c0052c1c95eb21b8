"""``evo-rl reward terms|record|import-tmrl|show``: reward terms and reference trajectories."""

from __future__ import annotations

import argparse
from pathlib import Path

from evo_rl.cli.common import add_config_args, config_from_args, print_json
from evo_rl.errors import EvoError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reward", help="reward terms and reference trajectories")
    rsub = p.add_subparsers(dest="reward_command", metavar="ACTION", required=True)

    terms = rsub.add_parser("terms", help="list the built-in reward terms and their parameters")
    terms.set_defaults(func=_terms)

    rec = rsub.add_parser("record", help="record a reference trajectory: one lap of the expert driver")
    rec.add_argument("--track", required=True, help="built-in track name or .track file")
    rec.add_argument("--out", required=True, help="output file, .npy or .csv")
    add_config_args(rec)
    rec.set_defaults(func=_record)

    imp = rsub.add_parser("import-tmrl", help="convert TMRL's reward.pkl to a .npy trajectory (nothing is executed)")
    imp.add_argument("pickle", help="TMRL reward.pkl")
    imp.add_argument("--out", required=True, help="output file, .npy or .csv")
    imp.set_defaults(func=_import_tmrl)

    show = rsub.add_parser("show", help="draw a reference trajectory on a track as a PNG")
    show.add_argument("reference", help="trajectory file, .npy or .csv")
    show.add_argument("--track", required=True, help="built-in track name or .track file")
    show.add_argument("--out", required=True, help="output image, .png")
    show.add_argument("--size", type=int, default=900, help="image size in pixels (longest side)")
    show.set_defaults(func=_show)


def _terms(args: argparse.Namespace) -> int:
    from evo_rl.rewards import TERMS

    for name in sorted(TERMS):
        cls = TERMS[name]
        doc = " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())
        needs = f"  (needs: {', '.join(sorted(cls.needs))})" if cls.needs else ""
        print(f"{name}{needs}\n    {doc}")
        for pname, field in cls.Params.model_fields.items():
            default = field.get_default(call_default_factory=True)
            print(f"    {pname:18s} {default!r:>8}  {field.description}")
    print("\ncustom terms: term: module:function (called as f(ctx, **params)) or module:Class (see docs/rewards.md)")
    return 0


def _record(args: argparse.Namespace) -> int:
    import numpy as np

    from evo_rl.rewards import save_reference
    from evo_rl.sim.catalog import get_track
    from evo_rl.sim.expert import run_expert_lap

    cfg = config_from_args(args)
    track = get_track(args.track)
    lap = run_expert_lap(track, cfg)
    if not lap.finished:
        raise EvoError(f"the expert driver did not finish a lap of {args.track!r}; no reference was written")
    pos = np.asarray(lap.positions3, dtype=np.float64)  # [T, 3]
    save_reference(args.out, pos)
    length = float(np.linalg.norm(np.diff(pos, axis=0), axis=1).sum())
    print_json({"track": track.name, "out": args.out, "points": len(pos), "length_m": length, "lap_time": lap.lap_time})
    return 0


def _import_tmrl(args: argparse.Namespace) -> int:
    import numpy as np

    from evo_rl.rewards import read_tmrl_pickle, save_reference
    from evo_rl.rewards.reference_trajectory import as_points3

    src = Path(args.pickle)
    if not src.is_file():
        raise EvoError(f"{src} does not exist")
    pts = as_points3(read_tmrl_pickle(src.read_bytes(), what=str(src)), what=str(src))
    save_reference(args.out, pts)
    length = float(np.linalg.norm(np.diff(pts, axis=0), axis=1).sum())
    print_json({"in": str(src), "out": args.out, "points": len(pts), "length_m": length})
    return 0


def _show(args: argparse.Namespace) -> int:
    from evo_rl.rewards import load_reference
    from evo_rl.sim.catalog import get_track
    from evo_rl.sim.render import START, TopView

    if Path(args.out).suffix.lower() != ".png":
        raise EvoError(f"--out {args.out}: write a .png file")
    track = get_track(args.track)
    pts = load_reference(args.reference, track.height)
    view = TopView(track, size=args.size)
    img = view.draw_base()
    plane = pts[:, [0, 2]]  # game (x, z) -> plane (x, y)
    view.draw_trace(img, plane, width=max(2, int(round(0.8 * view.scale))))
    view.draw_car(img, plane[0], 0.0, color=START, length=3.0, width=3.0)
    view.draw_text(img, [f"{Path(args.reference).name} on {track.name}: {len(pts)} points"])
    img.save(args.out)
    print_json({"out": args.out, "points": len(pts), "track": track.name})
    return 0
