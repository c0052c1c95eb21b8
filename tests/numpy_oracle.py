"""Plain NumPy implementation of the simulator's maths: the oracle of the tests.

The same equations as :mod:`evo_rl.sim.geometry`, :mod:`evo_rl.sim.physics` and
the LIDAR of :mod:`evo_rl.sim.sensors`, written without numba: the force model
vectorised over cars, the strip walks as Python loops. Slow; only for checking.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from evo_rl.sim import physics as ph
from evo_rl.sim.geometry import BACK, FRONT, HIT_LEFT, HIT_NONE

STATE = ph.STATE  # state arrays of a World, in kernel order


def quad_exit(edges: np.ndarray, q: int, came: int, ox: float, oy: float, dx: float, dy: float) -> tuple[float, int]:
    """Distance at which ``o + t d`` leaves quad ``q`` and the edge it leaves by (``came`` skipped)."""
    best, best_e = math.inf, -1
    for e in range(4):
        if e == came:
            continue
        nx, ny, c = edges[q, e]
        den = nx * dx + ny * dy
        if den > 0.0:
            t = (c - nx * ox - ny * oy) / den
            if t < best:
                best, best_e = t, e
    return best, best_e


def trace(edges: np.ndarray, q: int, ox: float, oy: float, dx: float, dy: float, tmax: float) -> tuple[float, int, int]:
    """``(t, quad, hit)`` of the segment ``o + t d``, ``0 <= t <= tmax``, walked from quad ``q``."""
    m = len(edges)
    t_in, came = 0.0, -1
    for _ in range(m + 1):
        t_out, e = quad_exit(edges, q, came, ox, oy, dx, dy)
        if e < 0:
            return t_in, q, HIT_LEFT
        t_out = max(t_out, t_in)
        if t_out >= tmax:
            return tmax, q, HIT_NONE
        if e == BACK and q > 0:
            q, came = q - 1, FRONT
        elif e == FRONT and q < m - 1:
            q, came = q + 1, BACK
        else:
            return t_out, q, e + 1
        t_in = t_out
    return t_in, q, HIT_LEFT


def dynamics(p, ratios, top, gas, brake, cmd, cs, sn, vx, vy, steer, gear, dt):  # noqa: ANN001, ANN201 - arrays [N]
    """:func:`evo_rl.sim.physics.dynamics` over arrays of cars."""
    step = p[ph.P_STEER_RATE] * dt
    steer = steer + np.clip(cmd - steer, -step, step)
    v_long = vx * cs + vy * sn
    v_lat = -vx * sn + vy * cs
    speed = np.sqrt(vx * vx + vy * vy)

    a_long = np.abs(v_long)
    rpm = np.maximum(p[ph.P_IDLE_RPM], p[ph.P_MAX_RPM] * a_long / top[gear])
    up = (gear < len(ratios) - 1) & (rpm > p[ph.P_SHIFT_UP])
    down = ~up & (gear > 0) & (rpm < p[ph.P_SHIFT_DOWN])
    gear = gear + up.astype(gear.dtype) - down.astype(gear.dtype)
    rpm = np.maximum(p[ph.P_IDLE_RPM], p[ph.P_MAX_RPM] * a_long / top[gear])

    grip = (p[ph.P_GRIP] + p[ph.P_DOWNFORCE] * speed) * ph.GRAVITY
    a_max = np.where(np.abs(v_lat) > p[ph.P_SLIDE_SPEED], grip * p[ph.P_SLIDE_GRIP], grip)

    engine_on = (gas > 0.0) & ((rpm < p[ph.P_MAX_RPM]) | (v_long < 0.0))
    ax = np.where(engine_on, gas * p[ph.P_ENGINE] * ratios[gear] * p[ph.P_INV_MASS], 0.0)
    braking = (brake > 0.0) & (v_long > ph.STOP_SPEED)
    reversing = (brake > 0.0) & ~braking & (v_long > -p[ph.P_REVERSE_SPEED])
    ax = np.where(braking, ax - brake * p[ph.P_BRAKE] * p[ph.P_INV_MASS], ax)
    ax = np.where(reversing, ax - brake * p[ph.P_REVERSE] * p[ph.P_INV_MASS], ax)

    turn = np.minimum(a_long * p[ph.P_TAN_STEER_L], p[ph.P_OVERSHOOT] * grip / np.maximum(speed, 1.0))
    direction = np.where(v_long >= 0.0, 1.0, -1.0)
    yaw_rate = -steer * turn * direction + p[ph.P_ALIGN] * direction * v_lat / np.maximum(speed, 1.0)

    kill = min(1.0 / ph.SLIP_TIME, 1.0 / dt)
    ay = yaw_rate * v_long - v_lat * kill
    total = np.sqrt(ax * ax + ay * ay)
    over = total > a_max
    scale = np.where(over, a_max / np.where(over, total, 1.0), 1.0)
    ax = np.where(over, ax * scale, ax)
    ay = np.where(over, ay * scale, ay)

    vx = vx + (ax * cs - ay * sn) * dt
    vy = vy + (ax * sn + ay * cs) * dt
    speed = np.sqrt(vx * vx + vy * vy)
    moving = speed > 0.0
    resist = (p[ph.P_DRAG] * speed * speed + p[ph.P_ROLL]) * p[ph.P_INV_MASS] * dt
    factor = np.maximum(speed - resist, 0.0) / np.where(moving, speed, 1.0)
    vx = np.where(moving, vx * factor, vx)
    vy = np.where(moving, vy * factor, vy)
    return vx, vy, yaw_rate, steer, gear, rpm


def rotate(cs: np.ndarray, sn: np.ndarray, angle: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`evo_rl.sim.physics.rotate` over arrays."""
    a2 = angle * angle
    small = a2 < 0.01
    c = np.where(small, 1.0 - a2 / 2.0 + a2 * a2 / 24.0 - a2 * a2 * a2 / 720.0, np.cos(angle))
    s = np.where(small, angle * (1.0 - a2 / 6.0 + a2 * a2 / 120.0 - a2 * a2 * a2 / 5040.0), np.sin(angle))
    return cs * c - sn * s, sn * c + cs * s


