"""Arguments and helpers shared by several sub-commands."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from evo_rl.config import EvoConfig, load_config


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """``--config FILE`` and any number of ``section.key=value`` overrides."""
    parser.add_argument("--config", "-c", metavar="FILE", help="YAML config file (defaults when omitted)")
    parser.add_argument(
        "overrides", nargs="*", metavar="section.key=value", help="config overrides, e.g. env.n_envs=8 algo.name=redq"
    )


def config_from_args(args: argparse.Namespace) -> EvoConfig:
    """The config of ``--config FILE`` and the overrides (:func:`~evo_rl.config.load_config`)."""
    return load_config(getattr(args, "config", None), getattr(args, "overrides", None) or [])


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=None)
    sys.stdout.write("\n")
    sys.stdout.flush()
