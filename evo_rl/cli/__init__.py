"""The ``evo-rl`` command. Each sub-command lives in its own module with a
``register(subparsers)`` function that adds its parser and sets ``func``."""

from __future__ import annotations

import argparse
import importlib
import sys

from evo_rl import __version__
from evo_rl.errors import EvoError

# Sub-command modules, in the order ``evo-rl --help`` lists them.
COMMANDS = ["train", "eval", "demo", "drive", "tracks", "reward", "plot", "config", "bench", "control", "dist", "sweep"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evo-rl",
        description="EVO RL: real-time reinforcement learning for TrackMania, with a built-in simulator.",
    )
    parser.add_argument("--version", action="version", version=f"evo-rl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"evo_rl.cli.{name}").register(sub)
    importlib.import_module("evo_rl.games.cli").register(sub)  # `evo-rl game ...` and `evo-rl virtual-game ...`
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # `evo-rl eval RUN -e 5 env.max_steps=4800`: overrides after options
        if isinstance(getattr(args, "overrides", None), list) and all(
            "=" in e and not e.startswith("-") for e in extra
        ):
            args.overrides += extra
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except EvoError as e:
        print(f"evo-rl: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("evo-rl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
