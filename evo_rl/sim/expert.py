"""A scripted expert driver: pure pursuit on the racing line, pedals towards the reference speed.

:class:`ExpertDriver` reads a :class:`~evo_rl.sim.world.World`'s state arrays and
returns actions for all its cars at once (no loop over cars):

- steering: pure pursuit (Coulter, "Implementation of the Pure Pursuit Path
  Tracking Algorithm", CMU-RI-TR-92-01, 1992) towards the racing-line point a
  speed-dependent distance ahead; the curvature it asks for is turned into a
  steering command with the simulator's turn-rate law and capped at what the
  tyres can hold, so the expert never slides on purpose;
- pedals: the target is the reference speed a moment ahead, lowered when the
  car is off the line and its steering asks for more grip than the tyres have.
  The pedals only take the grip that cornering leaves (friction circle). With
  binary pedals (the default controls) the expert presses the gas when below
  the target and the brakes when above it by a small band, pulsing the pedal
  (first-order sigma-delta over the control steps) to press it on the right
  fraction of the steps; with analog pedals it presses them in proportion to
  the speed error, capped the same way.

:func:`run_expert_lap` drives one lap and records it (:func:`record_lap` records any driver's lap).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from evo_rl.config import CarConfig, EvoConfig
from evo_rl.sim.physics import GRAVITY, SLIP_TIME
from evo_rl.sim.reference_lap import ReferenceLap, compute_reference_lap
from evo_rl.sim.track import Track
from evo_rl.sim.world import World


@dataclass
class ExpertGains:
    """Tuning of the expert driver."""

    lookahead_min: float = 6.0  # m, pure-pursuit distance at rest
    lookahead_time: float = 0.35  # s, extra pure-pursuit distance per m/s of speed
    preview_time: float = 0.1  # s ahead at which the reference speed is the target
    brake_band: float = 0.5  # m/s above the target before binary brakes are pressed
    grip_use: float = 0.97  # fraction of the tyre grip the steering may ask for
    speed_gain: float = 2.0  # m/s of speed error that adds a full pedal


class ExpertDriver:
    """Drives every car of a :class:`World` along ``reference`` (computed for ``car`` if None)."""

    def __init__(
        self, track: Track, car: CarConfig, reference: ReferenceLap | None = None, gains: ExpertGains | None = None
    ) -> None:
        self.track = track
        self.car = car
        self.reference = reference if reference is not None else compute_reference_lap(track, car)
        self.gains = gains or ExpertGains()
        self._turn_per_steer = math.tan(math.radians(car.max_steer_deg)) / car.wheelbase  # 1/m at full lock

    def act(self, world: World) -> np.ndarray:
        """Actions ``[N, 3]`` float32 ``[gas, brake, steer]`` for the cars of ``world``."""
        ref, gains, car = self.reference, self.gains, self.car
        speed = world.speed()  # [N] m/s
        cos, sin = np.cos(world.yaw), np.sin(world.yaw)  # [N]
        v_long = world.vel[:, 0] * cos + world.vel[:, 1] * sin  # [N]
        s = ref.line_s(world.progress_s)  # [N] racing-line arc length of each car

        # steering: pure pursuit towards the line point `lookahead` metres ahead
        lookahead = gains.lookahead_min + gains.lookahead_time * np.abs(v_long)  # [N]
        target = ref.point_at(s + lookahead)  # [N, 2]
        d = target - world.pos  # [N, 2]
        forward = d[:, 0] * cos + d[:, 1] * sin  # [N]
        left = -d[:, 0] * sin + d[:, 1] * cos  # [N]
        curvature = 2.0 * left / np.maximum(forward**2 + left**2, 1e-6)  # [N] 1/m, left positive
        grip = (car.grip + car.downforce * speed / 100.0) * GRAVITY  # [N] m/s²
        hold = gains.grip_use * grip / np.maximum(speed, 1.0) ** 2  # [N] tightest curvature the tyres hold
        v_hold = np.sqrt(gains.grip_use * grip / np.maximum(np.abs(curvature), 1e-6))  # [N] m/s that holds it
        curvature = np.clip(curvature, -hold, hold)
        # the simulator turns at -steer * min(v tan(max_steer) / wheelbase, yaw_overshoot * grip / v)
        per_steer = np.minimum(self._turn_per_steer, car.yaw_overshoot * grip / np.maximum(speed, 1.0) ** 2)  # [N]
        steer = np.clip(-curvature / per_steer, -1.0, 1.0)

        # pedals: the reference speed where the car will be a moment from now
        v_target = ref.speed_at(s + gains.preview_time * np.abs(v_long) + 1.0)  # [N] m/s
        v_target = np.minimum(v_target, v_hold)  # off the line in a curve: slow down to get back on it
        error = v_target - speed  # [N] m/s, positive: too slow
        # grip left for the pedals once cornering takes its share: the gas gives way to the steering
        # command and to removing sideways slip; the brakes only to the racing line's own curvature
        v_lat = -world.vel[:, 0] * sin + world.vel[:, 1] * cos  # [N] m/s
        a_turn = np.abs(speed**2 * curvature) + np.abs(v_lat) / SLIP_TIME  # [N] m/s²
        a_line = np.minimum(speed**2 * np.abs(ref.curvature_at(s)), gains.grip_use * grip)  # [N] m/s²
        ratios = np.asarray(car.gear_ratios, np.float64)
        engine = car.engine_force * ratios[np.clip(world.gear, 0, len(ratios) - 1)] / car.mass  # [N] m/s²
        gas_share = np.sqrt(np.maximum(grip**2 - a_turn**2, 0.0)) / engine  # [N] pedal using the grip left
        brake_share = np.sqrt(grip**2 - a_line**2) * car.mass / car.brake_force  # [N]
        # too fast: press harder, the further above the target
        brake_share = brake_share + np.maximum(-error - gains.brake_band, 0.0) / gains.speed_gain
        gas_share = np.clip(gas_share, 0.0, 1.0)
        brake_share = np.clip(brake_share, 0.0, 1.0)
        if world.analog:
            gas = np.minimum(np.clip(error / gains.speed_gain, 0.0, 1.0), gas_share)
            brake = np.minimum(np.clip(-error / gains.speed_gain, 0.0, 1.0), brake_share)
        else:
            # on/off pedals: press on the fraction `share` of the control steps (first-order sigma-delta)
            k = np.round(world.race_time / world.dt)  # [N] step index of each car's lap
            gas = np.where((error > 0.0) & _pulse(gas_share, k), 1.0, -1.0)
            brake = np.where((error < -gains.brake_band) & _pulse(brake_share, k), 1.0, -1.0)
        return np.stack([gas, brake, steer], axis=1).astype(np.float32)  # [N, 3]


def _pulse(share: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Whether to press at step ``k`` to press on a fraction ``share`` of the steps ``[N]``."""
    return np.floor(share * (k + 1) + 1e-9) > np.floor(share * k + 1e-9)