def move(p: np.ndarray, inset: np.ndarray, q: int, x: float, y: float, vx: float, vy: float, dt: float):  # noqa: ANN201
    """:func:`evo_rl.sim.physics.move` for one car."""
    remaining, touched = dt, False
    for _ in range(ph.MAX_CONTACTS):
        dx, dy = vx * remaining, vy * remaining
        length = math.sqrt(dx * dx + dy * dy)
        if length <= 0.0:
            break
        ux, uy = dx / length, dy / length
        t, q, hit = trace(inset, q, x, y, ux, uy, length)
        x, y = x + ux * t, y + uy * t
        if hit == HIT_NONE:
            break
        touched = True
        nx, ny = -inset[q, hit - 1, 0], -inset[q, hit - 1, 1]
        x, y = x + ph.WALL_GAP * nx, y + ph.WALL_GAP * ny
        remaining *= 1.0 - t / length
        vn = vx * nx + vy * ny
        if vn < 0.0:
            tx, ty = vx - vn * nx, vy - vn * ny
            vt = math.sqrt(tx * tx + ty * ty)
            keep = 0.0
            if vt > 0.0:
                keep = max(vt - p[ph.P_WALL_FRICTION] * (1.0 + p[ph.P_RESTITUTION]) * (-vn), 0.0) / vt
            vx = tx * keep - p[ph.P_RESTITUTION] * vn * nx
            vy = ty * keep - p[ph.P_RESTITUTION] * vn * ny
    return x, y, vx, vy, q, touched


