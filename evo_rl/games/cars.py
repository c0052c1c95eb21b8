"""The car-state arrays of a game source, filled from the games' reports (:class:`~evo_rl.envs.source.CarState`).

:class:`GameCars` holds what :class:`~evo_rl.envs.source.CarSource` reads, one row per car, and
turns one car's report into those rows: checkpoints passed during the step, airborne from the
wheels, the heading from the motion where the game sends none, and, with a track model of the map,
the car's place on the track. The TrackMania 2020 and TMNF sources build on it.
"""

from __future__ import annotations

import math

import numpy as np

from evo_rl.envs.source import CarState
from evo_rl.games.track_model import TrackModel

MOVED = 0.05  # m a car must move between two reports for the heading of its motion to count


class GameCars:
    """``n`` cars' arrays; ``model`` places them on the map's track model (None: no track model)."""

    def __init__(self, n: int, model: TrackModel | None) -> None:
        self.n_envs = n
        self._model = model
        self.pos3 = np.zeros((n, 3))  # [N, 3] m, game axes
        self.vel = np.zeros((n, 2))  # [N, 2] m/s, horizontal (x, z)
        self.yaw = np.zeros(n)  # [N] rad
        self.forward_speed = np.zeros(n)  # [N] m/s (negative reversing)
        self.gear = np.zeros(n, np.int32)
        self.rpm = np.zeros(n)
        self.checkpoints = np.zeros(n, np.int32)
        self.cp_forward = np.zeros(n, np.int32)
        self.cp_backward = np.zeros(n, np.int32)
        self.finished = np.zeros(n, bool)
        self.wall_contact = np.zeros(n, bool)
        self.airborne = np.zeros(n, bool)
        self.race_time_ms = np.zeros(n, np.int64)
        self.quad = np.zeros(n, np.int32)
        self.progress_s = np.zeros(n)
        self.lateral = np.zeros(n)

    def set_car(self, i: int, s: CarState, first: bool = False, heading: bool = True) -> None:
        """Car ``i`` from its report ``s``; ``first``: the first report of a run; ``heading``: ``s`` has one
        (else the heading of the motion since the previous report)."""
        if heading:
            self.yaw[i] = s.heading
        elif not first:
            dx, dz = s.position[0] - self.pos3[i, 0], s.position[2] - self.pos3[i, 2]
            if math.hypot(dx, dz) > MOVED:
                self.yaw[i] = math.atan2(dz, dx)
        self.pos3[i] = s.position
        self.vel[i] = (s.velocity[0], s.velocity[2])
        self.forward_speed[i] = s.speed_kmh / 3.6
        self.gear[i] = s.gear
        self.rpm[i] = s.rpm
        before = int(self.checkpoints[i])
        self.checkpoints[i] = s.checkpoints
        self.cp_forward[i] = 0 if first else max(s.checkpoints - before, 0)
        self.cp_backward[i] = 0
        self.finished[i] = s.finished
        self.wall_contact[i] = s.wall_contact
        self.airborne[i] = not any(s.wheel_contact)
        self.race_time_ms[i] = s.race_time_ms
        if self._model is not None:
            prog, lat = self._model.place(self.pos3[i : i + 1, [0, 2]], self.quad[i : i + 1], np.array([first]))
            self.progress_s[i], self.lateral[i] = prog[0], lat[0]

    def speed(self) -> np.ndarray:
        return np.abs(self.forward_speed)

    def position3(self) -> np.ndarray:
        return self.pos3.copy()

    def geometric_lidar(self, out: np.ndarray | None = None) -> np.ndarray:
        """``[N, beams]`` float32 m against the track model."""
        assert self._model is not None  # "lidar" (geometric) is provided only with a track model
        if out is None:
            out = np.empty((self.n_envs, len(self._model.angles)), np.float32)
        return self._model.lidar(self.pos3[:, [0, 2]], self.yaw, self.quad, out)
