"""RGB frames of the environments: a top view of the track and cars, or a car's camera."""

from __future__ import annotations

from typing import Any

import numpy as np

from evo_rl.errors import EvoError
from evo_rl.sim.render import TopView
from evo_rl.sim.track import Track

RENDER_MODES = ("rgb_array", "first_person")
TOP_VIEW_SIZE = 480  # pixels of the longer side of the top view


class Renderer:
    """Frames of one environment; the track's top view is drawn once, on first use."""

    def __init__(self, track: Track | None) -> None:
        self.track = track
        self._view: TopView | None = None
        self._base: Any = None

    def __call__(self, world: Any, mode: str) -> np.ndarray:
        """``rgb_array``: top view with every car (car 0 in red); ``first_person``: car 0's camera.

        Returns an RGB frame [H, W, 3] uint8.
        """
        if mode == "first_person":
            gray = world.images()[0]  # [H, W] uint8
            return np.repeat(gray[:, :, None], 3, axis=2)
        if self.track is None:
            raise EvoError(
                "render_mode rgb_array draws the track model, and this car source has none; use first_person"
            )
        if self._view is None:
            self._view = TopView(self.track, size=TOP_VIEW_SIZE)
            self._base = self._view.draw_base()
        img = self._base.copy()
        plane = world.position3()[:, [0, 2]]  # [N, 2] simulator (x, y)
        for i in range(len(plane) - 1, -1, -1):  # car 0 last, on top
            self._view.draw_car(img, plane[i], float(world.yaw[i]), color=(255, 60, 60) if i == 0 else (255, 200, 0))
        speed = float(world.speed()[0]) * 3.6
        self._view.draw_text(img, [f"{speed:5.0f} km/h", f"{int(world.race_time_ms[0]) / 1000:6.2f} s"])
        return np.asarray(img, dtype=np.uint8)