def progress(edges: np.ndarray, s: np.ndarray, q: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Arc length ``[N]`` of points ``pos [N, 2]`` in quads ``q [N]`` (gate-distance interpolation)."""
    back, front = edges[q, BACK], edges[q, FRONT]
    db = back[:, 2] - back[:, 0] * pos[:, 0] - back[:, 1] * pos[:, 1]
    df = front[:, 2] - front[:, 0] * pos[:, 0] - front[:, 1] * pos[:, 1]
    total = db + df
    u = np.where(total > 1e-12, np.clip(db / np.where(total > 1e-12, total, 1.0), 0.0, 1.0), 0.5)
    return s[q] + (s[q + 1] - s[q]) * u


def lateral(center: np.ndarray, q: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Signed distance ``[N]`` (left positive) of ``pos [N, 2]`` from the centre segment lines of quads ``q``."""
    e = center[q + 1] - center[q]
    length = np.sqrt(e[:, 0] * e[:, 0] + e[:, 1] * e[:, 1])
    cross = e[:, 0] * (pos[:, 1] - center[q, 1]) - e[:, 1] * (pos[:, 0] - center[q, 0])
    return np.where(length < 1e-12, 0.0, cross / np.where(length < 1e-12, 1.0, length))


def step(world: Any, actions: np.ndarray) -> dict[str, np.ndarray]:
    """The state after one :meth:`World.step` of ``world``'s current state (``world`` is not changed).

    ``actions [N, 3]`` must be finite; they are clipped as the world clips them.
    """
    a = np.clip(np.asarray(actions, np.float64), -1.0, 1.0)
    if world.analog:
        gas, brake = np.clip(a[:, 0], 0.0, 1.0), np.clip(a[:, 1], 0.0, 1.0)
    else:
        gas, brake = (a[:, 0] > 0.0).astype(np.float64), (a[:, 1] > 0.0).astype(np.float64)
    st = {k: getattr(world, k).copy() for k in STATE}
    p, ratios, top = ph.car_params(world.car)
    track = world.track
    h = world.dt / world.sim.substeps
    x, y = st["pos"][:, 0].copy(), st["pos"][:, 1].copy()
    vx, vy = st["vel"][:, 0].copy(), st["vel"][:, 1].copy()
    yaw, steer, gear = st["yaw"], st["steer"], st["gear"].astype(np.int64)
    q0 = st["quad"].astype(np.int64)
    q = q0.copy()
    done, clock = st["finished"].copy(), st["race_ticks"].copy()
    contact = np.zeros(len(x), bool)
    yaw_rate, rpm = st["yaw_rate"], st["rpm"]
    cs, sn = np.cos(yaw), np.sin(yaw)
    for _ in range(world.sim.substeps):
        vx, vy, yaw_rate, steer, gear, rpm = dynamics(
            p, ratios, top, gas, brake, a[:, 2], cs, sn, vx, vy, steer, gear, h
        )
        q_prev = q.copy()
        for i in range(len(x)):
            x[i], y[i], vx[i], vy[i], q[i], hit = move(p, world.inset, int(q[i]), x[i], y[i], vx[i], vy[i], h)
            contact[i] |= hit
        yaw = yaw + yaw_rate * h
        yaw = np.where(yaw >= math.pi, yaw - 2.0 * math.pi, np.where(yaw < -math.pi, yaw + 2.0 * math.pi, yaw))
        cs, sn = rotate(cs, sn, yaw_rate * h)
        clock = np.where(done, clock, clock + 1)
        done = done | ((q_prev < track.finish) & (track.finish <= q))
    cps = np.sort(np.asarray(track.checkpoints, np.int64))
    count = np.searchsorted(cps, np.arange(track.n_quads), side="right")  # [M]
    ahead = count[q] - count[q0]
    pos = np.stack([x, y], axis=1)
    st.update(
        pos=pos, vel=np.stack([vx, vy], axis=1), yaw=yaw, yaw_rate=yaw_rate, steer=steer, gear=gear, rpm=rpm,
        quad=q, wall_contact=contact, finished=done, race_ticks=clock,
        cp_forward=np.maximum(ahead, 0), cp_backward=np.maximum(-ahead, 0),
        checkpoints=np.maximum(st["checkpoints"], count[q]),
        progress_s=progress(world.edges, track.s, q, pos), lateral=lateral(track.center, q, pos),
    )  # fmt: skip
    return st


def lidar(world: Any) -> np.ndarray:
    """LIDAR ``[N, beams]`` float32 of ``world``'s cars, beam by beam."""
    angles, origins = world.beam_angles, world.beam_origins
    out = np.empty((world.n_envs, len(angles)), np.float32)  # [N, B]
    for i in range(world.n_envs):
        x, y = world.pos[i]
        cs, sn = math.cos(world.yaw[i]), math.sin(world.yaw[i])
        for b, (angle, (f, left)) in enumerate(zip(angles, origins, strict=True)):
            ox, oy, oq = x, y, int(world.quad[i])
            if f != 0.0 or left != 0.0:
                dx, dy = f * cs - left * sn, f * sn + left * cs
                length = math.sqrt(dx * dx + dy * dy)
                t, oq, _ = trace(world.edges, oq, x, y, dx / length, dy / length, length)
                ox, oy = x + dx / length * t, y + dy / length * t
            ca, sa = math.cos(angle), math.sin(angle)
            t, _, _ = trace(world.edges, oq, ox, oy, cs * ca - sn * sa, sn * ca + cs * sa, world.lidar_cfg.range)
            out[i, b] = t
    return out
