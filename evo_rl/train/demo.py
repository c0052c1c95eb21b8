"""Drive one lap with a policy and record it (``evo-rl demo``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evo_rl.config import EvoConfig
from evo_rl.train.evaluate import reference_lap_time


@dataclass
class Lap:
    """One recorded episode of one car."""

    track: Any  # evo_rl.sim.track.Track
    positions: np.ndarray  # [T, 2] plane positions, m
    yaws: np.ndarray  # [T] heading, rad
    speeds: np.ndarray  # [T] m/s
    gears: np.ndarray  # [T]
    times: np.ndarray  # [T] race time, s
    finished: bool
    race_time: float  # s at the episode's end
    progress: float  # fraction of the track driven, 0..1
    end_reason: str
    reference_lap_time: float | None
    dt: float  # seconds between recorded states

    @property
    def lap_time(self) -> float | None:
        return self.race_time if self.finished else None


def drive_lap(actor: Any, cfg: EvoConfig, seed: int | None = None) -> Lap:
    """Drive one deterministic episode (``actor.act(obs, test=True)``) and record the car."""
    from evo_rl.envs.vector import VecTrackEnv

    env = VecTrackEnv(cfg, n_envs=1, autoreset=False)
    world = env.world
    obs, _ = env.reset(seed=cfg.env.seed if seed is None else seed)
    pos, yaw, speed, gear, times = [], [], [], [], []

    def record() -> None:
        pos.append(world.position3()[0, [0, 2]])
        yaw.append(float(world.yaw[0]))
        speed.append(float(world.speed()[0]))
        gear.append(int(world.gear[0]))
        times.append(int(world.race_time_ms[0]) / 1000.0)

    record()
    info: dict[str, Any] = {}
    for _ in range(env.max_steps):
        obs, _, terminated, truncated, info = env.step(actor.act(obs, test=True))
        record()
        if terminated[0] or truncated[0]:
            break
    finished = bool(info["finished"][0])
    return Lap(
        track=env.track,
        positions=np.array(pos),  # [T, 2]
        yaws=np.array(yaw),  # [T]
        speeds=np.array(speed),  # [T]
        gears=np.array(gear),  # [T]
        times=np.array(times),  # [T]
        finished=finished,
        race_time=float(info["race_time"][0]),
        progress=1.0 if finished else float(info["progress"][0]),
        end_reason=str(info["end_reason"][0]),
        reference_lap_time=reference_lap_time(env.track, cfg),
        dt=cfg.sim.dt,
    )


def write_animation(lap: Lap, out: str | Path, title: str | None = None) -> Path:
    """A GIF of the recorded lap (the simulator's top-view animation)."""
    from evo_rl.sim.animate import animate_lap

    return animate_lap(
        lap.track,
        lap.positions,
        lap.yaws,
        lap.speeds,
        out,
        dt=lap.dt,
        gears=lap.gears,
        times=lap.times,
        title=title,
        lap_time=lap.lap_time,
        reference_lap_time=lap.reference_lap_time,
    )
