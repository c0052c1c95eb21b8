"""``evo-rl bench sim``: full environment steps per second of N cars on one track, or on many.

A step is what a learner waits for: physics, the sensor (19-beam LIDAR or a
camera frame), the observation buffers, the rewards and the auto-reset of ended
episodes, i.e. :meth:`VecTrackEnv.step`. The cars follow a simple LIDAR driver
(steer towards the longest beam, brake when the front beam is short) so they
spread along the track as in training; computing its actions is not timed.
``sim_only_car_steps_per_s`` times ``World.step`` plus the sensor alone;
``car_steps_per_cpu_s`` divides by the CPU time the process used instead of the
wall-clock time (on a machine busy with other work the two differ). With ``tracks`` > 1
the cars drive that many generated tracks (seeds 0..tracks-1, ``env.tracks``), each car
drawing one per episode, all stepped in one batch.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from evo_rl.config import EvoConfig

OBS = ("lidar", "full")  # observations a run can time: LIDAR or camera frames


def _driver(world: Any, beams: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Actions [N, 3] of a LIDAR-following driver (untimed helper that spreads the cars over the track)."""
    angles = world.beam_angles
    best = np.argmax(beams, axis=1)  # [N]
    ahead = beams[:, int(np.argmin(np.abs(angles)))]
    v = world.speed()
    out[:, 0] = 1.0
    out[:, 1] = ahead < v * v / 25.0 + 5.0
    out[:, 2] = np.clip(-angles[best] / 0.6, -1.0, 1.0)
    return out


def run(
    cfg: EvoConfig | None = None,
    *,
    cars: int = 4096,
    seconds: float = 10.0,
    obs: str = "lidar",
    track: str = "evo-test",
    threads: int = 0,
    tracks: int = 1,
) -> dict[str, Any]:
    """Step ``cars`` cars for ``seconds`` timed seconds; returns the JSON-ready result.

    ``cfg`` (default: the default config) gives every other setting, e.g. the reward to compare;
    ``obs`` is ``lidar`` or ``full`` (camera frames), ``track`` a built-in name or a ``.track`` path,
    ``threads`` numba's threads (0: all cores), ``tracks`` > 1 that many generated tracks instead of ``track``.
    """
    import numba

    from evo_rl.envs.vector import VecTrackEnv
    from evo_rl.errors import EvoError
    from evo_rl.sim.catalog import get_track

    if cars < 1 or seconds <= 0:
        raise EvoError(f"bench sim: cars must be >= 1 and seconds > 0, got {cars} and {seconds}")
    if tracks < 1:
        raise EvoError(f"bench sim: tracks must be >= 1, got {tracks}")
    if obs not in OBS:
        raise EvoError(f"bench sim: obs must be one of {list(OBS)}, got {obs!r}")
    cfg = cfg.model_copy(deep=True) if cfg is not None else EvoConfig()
    cfg.env.flavour = obs
    cfg.env.n_envs = cars
    cfg.env.track = track
    cfg.sim.threads = threads
    road = get_track(track)
    if tracks > 1:
        from evo_rl.config import GeneratedTracks

        cfg.env.tracks = [GeneratedTracks(seeds=(0, tracks))]
        env = VecTrackEnv(cfg)
    else:
        env = VecTrackEnv(cfg, track=road)
    world = env.world
    env.reset(seed=0)
    actions = np.zeros((cars, 3), np.float32)  # [N, 3]
    beams = np.zeros((cars, world.n_beams), np.float32)  # [N, B]

    def act() -> np.ndarray:
        return _driver(world, world.lidar(out=beams), actions)

    for _ in range(10):  # compile and warm up
        env.step(act())

    steps, timed, cpu, finished = 0, 0.0, 0.0, 0
    while timed < seconds:
        a = act()
        t0, c0 = time.perf_counter(), time.process_time()
        _, _, terminated, _, _ = env.step(a)
        timed += time.perf_counter() - t0
        cpu += time.process_time() - c0
        steps += 1
        finished += int(terminated.sum())

    # the simulator alone: physics + sensor, no observation buffers or rewards
    frames = np.empty((cars, cfg.camera.height, cfg.camera.width), np.uint8) if obs == "full" else beams
    sensor = world.images if obs == "full" else world.lidar
    sim_steps, sim_timed = 0, 0.0
    while sim_timed < min(2.0, seconds / 2):
        a = act()
        t0 = time.perf_counter()
        world.step(a)
        sensor(out=frames)
        sim_timed += time.perf_counter() - t0
        sim_steps += 1
        world.reset(world.finished)

    rate = steps * cars / timed
    return {
        "bench": "sim",
        "scope": "VecTrackEnv.step: physics, sensor, observation buffers, rewards, auto-reset",
        "obs": obs,
        "track": road.name if tracks == 1 else f"{tracks} generated tracks (seeds 0..{tracks - 1})",
        "tracks": tracks,
        "cars": cars,
        "threads": numba.get_num_threads(),
        "substeps": cfg.sim.substeps,
        "reward": [t.term for t in cfg.reward],
        "seconds": round(timed, 3),
        "steps": steps,
        "episodes_finished": finished,
        "car_steps_per_s": round(rate),
        "realtime_factor": round(rate / 20.0, 1),
        "car_steps_per_cpu_s": round(steps * cars / max(cpu, 1e-9)),
        "sim_only_car_steps_per_s": round(sim_steps * cars / sim_timed),
        "mean_speed_kmh": round(float(world.speed().mean() * 3.6), 1),
    }
