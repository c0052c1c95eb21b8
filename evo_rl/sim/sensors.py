"""Sensors: LIDAR beams and the first-person grayscale camera, both by walking the strip.

LIDAR layouts (angles from the heading, counter-clockwise positive, beam 0 leftmost):

- ``fan``: ``beams`` beams from the car's centre, evenly from ``+fov/2`` to
  ``-fov/2`` (TMRL's default: 19 beams, +90° to -90°, 10° apart). With a
  360° fan the beams are ``360 / beams`` apart starting at +180°.
- ``tires``: 19 beams, 12° apart: 4 from the left front tyre at +108°, +96°,
  +84°, +72°; 11 from the middle of the front axle at +60°, +48°, ..., -60°; 4 from
  the right front tyre at -72°, -84°, -96°, -108°. Tyres sit ``wheelbase / 2``
  ahead of the centre and ``half_width`` to the side; a tyre pushed into a wall
  measures from the wall.

Distances are metres along the beam to the first wall, clipped at ``range``.

The camera sits at the car's centre, ``eye_height`` above the road, looking along
the heading with the horizon at row ``horizon * H``. Each column casts one ray
through the strip; below the horizon every pixel is the road at the depth its
row sees, found on the same walk. Tones (before distance fog): sky 200-240
(brighter towards the horizon), road 88/108 in bands 5 m long, edge lines 215,
checkpoint lines 235, the start line 185, a black-and-white checked finish line,
left walls 175/145 and right walls 85/60 in 4 m stripes, end walls 40/25.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from evo_rl.config import CameraConfig, CarConfig, LidarConfig
from evo_rl.sim.geometry import BACK, FRONT, HIT_LEFT, HIT_NONE, HIT_RIGHT, cross, quad_exit, trace
from evo_rl.sim.kernels import PARALLEL_CARS, PARALLEL_IMAGES, car_loop, track_slices

GATE_NONE, GATE_START, GATE_CHECKPOINT, GATE_FINISH = 0, 1, 2, 3  # marking on a cross-section
BAND = 5.0  # m, length of the road's alternating bands
STRIPE = 4.0  # m, length of a wall stripe
EDGE_LINE = 0.4  # m, width of the road's edge lines
GATE_LINE = 1.0  # m, depth of a start/checkpoint/finish line
FOG_TONE = 190.0
FOG_MAX = 0.85  # fog fraction at the drawing distance


def beam_layout(lidar: LidarConfig, car: CarConfig) -> tuple[np.ndarray, np.ndarray]:
    """``(angles [B] rad, origins [B, 2])``: beam directions from the heading and origins (forward, left) in metres."""
    if lidar.layout == "tires":
        deg = np.concatenate([[108.0, 96.0, 84.0, 72.0], np.linspace(60.0, -60.0, 11), [-72.0, -84.0, -96.0, -108.0]])
        side = np.concatenate([np.full(4, car.half_width), np.zeros(11), np.full(4, -car.half_width)])
        origins = np.stack([np.full(19, car.wheelbase / 2.0), side], axis=1)  # [19, 2]
        return np.radians(deg), origins
    n = lidar.beams
    if n == 1:
        deg = np.zeros(1)
    elif lidar.fov_deg >= 360.0:
        deg = 180.0 - np.arange(n) * (360.0 / n)
    else:
        deg = np.linspace(lidar.fov_deg / 2.0, -lidar.fov_deg / 2.0, n)
    return np.radians(deg), np.zeros((n, 2))  # [B], [B, 2]


@numba.njit(cache=True)
def lidar_car(
    i: int,
    edges: np.ndarray,
    pos: np.ndarray,
    yaw: np.ndarray,
    quad: np.ndarray,
    beam_cos: np.ndarray,
    beam_sin: np.ndarray,
    origins: np.ndarray,
    max_range: float,
    out: np.ndarray,
) -> None:
    """LIDAR of car ``i`` into ``out[i]`` (float32 metres); beams ``(cos, sin)`` of their angle from the heading."""
    x = pos[i, 0]
    y = pos[i, 1]
    q = quad[i]
    cs = math.cos(yaw[i])
    sn = math.sin(yaw[i])
    ox = x
    oy = y
    oq = q
    for b in range(beam_cos.shape[0]):
        f = origins[b, 0]
        lf = origins[b, 1]
        if b == 0 or f != origins[b - 1, 0] or lf != origins[b - 1, 1]:
            ox = x
            oy = y
            oq = q
            if f != 0.0 or lf != 0.0:  # bring the beam origin into the strip, stopping at a wall
                dx = f * cs - lf * sn
                dy = f * sn + lf * cs
                length = math.sqrt(dx * dx + dy * dy)
                t, oq, _ = trace(edges, q, x, y, dx / length, dy / length, length)
                ox = x + dx / length * t
                oy = y + dy / length * t
        dx = cs * beam_cos[b] - sn * beam_sin[b]
        dy = sn * beam_cos[b] + cs * beam_sin[b]
        t, _, _ = trace(edges, oq, ox, oy, dx, dy, max_range)
        out[i, b] = t


@car_loop(PARALLEL_CARS)
def lidar_cars(
    edges: np.ndarray,
    track_id: np.ndarray,
    quad_off: np.ndarray,
    pos: np.ndarray,
    yaw: np.ndarray,
    quad: np.ndarray,
    angles: np.ndarray,
    origins: np.ndarray,
    max_range: float,
    out: np.ndarray,
) -> None:
    """LIDAR of every car into ``out [N, B]``; car ``i`` on track ``track_id[i]`` of the packed ``edges``."""
    beam_cos = np.cos(angles)  # [B]
    beam_sin = np.sin(angles)  # [B]
    for i in numba.prange(pos.shape[0]):
        q0, q1, _, _ = track_slices(quad_off, track_id[i])
        lidar_car(i, edges[q0:q1], pos, yaw, quad, beam_cos, beam_sin, origins, max_range, out)


def camera_tables(camera: CameraConfig) -> tuple:
    """The camera as a kernel tuple: ``(column slopes [W], road depth per row [H], road fog per row [H],
    sky tone per row [H], focal length px, horizon row px, eye_height, wall_height, range)``; depth is inf
    above the horizon."""
    w, h = camera.width, camera.height
    focal = (w / 2.0) / math.tan(math.radians(camera.fov_deg) / 2.0)  # pixels
    horizon = camera.horizon * h  # pixel row coordinate of the horizon
    cols = (np.arange(w) + 0.5 - w / 2.0) / focal  # [W] rightward offset per metre of depth
    below = np.arange(h) + 0.5 - horizon  # [H]
    depth = np.where(below > 0.0, focal * camera.eye_height / np.where(below > 0.0, below, 1.0), np.inf)  # [H]
    fog = np.minimum(depth / camera.range, 1.0) * FOG_MAX  # [H]
    sky = 240.0 - 40.0 * np.clip(-below / max(horizon, 1.0), 0.0, 1.0)  # [H]
    return (cols, depth, fog, sky, float(focal), float(horizon), float(camera.eye_height), float(camera.wall_height),
            float(camera.range))  # fmt: skip


@numba.njit(cache=True)
def _fog(tone: float, amount: float) -> np.uint8:
    """Pixel of ``tone`` seen through ``amount`` (0..1) of fog."""
    return np.uint8(tone + (FOG_TONE - tone) * amount + 0.5)


@numba.njit(cache=True)
def _road_tone(s0: float, ds: float, g0: int, g1: int, db: float, df: float, dl: float, dr: float) -> float:
    """Tone of a road point of a quad spanning ``s0 .. s0 + ds`` with gate marks ``g0``, ``g1``,
    at distances ``db``, ``df``, ``dl``, ``dr`` from its back gate, front gate, left and right walls."""
    total = db + df
    u = 0.5
    if total > 1e-12:
        u = min(max(db / total, 0.0), 1.0)
    along = ds * u
    mark = GATE_NONE
    if g0 != GATE_NONE and along < GATE_LINE:
        mark = g0
    elif g1 != GATE_NONE and ds - along < GATE_LINE:
        mark = g1
    if mark == GATE_FINISH:
        return 245.0 if (int(2.0 * along) + int(max(dl, 0.0))) & 1 == 0 else 25.0
    if mark == GATE_CHECKPOINT:
        return 235.0
    if mark == GATE_START:
        return 185.0
    if dl < EDGE_LINE or dr < EDGE_LINE:
        return 215.0
    return 88.0 if int((s0 + along) * (1.0 / BAND)) & 1 == 0 else 108.0


@numba.njit(cache=True)
def _wall_tone(edges: np.ndarray, s: np.ndarray, q: int, hit: int, x: float, y: float) -> float:
    """Tone of the wall hit at ``(x, y)`` of quad ``q``."""
    if hit == HIT_LEFT or hit == HIT_RIGHT:
        db = edges[q, BACK, 2] - edges[q, BACK, 0] * x - edges[q, BACK, 1] * y
        df = edges[q, FRONT, 2] - edges[q, FRONT, 0] * x - edges[q, FRONT, 1] * y
        total = db + df
        u = 0.5
        if total > 1e-12:
            u = min(max(db / total, 0.0), 1.0)
        stripe = int(math.floor((s[q] + (s[q + 1] - s[q]) * u) / STRIPE)) % 2
        if hit == HIT_LEFT:
            return 175.0 if stripe == 0 else 145.0
        return 85.0 if stripe == 0 else 60.0
    dl = max(edges[q, 0, 2] - edges[q, 0, 0] * x - edges[q, 0, 1] * y, 0.0)
    return 40.0 if int(math.floor(dl / STRIPE)) % 2 == 0 else 25.0


@numba.njit(cache=True)
def _advance(
    edges: np.ndarray, q: int, came: int, t_in: float, t_out: float, e: int, x: float, y: float, dx: float, dy: float
) -> tuple[int, int, float, float, int, int]:
    """Step a camera ray into the next quad. Returns ``(q, came, t_in, t_out, e, hit)``; ``hit > 0`` at a wall."""
    if e < 0:
        return q, came, t_in, t_in, e, HIT_LEFT
    q_next, came_next, hit = cross(edges.shape[0], q, e)
    if hit != HIT_NONE:
        return q, came, t_in, t_out, e, hit
    q, came = q_next, came_next
    t_in = t_out
    t_out, e = quad_exit(edges, q, came, x, y, dx, dy)
    if t_out < t_in:
        t_out = t_in
    return q, came, t_in, t_out, e, 0


@numba.njit(cache=True)
def image_car(i: int, edges: np.ndarray, s: np.ndarray, gate: np.ndarray, pos: np.ndarray, yaw: np.ndarray,
              quad: np.ndarray, cam: tuple, out: np.ndarray) -> None:  # fmt: skip
    """First-person frame of car ``i`` into ``out[i]`` (``cam`` from :func:`camera_tables`).

    Along one column ray ``o + z d`` the distance of the road point at depth ``z``
    to each edge of a quad is linear in ``z``: ``A_e - z B_e``; the coefficients
    are set when the walk enters a quad.
    """
    cols, depth, fog, sky, focal, horizon, eye_height, wall_height, max_range = cam
    n_rows = out.shape[1]
    n_cols = out.shape[2]
    inv_range = 1.0 / max_range
    fog_px = np.uint8(FOG_TONE + 0.5)
    x = pos[i, 0]
    y = pos[i, 1]
    fx = math.cos(yaw[i])
    fy = math.sin(yaw[i])
    for c in range(n_cols):
        # ray of unit forward depth: t along it is the depth in front of the camera
        dx = fx + cols[c] * fy
        dy = fy - cols[c] * fx
        q = quad[i]
        came = -1
        t_in = 0.0
        t_out, e = quad_exit(edges, q, came, x, y, dx, dy)
        if t_out < t_in:
            t_out = t_in
        hit = 0
        q_coef = -1
        ab = bb = af = bf = al = bl = ar = br = s0 = ds = 0.0
        g0 = g1 = 0
        row = n_rows - 1
        while row >= 0:
            z = depth[row]
            if z == np.inf:
                break
            while hit == 0 and z > t_out:
                q, came, t_in, t_out, e, hit = _advance(edges, q, came, t_in, t_out, e, x, y, dx, dy)
            if hit != 0 and z >= t_out:
                break
            if z > max_range:
                out[i, row, c] = fog_px
            else:
                if q != q_coef:
                    q_coef = q
                    ab = edges[q, BACK, 2] - edges[q, BACK, 0] * x - edges[q, BACK, 1] * y
                    bb = edges[q, BACK, 0] * dx + edges[q, BACK, 1] * dy
                    af = edges[q, FRONT, 2] - edges[q, FRONT, 0] * x - edges[q, FRONT, 1] * y
                    bf = edges[q, FRONT, 0] * dx + edges[q, FRONT, 1] * dy
                    al = edges[q, 0, 2] - edges[q, 0, 0] * x - edges[q, 0, 1] * y
                    bl = edges[q, 0, 0] * dx + edges[q, 0, 1] * dy
                    ar = edges[q, 1, 2] - edges[q, 1, 0] * x - edges[q, 1, 1] * y
                    br = edges[q, 1, 0] * dx + edges[q, 1, 1] * dy
                    s0 = s[q]
                    ds = s[q + 1] - s0
                    g0 = gate[q]
                    g1 = gate[q + 1]
                tone = _road_tone(s0, ds, g0, g1, ab - z * bb, af - z * bf, al - z * bl, ar - z * br)
                out[i, row, c] = _fog(tone, fog[row])
            row -= 1
        while hit == 0 and t_out <= max_range:
            q, came, t_in, t_out, e, hit = _advance(edges, q, came, t_in, t_out, e, x, y, dx, dy)
        top = np.inf
        wall_px = fog_px
        if hit != 0 and t_out <= max_range:
            top = horizon - focal * (wall_height - eye_height) / max(t_out, 1e-6)
            tone = _wall_tone(edges, s, q, hit, x + t_out * dx, y + t_out * dy)
            wall_px = _fog(tone, min(t_out * inv_range, 1.0) * FOG_MAX)
        for r in range(row + 1):
            if r + 0.5 >= top:
                out[i, r, c] = wall_px
            elif depth[r] == np.inf:
                out[i, r, c] = np.uint8(sky[r] + 0.5)
            else:
                out[i, r, c] = fog_px


@car_loop(PARALLEL_IMAGES)
def images_cars(
    edges: np.ndarray, s: np.ndarray, gate: np.ndarray, track_id: np.ndarray, quad_off: np.ndarray,
    pos: np.ndarray, yaw: np.ndarray, quad: np.ndarray, cam: tuple, out: np.ndarray,
) -> None:  # fmt: skip
    """First-person frames of every car into ``out [N, H, W]`` uint8 (packed tracks as in :func:`lidar_cars`)."""
    for i in numba.prange(pos.shape[0]):
        q0, q1, c0, c1 = track_slices(quad_off, track_id[i])
        image_car(i, edges[q0:q1], s[c0:c1], gate[c0:c1], pos, yaw, quad, cam, out)


def gate_marks(n_sections: int, start: int, checkpoints: np.ndarray, finish: int) -> np.ndarray:
    """Marking of each cross-section ``[M+1]`` int8: start, checkpoint or finish line."""
    gate = np.zeros(n_sections, np.int8)  # [M+1]
    gate[start] = GATE_START
    gate[np.asarray(checkpoints, np.int64)] = GATE_CHECKPOINT
    gate[finish] = GATE_FINISH
    return gate
