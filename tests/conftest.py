"""Builders shared by the test files: small tracks and tiny training configs.

Plain functions, imported as ``from conftest import strip, tiny_config`` (pytest puts
tests/ on sys.path), plus the ``straight`` fixture (a 60 m straight built by
``Track.from_centreline``).
"""

from __future__ import annotations

import argparse
import math
import socket

import numpy as np
import pytest

from evo_rl.config import EvoConfig, load_config
from evo_rl.sim.track import Track

# --------------------------------------------------------------------------- tracks


def strip(
    center: np.ndarray,
    width: float,
    start: int = 1,
    finish: int | None = None,
    checkpoints=(),
    name: str = "t",
    height: float = 9.0,
) -> Track:
    """A Track whose cross-sections are perpendicular to the centre line's tangent (np.gradient).

    The walls lie ``width / 2`` either side along the left normal; ``finish`` defaults to
    the last quad but one.
    """
    center = np.asarray(center, np.float64)
    tangent = np.gradient(center, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)  # left of the driving direction
    finish = len(center) - 2 if finish is None else finish
    left, right = center + 0.5 * width * normal, center - 0.5 * width * normal
    return Track(name, left, right, width, start, finish, checkpoints, height)


def straight_track(length: float = 3000.0, width: float = 12.0, step: float = 50.0, checkpoints=()) -> Track:
    x = np.linspace(0.0, length, int(round(length / step)) + 1)
    return strip(np.stack([x, np.zeros_like(x)], axis=1), width, checkpoints=checkpoints, name="straight")


def arc_points(start: np.ndarray, heading: float, radius: float, angle: float, n: int) -> np.ndarray:
    """``n`` points after ``start`` on an arc turning by ``angle`` (left positive)."""
    side = math.copysign(1.0, angle)
    centre = start + side * radius * np.array([-math.sin(heading), math.cos(heading)])
    phi = heading - side * math.pi / 2 + np.linspace(0.0, angle, n + 1)[1:]
    return centre + radius * np.stack([np.cos(phi), np.sin(phi)], axis=1)


def corner_track(radius: float = 16.0, width: float = 12.0, lead: float = 120.0, n_arc: int = 12) -> Track:
    """A straight, a 90-degree left arc, a straight."""
    a = np.stack([np.linspace(0.0, lead, 9), np.zeros(9)], axis=1)
    arc = arc_points(a[-1], 0.0, radius, math.pi / 2, n_arc)
    b = arc[-1] + np.outer(np.linspace(0.0, 200.0, 5)[1:], [0.0, 1.0])
    return strip(np.concatenate([a, arc, b]), width, checkpoints=[8 + n_arc // 2], name="corner")


def s_track(width: float = 12.0) -> Track:
    """A straight, a left arc, a right arc, a straight: the fuzzing ground."""
    a = np.stack([np.linspace(0.0, 60.0, 4), np.zeros(4)], axis=1)
    left = arc_points(a[-1], 0.0, 20.0, 2.0, 14)
    right = arc_points(left[-1], 2.0, 30.0, -2.5, 16)
    h = 2.0 - 2.5
    b = right[-1] + np.outer(np.linspace(0.0, 90.0, 4)[1:], [math.cos(h), math.sin(h)])
    return strip(np.concatenate([a, left, right, b]), width, checkpoints=[10, 20], name="s")


def straight_60() -> Track:
    """A 60 m straight, 12 m wide, one checkpoint, built from its centre line."""
    pts = np.stack([np.linspace(0.0, 60.0, 61), np.zeros(61)], axis=1)  # [61, 2]
    return Track.from_centreline(pts, width=12.0, name="straight-60", n_checkpoints=1, smoothing=0.0)


@pytest.fixture(scope="module")
def straight() -> Track:
    return straight_60()


def straight_then_curve(lead: float = 60.0, radius: float = 25.0, width: float = 12.0, tail: float = 20.0) -> Track:
    """``lead`` m straight along +x, a 90-degree left curve of ``radius`` m, then ``tail`` m straight along +y."""
    a = np.stack([np.linspace(0.0, lead, int(lead) + 1), np.zeros(int(lead) + 1)], axis=1)
    n_arc = max(8, int(radius * math.pi / 2))  # about one point a metre
    arc = arc_points(a[-1], 0.0, radius, math.pi / 2, n_arc)
    b = arc[-1] + np.outer(np.linspace(0.0, tail, int(tail) + 1)[1:], [0.0, 1.0])
    pts = np.concatenate([a, arc, b])
    return Track.from_centreline(pts, width=width, name="straight-curve", n_checkpoints=2, smoothing=0.0)


# --------------------------------------------------------------------------- training configs

# small and fast: 4 cars, short episodes, tiny networks, one thread each for torch and numba
TINY_TRAIN = [
    "env.n_envs=4",
    "env.max_steps=40",
    "memory.capacity=4000",
    "memory.batch_size=32",
    "train.start_steps=40",
    "train.eval_episodes=2",
    "train.log_every_seconds=0.2",
    "train.dashboard=none",
    "train.torch_threads=1",
    "sim.threads=1",
    "algo.sac.hidden=[32, 32]",
]


def tiny_config(*extra: str) -> EvoConfig:
    """The config of ``TINY_TRAIN`` with ``extra`` dotted overrides on top (later ones win)."""
    return load_config(None, [*TINY_TRAIN, *extra])


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def games_cli(argv: list[str]) -> int:
    """Run ``evo-rl game ...`` / ``evo-rl virtual-game ...`` in this process, errors raised (not printed)."""
    from evo_rl.games.cli import register

    parser = argparse.ArgumentParser(prog="evo-rl")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)
