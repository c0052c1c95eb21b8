"""The simulator's cockpit view as TMRL's LIDAR sees TrackMania: grey road, black borders, light background.

TMRL's ``TM20LIDAR`` runs on a screenshot of the game in the cockpit view (camera 3, car hidden) on plain
road whose borders are black; its beams (:mod:`evo_rl.sim.screen_lidar`) stop at the first pixel darker than
55 in every channel. :func:`cockpit_view` draws the simulator's world so that the same beams stop at the
same places: the road is a flat grey well above the threshold, the walls along both sides of the road and
across its two ends are black from the ground to ``camera.wall_height`` (the road's borders), and
everything else (the sky, and the far road beyond ``camera.range`` where the game's road melts into the
haze) is a light background, which no beam mistakes for a border. There are no gate lines, edge lines or
fog: none is black in the game (the finish line's checks aside), and fog would lift distant borders above
the threshold.

The geometry is the simulator's camera (:func:`evo_rl.sim.sensors.camera_tables`) at TMRL's window size
(958 x 488 by default): eye ``eye_height`` above the road at the car's centre, looking along the heading,
horizontal field of view ``fov_deg``, horizon at row ``horizon * H``, all from the world's
``camera_cfg``. One ray per column is walked through the strip with :func:`evo_rl.sim.geometry.trace`;
a border nearer in metres is lower and larger on the picture, so the beams' pixel distances grow with the
metric distance to the edge.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from evo_rl.errors import EvoError
from evo_rl.sim.geometry import HIT_NONE, trace
from evo_rl.sim.kernels import PARALLEL_IMAGES, car_loop, track_slices
from evo_rl.sim.screen_lidar import WINDOW_HEIGHT, WINDOW_WIDTH
from evo_rl.sim.sensors import camera_tables
from evo_rl.sim.world import World

SKY_RGB = (168, 198, 230)  # background: sky and far haze, well above the border threshold
ROAD_RGB = (104, 104, 110)  # plain road grey
BORDER_RGB = (18, 18, 20)  # the black road borders (walls)
SKY, ROAD, BORDER = 0, 1, 2  # palette rows
MAX_SIZE = 4096  # px, largest cockpit width or height


def palette(channels: int) -> np.ndarray:
    """Palette ``[3, channels]`` uint8 (rows SKY, ROAD, BORDER): RGB, or grey (ITU-R 601 luma) for 1 channel."""
    rgb = np.array([SKY_RGB, ROAD_RGB, BORDER_RGB], np.float64)  # [3, 3]
    if channels == 3:
        return rgb.astype(np.uint8)
    return np.rint(rgb @ np.array([0.299, 0.587, 0.114]))[:, None].astype(np.uint8)  # [3, 1]


@numba.njit(cache=True)
def cockpit_car(
    i: int, edges: np.ndarray, pos: np.ndarray, yaw: np.ndarray, quad: np.ndarray, cols: np.ndarray,
    depth: np.ndarray, focal: float, horizon: float, eye_height: float, wall_height: float, max_range: float,
    colors: np.ndarray, out: np.ndarray,
) -> None:  # fmt: skip
    """Cockpit view of car ``i`` into ``out[i]`` ``[H, W, C]`` (``colors [3, C]``: sky, road, border).

    Column ``c``'s ray ``o + t d`` has unit forward depth, so the wall distance ``t`` the trace returns is
    the depth of the wall's foot: rows whose ground depth is below ``t`` are road, rows from the foot up to
    the wall's top (``horizon - focal (wall_height - eye_height) / t``) are border, the rest background.
    """
    n_rows = out.shape[1]
    n_cols = out.shape[2]
    n_ch = out.shape[3]
    x = pos[i, 0]
    y = pos[i, 1]
    fx = math.cos(yaw[i])
    fy = math.sin(yaw[i])
    foot = np.empty(n_cols)  # [W] m, depth of the wall's foot (max_range: no wall in range)
    top = np.empty(n_cols)  # [W] pixel row coordinate of the wall's top; inf: no wall
    for c in range(n_cols):
        dx = fx + cols[c] * fy  # rightward offset cols[c] per metre of depth
        dy = fy - cols[c] * fx
        t, _, hit = trace(edges, quad[i], x, y, dx, dy, max_range)
        foot[c] = t
        top[c] = np.inf
        if hit != HIT_NONE:
            top[c] = horizon - focal * (wall_height - eye_height) / max(t, 1e-6)
    for r in range(n_rows):  # row by row, so the writes run along memory
        z = depth[r]
        for c in range(n_cols):
            k = SKY
            if z < foot[c]:
                k = ROAD
            elif r + 0.5 >= top[c]:
                k = BORDER
            for ch in range(n_ch):
                out[i, r, c, ch] = colors[k, ch]


@car_loop(PARALLEL_IMAGES)
def cockpit_cars(
    edges: np.ndarray, track_id: np.ndarray, quad_off: np.ndarray, pos: np.ndarray, yaw: np.ndarray,
    quad: np.ndarray, cols: np.ndarray, depth: np.ndarray, focal: float, horizon: float, eye_height: float,
    wall_height: float, max_range: float, colors: np.ndarray, out: np.ndarray,
) -> None:  # fmt: skip
    """Cockpit views of every car into ``out [N, H, W, C]`` (car ``i`` on track ``track_id[i]`` of the pack)."""
    for i in numba.prange(pos.shape[0]):
        q0, q1, _, _ = track_slices(quad_off, track_id[i])
        cockpit_car(i, edges[q0:q1], pos, yaw, quad, cols, depth, focal, horizon, eye_height, wall_height,
                    max_range, colors, out)  # fmt: skip


def cockpit_view(
    world: World,
    rows: np.ndarray | None = None,
    width: int = WINDOW_WIDTH,
    height: int = WINDOW_HEIGHT,
    grey: bool = False,
) -> np.ndarray:
    """Cockpit views ``[K, height, width, 3]`` uint8 RGB (``[K, height, width]`` with ``grey``) of the cars
    ``rows`` (car indices or an ``[N]`` bool mask; all N cars if None), at TMRL's window size by default.

    :func:`evo_rl.sim.screen_lidar.screen_lidar` of a view gives TMRL's LIDAR of that car.
    """
    if not (8 <= width <= MAX_SIZE and 8 <= height <= MAX_SIZE):
        raise EvoError(f"cockpit_view: width and height must be 8..{MAX_SIZE} pixels, got {width} x {height}")
    idx = np.arange(world.n_envs) if rows is None else _indices(rows, world.n_envs)  # [K]
    cam = camera_tables(world.camera_cfg.model_copy(update={"width": width, "height": height}))
    cols, depth, _, _, focal, horizon, eye_height, wall_height, max_range = cam
    colors = palette(1 if grey else 3)  # [3, C]
    out = np.empty((len(idx), height, width, colors.shape[1]), np.uint8)  # [K, H, W, C]
    cockpit_cars(
        len(idx), world.edges, world.track_id[idx], world.quad_off, world.pos[idx], world.yaw[idx], world.quad[idx],
        cols, depth, focal, horizon, eye_height, wall_height, max_range, colors, out, threads=world.sim.threads,
    )  # fmt: skip
    return out.reshape(out.shape[:3]) if grey else out


def _indices(rows: np.ndarray, n_envs: int) -> np.ndarray:
    """Car indices ``[K]`` of ``rows`` (indices or an ``[N]`` bool mask), or EvoError."""
    r = np.asarray(rows)
    if r.dtype == bool:
        if r.shape != (n_envs,):
            raise EvoError(f"cockpit_view: a bool rows mask must have shape ({n_envs},), got {r.shape}")
        return np.flatnonzero(r)
    idx = r.astype(np.intp).reshape(-1)
    if idx.size and (idx.min() < -n_envs or idx.max() >= n_envs):
        raise EvoError(f"cockpit_view: rows must be car indices in 0..{n_envs - 1}, got {r.tolist()}")
    return idx
