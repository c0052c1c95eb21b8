"""``evo-rl config show [FILE] [overrides]``: print the resolved configuration.

It refuses what ``evo-rl train`` refuses at start-up (:func:`evo_rl.train.preflight.check_startup`):
a config that ``config show`` prints is one that ``train`` starts with.
"""

from __future__ import annotations

import argparse

from evo_rl.config import config_to_yaml, field_docs, load_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="show the resolved configuration")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    show = csub.add_parser(
        "show",
        help="print the resolved config as YAML",
        description="Print the resolved config as YAML, after the start-up checks of `evo-rl train` "
        "(track, reward terms, imports, device, memory size, runs_dir).",
    )
    show.add_argument("file", nargs="?", help="YAML config file (defaults when omitted)")
    show.add_argument("overrides", nargs="*", metavar="section.key=value", help="overrides")
    show.add_argument("--fields", action="store_true", help="list every field with its default and description")
    show.set_defaults(func=_show)


def _show(args: argparse.Namespace) -> int:
    file = args.file
    overrides = list(args.overrides)
    if file is not None and "=" in file:  # `evo-rl config show env.n_envs=4`
        overrides.insert(0, file)
        file = None
    if args.fields:
        for path, default, desc in field_docs():
            print(f"{path:34s} {default:>14s}  {desc}")
        return 0
    from evo_rl.train.preflight import check_startup

    cfg = load_config(file, overrides)
    check_startup(cfg)
    print(config_to_yaml(cfg), end="")
    return 0