@dataclass
class LapResult:
    """One recorded lap, one row per control step (the start pose first).

    The expert's (:func:`run_expert_lap`) or any driver's (:func:`record_lap`).
    """

    track: str
    finished: bool
    lap_time: float | None  # race time at the finish line, s (None if not finished)
    reference_lap_time: float  # the reference lap time of the same car, s
    times: np.ndarray  # [T] race time, s
    positions3: np.ndarray  # [T, 3] game-style (x, height, y), as World.position3()
    xy: np.ndarray  # [T, 2] plane positions, m
    yaw: np.ndarray  # [T] heading, rad
    speeds: np.ndarray  # [T] m/s
    gears: np.ndarray  # [T] int
    actions: np.ndarray  # [T, 3] float32, the action taken from each row (zeros on the last)
    wall_contacts: int  # control steps with a wall contact


def run_expert_lap(
    track: Track, cfg: EvoConfig, max_seconds: float = 300.0, reference: ReferenceLap | None = None
) -> LapResult:
    """Drive one lap of ``track`` with the expert and the config's car, simulator and controls."""
    ref = reference if reference is not None else compute_reference_lap(track, cfg.car)
    return record_lap(track, cfg, ExpertDriver(track, cfg.car, ref).act, max_seconds, ref)


def record_lap(
    track: Track,
    cfg: EvoConfig,
    act: Callable[[World], np.ndarray],
    max_seconds: float = 300.0,
    reference: ReferenceLap | None = None,
) -> LapResult:
    """Drive one lap of ``track`` from the start with ``act(world) -> actions [1, 3]`` and record it.

    The car, simulator and controls are the config's; the lap ends at the finish or after ``max_seconds``.
    """
    ref = reference if reference is not None else compute_reference_lap(track, cfg.car)
    world = World(track, 1, cfg.car, cfg.lidar, cfg.camera, cfg.sim, controls=cfg.env.controls)
    steps = int(math.ceil(max_seconds / cfg.sim.dt))
    times, pos3, yaw, speeds, gears, actions = [], [], [], [], [], []
    wall_contacts = 0

    def record() -> None:
        times.append(float(world.race_time[0]))
        pos3.append(world.position3()[0])
        yaw.append(float(world.yaw[0]))
        speeds.append(float(world.speed()[0]))
        gears.append(int(world.gear[0]))

    record()
    for _ in range(steps):
        action = act(world)  # [1, 3]
        actions.append(action[0])
        world.step(action)
        wall_contacts += int(world.wall_contact[0])
        record()
        if world.finished[0]:
            break
    actions.append(np.zeros(3, np.float32))
    finished = bool(world.finished[0])
    positions3 = np.asarray(pos3, np.float64)  # [T, 3]
    return LapResult(
        track=track.name,
        finished=finished,
        lap_time=float(world.race_time[0]) if finished else None,
        reference_lap_time=ref.lap_time,
        times=np.asarray(times, np.float64),
        positions3=positions3,
        xy=positions3[:, [0, 2]],
        yaw=np.asarray(yaw, np.float64),
        speeds=np.asarray(speeds, np.float64),
        gears=np.asarray(gears, np.int32),
        actions=np.asarray(actions, np.float32),
        wall_contacts=wall_contacts,
    )
