"""The car-source contract: what every source of car state gives the environments.

A *car source* steps ``n_envs`` cars and reports their state in arrays with one row per car. The
simulator's :class:`~evo_rl.sim.world.World` is one; a game source (TrackMania 2020 through the
OpenPlanet plugin or TMRL's plugin, a virtual game) is another. The Gymnasium environments, the
reward library, the episode rules, the replay and the trainers read a source only through
:class:`CarSource`, so none of them changes per source.

A source says what it can report in ``provides``, a subset of :data:`FIELDS`. A reward term lists
what it reads in ``needs`` and an observation or episode rule does the same; :func:`require` refuses,
at start-up, a consumer whose needs the source does not provide, naming both.

Units and axes are the games': positions ``(x, y, z)`` in metres with ``y`` up; the horizontal plane
is ``(x, z)``, which is the simulator's ``(x, y)`` plane. Horizontal vectors (``vel``) are
``[N, 2]`` in that plane; ``yaw`` is the heading in it, ``atan2(dir_z, dir_x)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from evo_rl.errors import ConfigError

# Everything a source may provide. `CarSource.provides` and the `needs` of reward terms use these names.
FIELDS: dict[str, str] = {
    "position": "position (x, y, z), m, y up: position3()",
    "heading": "heading in the horizontal plane, rad: yaw",
    "velocity": "horizontal velocity, m/s: vel [N, 2]",
    "speed": "speed, m/s: speed()",
    "gear": "engaged gear: gear",
    "rpm": "engine speed, revolutions per minute: rpm",
    "race_time": "race time, integer milliseconds as the games count it: race_time_ms",
    "checkpoints": "checkpoints passed this run (and passed forwards / backwards in the last step): checkpoints",
    "finish": "crossed the finish line this run: finished",
    "wall_contact": "touched a wall during the last step: wall_contact",
    "air": "all four wheels off the ground: airborne",
    "inputs": "inputs the game applied: gas 0..1, brake 0..1, steer -1..1",
    "track": "the car's place on a track model: quad, progress_s (m along the track), lateral (m, left positive)",
    "lidar": "LIDAR of the configured kind (lidar.kind): geometric in m, or TMRL's screen LIDAR in px: lidar()",
    "frames": "camera frames of the car's view: images()",
}


def check_fields(names: Iterable[str], what: str) -> frozenset[str]:
    """``names`` as a frozenset, refusing names outside :data:`FIELDS`."""
    out = frozenset(names)
    unknown = sorted(out - set(FIELDS))
    if unknown:
        raise ConfigError(f"{what} names unknown car-state fields {unknown}; known: {', '.join(FIELDS)}")
    return out


def require(source: str, provides: Iterable[str], needs: Iterable[str], consumer: str, fix: str = "") -> None:
    """Raise :class:`ConfigError` when ``consumer`` needs fields that the source named ``source`` lacks."""
    have = frozenset(provides)
    missing = sorted(check_fields(needs, consumer) - have)
    if missing:
        raise ConfigError(
            f"{consumer} needs {', '.join(missing)}, which the car source {source!r} does not provide "
            f"(it provides: {', '.join(sorted(have)) or 'nothing'}); {fix or 'remove it or choose another source'}"
        )


@dataclass(frozen=True)
class CarState:
    """One car's state as one game record reports it; fields a record lacks keep these defaults."""

    position: tuple[float, float, float] = (0.0, 0.0, 0.0)  # m, game axes
    heading: float = 0.0  # rad, atan2(dir_z, dir_x)
    velocity: tuple[float, float, float] = (0.0, 0.0, 0.0)  # m/s, game axes
    speed_kmh: float = 0.0  # forward speed, km/h
    gear: int = 0
    rpm: float = 0.0
    race_time_ms: int = 0
    checkpoints: int = 0
    checkpoints_total: int = 0
    finished: bool = False
    wall_contact: bool = False
    wheel_contact: tuple[bool, bool, bool, bool] = (True, True, True, True)  # FL, FR, RL, RR
    inputs: tuple[float, float, float] = (0.0, 0.0, 0.0)  # gas, brake, steer


@runtime_checkable
class CarSource(Protocol):
    """``n_envs`` cars: how the environments step them and what they read.

    Every array has one row per car and is read after :meth:`step` (or :meth:`reset`) returns. A
    field outside ``provides`` may hold a placeholder (zeros); nothing reads it, because
    :func:`require` refused its consumers at start-up.

    ``step`` applies ``actions [N, 3]`` = [gas, brake, steer], checked and clipped to [-1, 1] by
    :func:`evo_rl.sim.world.check_actions`. A simulator advances one control step at once. A
    real-time source (``realtime``) only sends the inputs; :meth:`observe` then waits for the first
    state newer than them, and the real-time environment (rtgym) decides when that happens.
    """

    name: str  # "sim", "tm2020", ...: named in error messages
    provides: frozenset[str]  # subset of FIELDS
    realtime: bool
    n_envs: int
    dt: float  # control step, s

    @property
    def track(self) -> Any:
        """The track model (:class:`evo_rl.sim.track.Track`), None when there is none."""

    vel: np.ndarray  # [N, 2] m/s, horizontal
    yaw: np.ndarray  # [N] rad
    gear: np.ndarray  # [N] int
    rpm: np.ndarray  # [N]
    checkpoints: np.ndarray  # [N] int, passed this run
    cp_forward: np.ndarray  # [N] int, gates passed forwards during the last step
    cp_backward: np.ndarray  # [N] int, gates passed backwards during the last step
    finished: np.ndarray  # [N] bool
    wall_contact: np.ndarray  # [N] bool
    airborne: np.ndarray  # [N] bool
    quad: np.ndarray  # [N] int, track model quad ("track")
    progress_s: np.ndarray  # [N] m along the track model ("track")
    lateral: np.ndarray  # [N] m from its centre line, left positive ("track")

    @property
    def race_time_ms(self) -> np.ndarray:
        """[N] int64, whole milliseconds of the run (frozen at the finish)."""

    def reset(
        self, mask: np.ndarray | None = None, lateral: np.ndarray | None = None, yaw: np.ndarray | None = None
    ) -> None:
        """Start new runs for the cars of ``mask [N]`` (all if None); ``lateral``/``yaw`` perturb the start
        pose where the source can place cars (the simulator), and are ignored by a game."""

    def step(self, actions: np.ndarray) -> None: ...

    def observe(self) -> None:
        """Bring the arrays up to date after :meth:`step` (a simulator: nothing to do)."""

    def speed(self) -> np.ndarray:
        """``[N]`` m/s."""

    def position3(self) -> np.ndarray:
        """``[N, 3]`` game (x, y, z), m."""

    def lidar(self, out: np.ndarray | None = None, rows: np.ndarray | None = None) -> np.ndarray:
        """``[N, beams]`` float32 m ("lidar")."""

    def images(self, out: np.ndarray | None = None, rows: np.ndarray | None = None) -> np.ndarray:
        """``[N, H, W]`` uint8 ("frames")."""

    def close(self) -> None: ...
