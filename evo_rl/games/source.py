"""The car-source contract, as proposed for issue 8 §1: what a source of car state reports, and which of it.

A *car source* is whatever produces car state for the environments: the simulator's ``World``,
a game client (TrackMania 2020 through the OpenPlanet plugin or TMRL's plugin), a virtual game.
Every source reports, per car, one :class:`CarState`; the fields a source cannot fill keep
their defaults and are missing from its ``provides`` set, so a consumer (a reward term, an
episode rule, an observation) that needs one is refused at start-up by :func:`require_fields`,
naming the consumer and the source.

Units and axes are the games': positions ``(x, y, z)`` in metres with ``y`` up; the horizontal
plane is ``(x, z)``, which is the simulator's ``(x, y)`` plane (``World.position3()``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from evo_rl.errors import EvoError

# Every field a source may provide; ``CarSource.provides`` is a subset of these names.
SOURCE_FIELDS: dict[str, str] = {
    "position": "game position (x, y, z), m, y up",
    "heading": "heading in the horizontal plane, rad: atan2(dir_z, dir_x), the simulator's yaw",
    "velocity": "velocity (x, y, z), m/s, game axes",
    "speed_kmh": "forward speed, km/h (negative when reversing)",
    "gear": "engaged gear",
    "rpm": "engine speed, revolutions per minute",
    "race_time_ms": "race time, integer milliseconds, as the games count it",
    "checkpoints": "checkpoints passed this run",
    "checkpoints_total": "checkpoints of the map (the finish not counted)",
    "finished": "crossed the finish line this run",
    "wall_contact": "touched a wall since the previous state",
    "wheel_contact": "ground contact of each wheel (front left, front right, rear left, rear right)",
    "inputs": "inputs the game applied: gas 0..1, brake 0..1, steer -1..1",
    "frames": "camera frames of the car's view (asked for separately)",
}


@dataclass(frozen=True)
class CarState:
    """One car's state as a source reports it; fields outside the source's ``provides`` keep these defaults."""

    position: tuple[float, float, float] = (0.0, 0.0, 0.0)
    heading: float = 0.0
    velocity: tuple[float, float, float] = (0.0, 0.0, 0.0)
    speed_kmh: float = 0.0
    gear: int = 0
    rpm: float = 0.0
    race_time_ms: int = 0
    checkpoints: int = 0
    checkpoints_total: int = 0
    finished: bool = False
    wall_contact: bool = False
    wheel_contact: tuple[bool, bool, bool, bool] = (True, True, True, True)
    inputs: tuple[float, float, float] = (0.0, 0.0, 0.0)


@runtime_checkable
class CarSource(Protocol):
    """A source of car state for ``n_cars`` cars.

    ``step`` applies one action per car (``[n_cars, 3]`` float32 ``[gas, brake, steer]`` in ``[-1, 1]``);
    a real-time source returns at once and the next :meth:`states` is the first state received after the
    action was sent. ``frames`` returns ``[n_cars, H, W]`` uint8 camera frames where ``"frames"`` is provided.
    """

    name: str
    provides: frozenset[str]
    n_cars: int
    realtime: bool

    def reset(self, mask: np.ndarray | None = None) -> None: ...

    def step(self, actions: np.ndarray) -> None: ...

    def states(self) -> list[CarState]: ...


def require_fields(source: str, provides: Iterable[str], needed: Iterable[str], consumer: str) -> None:
    """Raise :class:`EvoError` when ``consumer`` needs fields that ``source`` does not provide."""
    have = set(provides)
    unknown = sorted(set(needed) - set(SOURCE_FIELDS))
    if unknown:
        raise EvoError(f"{consumer} asks for unknown car-state fields {unknown}; known: {', '.join(SOURCE_FIELDS)}")
    missing = [f for f in needed if f not in have]
    if missing:
        raise EvoError(
            f"{consumer} needs {', '.join(missing)}, which the car source {source!r} does not provide "
            f"(it provides: {', '.join(sorted(have)) or 'nothing'}); remove it or choose another source"
        )
