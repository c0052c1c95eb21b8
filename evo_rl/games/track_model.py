"""A game car on a track model: its place on the track and the geometric LIDAR, from telemetry.

With a simulator track of the map (recorded with ``record-track``, or the virtual game's own track),
a game source reports the simulator's own numbers: ``quad`` / ``progress_s`` / ``lateral`` and the
LIDAR in metres, computed with the simulator's geometry from the car's position and heading.
"""

from __future__ import annotations

import numpy as np

from evo_rl.config import EvoConfig
from evo_rl.sim.geometry import locate, strip_edges, track_coords
from evo_rl.sim.kernels import single_track
from evo_rl.sim.sensors import beam_layout, lidar_cars
from evo_rl.sim.track import Track

NEAR_QUADS = 24  # quads around the last one searched first when placing a car


class TrackModel:
    """``track`` as the model of a game's map, for cars placed by their plane positions ``[N, 2]``."""

    def __init__(self, track: Track, cfg: EvoConfig) -> None:
        self.track = track
        self.edges = strip_edges(track.left, track.right)  # [M, 4, 3]
        self.angles, self.origins = beam_layout(cfg.lidar, cfg.car)  # [B], [B, 2]
        self.range = cfg.lidar.range

    def place(
        self, plane: np.ndarray, quad: np.ndarray, fresh: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Update ``quad [N]`` in place (near the last one, then anywhere; kept off the strip) for cars at
        ``plane [N, 2]``; ``fresh [N]`` bool: search everywhere. Returns progress (m) and lateral offset (m)."""
        m = self.track.n_quads
        for i in range(len(plane)):
            q0 = int(quad[i])
            lo, hi = max(q0 - NEAR_QUADS, 0), min(q0 + NEAR_QUADS, m)
            q = -1 if fresh is not None and fresh[i] else int(locate(self.edges[lo:hi], plane[i])[0])
            q = q + lo if q >= 0 else int(locate(self.edges, plane[i])[0])
            if q >= 0:
                quad[i] = q
        return track_coords(self.edges, self.track.s, self.track.center, quad, plane)

    def lidar(self, plane: np.ndarray, yaw: np.ndarray, quad: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Geometric LIDAR ``[N, beams]`` float32 m of cars at ``plane [N, 2]`` heading ``yaw [N]``."""
        plane = np.ascontiguousarray(plane, np.float64)
        track_id, quad_off = single_track(len(plane), self.track.n_quads)
        lidar_cars(
            len(plane), self.edges, track_id, quad_off, plane, yaw, quad, self.angles, self.origins, self.range, out,
            threads=1,
        )  # fmt: skip
        return out
