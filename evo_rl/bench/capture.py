"""Capture timing: how long one TMRL-style screenshot LIDAR frame costs, picture and beams apart.

:func:`time_lidar` times any picture source: ``grab()`` (a screenshot, a virtual game's screen, the
simulator's cockpit view) and then :func:`~evo_rl.sim.screen_lidar.screen_lidar` on what it returned, frame
by frame, and reports each part's mean and 99th percentile in milliseconds. :func:`run_capture` feeds it
the simulator's cockpit view (:func:`~evo_rl.sim.cockpit.cockpit_view`) of one car on the built-in track
``evo-test``, driven by the scripted expert between frames (untimed) so the view changes as in a race.
TMRL steps at 20 Hz, so a frame has 50 ms for picture, beams and policy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from evo_rl.errors import EvoError
from evo_rl.sim.screen_lidar import BEAMS, screen_lidar

WARMUP = 3  # untimed frames first (numba compilation, caches)


def _stats(ms: list[float]) -> dict[str, float]:
    """Mean and 99th percentile of durations in milliseconds, rounded to microseconds."""
    a = np.asarray(ms, np.float64)  # [F] ms
    return {"mean": round(float(a.mean()), 3), "p99": round(float(np.percentile(a, 99)), 3)}


def time_lidar(
    grab: Callable[[], np.ndarray], frames: int, after: Callable[[np.ndarray], None] | None = None
) -> dict[str, Any]:
    """Time ``frames`` frames of ``grab()`` (a ``[H, W, 3]`` or ``[H, W]`` uint8 picture) and its screen LIDAR.

    ``after(lidar [19] float32)``, if given, runs untimed after each frame (e.g. to step a simulator or
    send inputs to a game). :data:`WARMUP` frames run first, untimed. Returns
    ``{"frames", "height", "width", "grab_ms": {"mean", "p99"}, "lidar_ms": {...}, "frame_ms": {...}}``.
    """
    if frames < 1:
        raise EvoError(f"bench capture: frames must be at least 1, got {frames}")
    lidar = np.empty(BEAMS, np.float32)  # [19] float32, pixels
    grab_ms: list[float] = []
    lidar_ms: list[float] = []
    shape: tuple[int, ...] = ()
    for k in range(WARMUP + frames):
        t0 = time.perf_counter()
        image = grab()
        t1 = time.perf_counter()
        screen_lidar(image, out=lidar)
        t2 = time.perf_counter()
        if k >= WARMUP:
            grab_ms.append((t1 - t0) * 1e3)
            lidar_ms.append((t2 - t1) * 1e3)
        shape = image.shape
        if after is not None:
            after(lidar)
    total = [g + b for g, b in zip(grab_ms, lidar_ms, strict=True)]
    return {
        "frames": frames,
        "height": int(shape[0]),
        "width": int(shape[1]),
        "grab_ms": _stats(grab_ms),
        "lidar_ms": _stats(lidar_ms),
        "frame_ms": _stats(total),
    }


def run_capture(frames: int = 200, width: int | None = None, height: int | None = None) -> dict[str, Any]:
    """Cockpit render and screen LIDAR time per frame of one car on ``evo-test``; the JSON-ready result.

    ``width`` x ``height`` is the cockpit view's size (default: TMRL's 958 x 488 window).
    """
    import numba

    from evo_rl.sim.catalog import get_track
    from evo_rl.sim.cockpit import cockpit_view
    from evo_rl.sim.expert import ExpertDriver
    from evo_rl.sim.screen_lidar import WINDOW_HEIGHT, WINDOW_WIDTH
    from evo_rl.sim.world import World

    w = WINDOW_WIDTH if width is None else width
    h = WINDOW_HEIGHT if height is None else height
    track = get_track("evo-test")
    world = World(track, 1)
    driver = ExpertDriver(track, world.car)

    def grab() -> np.ndarray:
        return cockpit_view(world, width=w, height=h)[0]  # [H, W, 3] uint8

    def drive(_: np.ndarray) -> None:
        world.step(driver.act(world))
        world.reset(world.finished)

    timing = time_lidar(grab, frames, after=drive)
    return {
        "bench": "capture",
        "scope": "simulator cockpit view (render) and TMRL's screen LIDAR, one car, per frame",
        "track": track.name,
        "threads": numba.get_num_threads(),
        "frames": timing["frames"],
        "width": timing["width"],
        "height": timing["height"],
        "render_ms": timing["grab_ms"],
        "lidar_ms": timing["lidar_ms"],
        "frame_ms": timing["frame_ms"],
        "distance_m": round(float(world.progress_s[0]), 1),
    }


def run_virtual_screen(frames: int = 200, time_scale: float = 1.0) -> dict[str, Any]:
    """Capture through a virtual TrackMania 2020's screen (``VirtualScreen``) plus the screen LIDAR, per frame.

    The virtual game (on a thread of this process) renders its window, 958 x 488 RGB, on each request
    and sends it over loopback, as a capture of the real window would deliver it; the car drives with
    full gas so the picture changes.
    """
    from evo_rl.games.capture import VirtualScreen
    from evo_rl.games.control import VirtualInput
    from evo_rl.games.tm2020.virtual import VirtualTM2020

    with VirtualTM2020("evo-test", port=0, time_scale=time_scale) as game:
        with VirtualScreen(game.input_port) as screen, VirtualInput(game.input_port) as pad:
            pad.apply(1.0, 0.0, 0.0)
            timing = time_lidar(screen.grab, frames)
    return {
        "scope": "VirtualScreen.grab() of a virtual TrackMania 2020 (render + loopback transfer) and the screen LIDAR",
        "frames": timing["frames"],
        "width": timing["width"],
        "height": timing["height"],
        "capture_ms": timing["grab_ms"],
        "lidar_ms": timing["lidar_ms"],
        "frame_ms": timing["frame_ms"],
    }


def run(frames: int = 200) -> dict[str, Any]:
    """``evo-rl bench capture``: the virtual screen (capture + LIDAR) and the simulator's cockpit view (render + LIDAR)."""
    return {"bench": "capture", "virtual_screen": run_virtual_screen(frames), "simulator": run_capture(frames)}
