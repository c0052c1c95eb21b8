"""``evo-rl bench realtime``: the real-time environment's timing against a virtual TrackMania 2020.

A virtual game (:class:`~evo_rl.games.tm2020.virtual.VirtualTM2020`, on a thread of this process)
runs at ``time_scale`` (1 = real time) and the real-time environment drives it for ``steps``
control steps with the shipped policy (its episodes restart when they end). Reported:

- ``period_ms``: mean time between two observations (nominal: ``sim.dt`` / time scale);
- ``jitter_p50_ms`` / ``jitter_p99_ms``: |period - nominal|, median and 99th percentile;
- ``timeouts_per_1000``: steps that came later than rtgym's elastic limit (its "time-step timed out");
- ``latency_*_ms``: record latency, from the moment the game sent the frame an observation is built
  from to the moment the observation was built (delivery, decoding, placing the car, LIDAR, rewards);
- ``age_at_return_*_ms``: how old that frame is when ``step`` returns the observation: the latency plus
  rtgym's wait from the capture (``game.obs_capture``, 40 ms) to the end of the control step (50 ms);
- ``act_ms``: the policy's time per step, so the budget it leaves is visible.

Episode ends (a respawn) are left out of the periods: rtgym pauses its clock there, as TMRL does.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from evo_rl.config import EvoConfig
from evo_rl.games.realtime import make_realtime_env
from evo_rl.games.tm2020.virtual import VirtualTM2020


def run(steps: int = 1200, time_scale: float = 1.0, track: str = "evo-test", port: int = 0) -> dict[str, Any]:
    """Drive ``steps`` real-time steps; return the timing summary (see the module docstring)."""
    from evo_rl.train.policy import PRETRAINED, load_policy

    policy = load_policy(PRETRAINED)
    with VirtualTM2020(track, port=port, time_scale=time_scale) as game:
        cfg: EvoConfig = policy.cfg.model_copy(deep=True)
        cfg.env.source = "tm2020"
        cfg.env.track = track
        cfg.game.input = "virtual"
        cfg.game.port = game.port
        cfg.game.input_port = game.input_port
        cfg.game.time_scale = time_scale
        env = make_realtime_env(config=cfg)
        latencies: list[float] = []
        ages: list[float] = []
        act_s: list[float] = []
        episodes = finishes = 0
        try:
            obs, _ = env.reset(seed=0)
            for _ in range(steps):
                t0 = time.perf_counter()
                action = policy.actor.act(tuple(o[None] for o in obs), test=True)[0]
                act_s.append(time.perf_counter() - t0)
                obs, _, terminated, truncated, info = env.step(action)
                returned = time.monotonic()
                telemetry = env.source.telemetry  # type: ignore[attr-defined]
                sent = dict(game.sent_at).get(telemetry.record.frame) if telemetry is not None else None
                if sent is not None:
                    latencies.append(env.interface.observed_at - sent)
                    ages.append(returned - sent)
                if terminated or truncated:
                    episodes += 1
                    finishes += bool(info["finished"])
                    obs, _ = env.reset()
            timing = env.timing.summary()
        finally:
            env.close()
    lat = np.asarray(latencies) * 1000.0
    age = np.asarray(ages) * 1000.0
    return {
        "bench": "realtime",
        "steps": steps,
        "time_scale": time_scale,
        "nominal_period_ms": 1000.0 * cfg.sim.dt / time_scale,
        **{k: round(v, 3) for k, v in timing.items()},
        "latency_mean_ms": round(float(lat.mean()), 3) if len(lat) else None,
        "latency_p50_ms": round(float(np.percentile(lat, 50)), 3) if len(lat) else None,
        "latency_p99_ms": round(float(np.percentile(lat, 99)), 3) if len(lat) else None,
        "age_at_return_p50_ms": round(float(np.percentile(age, 50)), 3) if len(age) else None,
        "act_ms": round(1000.0 * float(np.mean(act_s)), 3),
        "episodes_ended": episodes,
        "finishes": finishes,
    }
