"""``evo-rl bench tmnf``: lock-step steps through the TMNF protocol against virtual TMNF instances.

``instances`` virtual TMNF instances (each its own process, as real games are, or with
``processes=False`` threads of this one; at game speed 100: a step paced to at least ``dt / 100`` =
0.5 ms) are driven by one :class:`~evo_rl.games.tmnf.source.TMNFSource` with full
gas for ``steps`` steps each. Reported: steps per second per instance and in total, and the time of a
lock-step beyond the simulator's own compute and the game's pacing floor (``protocol_overhead``); then
the same with the virtual games unpaced (``unpaced``), which shows what the protocol alone carries.
Threads share this process's interpreter, so several of them also share one core's worth of Python.
"""

from __future__ import annotations

import socket
import sys
import time
from typing import Any

import numpy as np

from evo_rl.config import EvoConfig
from evo_rl.games.tmnf.client import TMNFClient
from evo_rl.games.tmnf.launch import Launcher
from evo_rl.games.tmnf.source import TMNFSource
from evo_rl.games.tmnf.virtual import VirtualTMNF


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def run(instances: int = 1, steps: int = 2000, track: str = "evo-test", processes: bool = True) -> dict[str, Any]:
    """``processes``: each instance its own process (as real games are), else threads of this one.

    Measured twice: at game speed 100 (the game's pacing, as TrackMania paces itself), and with the
    virtual games unpaced (``unpaced``: what the protocol and the simulator alone allow).
    """
    local = VirtualTMNF(track, port=0)  # the simulator's own time for a step, measured here
    try:
        paced = _lockstep(instances, steps, track, processes, paced=True)
        unpaced = _lockstep(instances, steps, track, processes, paced=False)
        # the simulator's own time for the same steps: one World step per instance and step
        sim = local.world
        sim.reset()
        a1 = np.array([[1.0, -1.0, 0.0]], np.float32)
        t1 = time.perf_counter()
        for _ in range(steps):
            sim.step(a1)
        sim_ms = 1000.0 * (time.perf_counter() - t1) / steps  # one instance's step
    finally:
        local.stop()
    floor_ms = 1000.0 * EvoConfig().sim.dt / 100.0  # the game's pacing at speed 100
    return {
        "bench": "tmnf",
        "instances": instances,
        "processes": processes,
        "steps_per_instance": steps,
        **_figures(instances, steps, paced),
        "simulator_ms_per_step": round(sim_ms, 4),
        "pace_floor_ms": floor_ms,
        "protocol_overhead_ms_per_step": round(1000.0 * paced / steps - max(sim_ms * instances, floor_ms), 4),
        "unpaced": {
            **_figures(instances, steps, unpaced),
            "protocol_overhead_ms_per_step": round(1000.0 * unpaced / steps - sim_ms * instances, 4),
        },
    }


def _figures(instances: int, steps: int, seconds: float) -> dict[str, float]:
    return {
        "steps_per_s_total": round(instances * steps / seconds, 1),
        "steps_per_s_per_instance": round(steps / seconds, 1),
        "ms_per_step": round(1000.0 * seconds / steps, 4),  # one lock-step of every instance
    }


def _lockstep(instances: int, steps: int, track: str, processes: bool, paced: bool) -> float:
    """Seconds for ``steps`` lock-steps of ``instances`` virtual games driven by one source, full gas."""
    launcher = None
    games: list[VirtualTMNF] = []
    if processes:
        ports = _free_ports(instances)
        cli = "import sys; from evo_rl.cli import main; sys.exit(main())"
        command = [sys.executable, "-c", cli, "virtual-game", "tmnf", "--track", track, "--port", "{port}"]
        launcher = Launcher(command + ["--speed", "100", *([] if paced else ["--unpaced"])], ports).start()
    else:
        games = [VirtualTMNF(track, port=0, speed=100.0, paced=paced).start() for _ in range(instances)]
        ports = [g.port for g in games]
    try:
        cfg = EvoConfig()
        cfg.env.track = track
        cfg.game.reconnect_timeout = 60.0
        source = TMNFSource(cfg, [TMNFClient(port, connect_timeout=60.0) for port in ports], None, virtual=True)
        source.set_speed(100.0)
        try:
            source.reset()
            actions = np.tile(np.array([[1.0, -1.0, 0.0]], np.float32), (instances, 1))
            t0 = time.perf_counter()
            for _ in range(steps):
                source.step(actions)
                source.observe()
                if source.finished.any():
                    source.reset(source.finished)
            return time.perf_counter() - t0
        finally:
            source.close()
    finally:
        for g in games:
            g.stop()
        if launcher is not None:
            launcher.stop()
