"""Planar car physics: engine and gearbox, brakes, drag, tyre grip with sliding, wall contacts.

One sub-step of length ``dt`` for one car (docs/simulator.md has the equations):

1. steering moves towards the command at ``steer_rate`` full-lock units per second;
2. the automatic gearbox picks the gear from the engine speed
   ``rpm = max(idle_rpm, max_rpm * |v_long| / v_top[gear])``;
3. the tyres ask for a longitudinal acceleration (engine ``engine_force *
   gear_ratio / mass`` up to ``max_rpm``, brakes, or reverse drive when braking
   at a standstill) and a lateral one that turns the velocity with the heading
   and removes sideways slip; the pair is clipped to the friction circle of
   radius ``mu(v) g`` with ``mu = grip + downforce * |v| / 100``, times
   ``slide_grip`` while the tyres slide (sideways speed above ``slide_speed``);
4. the heading turns at the kinematic bicycle rate ``v_long tan(delta) / wheelbase``,
   capped at ``yaw_overshoot`` times the rate the grip allows (a cap above 1
   lets full steering break traction: the velocity then lags the heading, a drift),
   plus a self-aligning term ``slip_align * v_lat / |v|``;
5. drag ``drag * v^2`` and ``rolling_resistance`` slow the car along its velocity;
6. the car's centre moves along its velocity by a :func:`~evo_rl.sim.geometry.trace`
   over the strip inset by ``half_width``; at a wall it stops on the wall, the speed
   into the wall bounces back times ``wall_restitution``, the speed along the wall
   loses ``wall_friction`` times the impulse (Coulomb friction) and the rest of the
   sub-step continues with the new velocity (the car slides along the wall).

:func:`accel_limits` gives the same model's acceleration limits for speed profiles.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from evo_rl.config import CarConfig, RandomiseConfig
from evo_rl.sim.geometry import HIT_NONE, quad_lateral, quad_progress, trace
from evo_rl.sim.kernels import PARALLEL_CARS, car_loop, track_slices

GRAVITY = 9.81  # m/s²
SLIP_TIME = 0.05  # s over which gripping tyres remove sideways slip
STOP_SPEED = 1.0  # m/s: below this forward speed the brake pedal drives backwards
WALL_GAP = 1e-7  # m a car is lifted off a wall it stopped on, so it can slide along it
MAX_CONTACTS = 3  # wall contacts handled within one sub-step; the rest of the motion is dropped

# the World's per-car state arrays, in the order the kernels take them
STATE = ("pos", "yaw", "vel", "yaw_rate", "steer", "gear", "rpm", "quad", "progress_s", "lateral", "wall_contact",
         "checkpoints", "cp_forward", "cp_backward", "finished", "race_ticks")  # fmt: skip

# indices into the parameter vector built by car_params (compile-time constants in the kernels)
P_INV_MASS = 0
P_ENGINE = 1
P_BRAKE = 2
P_REVERSE = 3
P_REVERSE_SPEED = 4
P_DRAG = 5
P_ROLL = 6
P_GRIP = 7
P_DOWNFORCE = 8
P_SLIDE_GRIP = 9
P_SLIDE_SPEED = 10
P_TAN_STEER_L = 11
P_OVERSHOOT = 12
P_ALIGN = 13
P_STEER_RATE = 14
P_WALL_FRICTION = 15
P_RESTITUTION = 16
P_IDLE_RPM = 17
P_SHIFT_UP = 18
P_SHIFT_DOWN = 19
P_MAX_RPM = 20
N_PARAMS = 21


def car_params(car: CarConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The car as kernel arrays: ``(params [N_PARAMS], gear_ratios [G], gear_top_speed [G])``.

    ``gear_top_speed[g]`` is the speed at ``max_rpm`` in gear ``g``: ``top_speed``
    in the last gear, higher gears being longer by the ratio of their force multipliers.
    """
    p = np.zeros(N_PARAMS, np.float64)  # [N_PARAMS]
    p[P_INV_MASS] = 1.0 / car.mass
    p[P_ENGINE] = car.engine_force
    p[P_BRAKE] = car.brake_force
    p[P_REVERSE] = car.reverse_force
    p[P_REVERSE_SPEED] = car.reverse_speed
    p[P_DRAG] = car.drag
    p[P_ROLL] = car.rolling_resistance
    p[P_GRIP] = car.grip
    p[P_DOWNFORCE] = car.downforce / 100.0
    p[P_SLIDE_GRIP] = car.slide_grip
    p[P_SLIDE_SPEED] = car.slide_speed
    p[P_TAN_STEER_L] = math.tan(math.radians(car.max_steer_deg)) / car.wheelbase
    p[P_OVERSHOOT] = car.yaw_overshoot
    p[P_ALIGN] = car.slip_align
    p[P_STEER_RATE] = car.steer_rate
    p[P_WALL_FRICTION] = car.wall_friction
    p[P_RESTITUTION] = car.wall_restitution
    p[P_IDLE_RPM] = car.idle_rpm
    p[P_SHIFT_UP] = car.shift_up_rpm
    p[P_SHIFT_DOWN] = car.shift_down_rpm
    p[P_MAX_RPM] = car.max_rpm
    ratios = np.asarray(car.gear_ratios, np.float64)  # [G]
    top = car.top_speed * ratios[-1] / ratios  # [G]
    return p, ratios, top


def randomised_params(base: np.ndarray, k: int, rng: np.random.Generator, ranges: RandomiseConfig) -> np.ndarray:
    """``k`` rows of car parameters ``[k, N_PARAMS]``: ``base`` with each randomised quantity multiplied by a
    uniform draw from its range (``randomise.grip``, ``engine``, ``mass``, ``drag``, ``steer_rate``)."""
    out = np.tile(base, (k, 1))  # [k, N_PARAMS]
    for name, col, power in (
        ("grip", P_GRIP, 1.0),
        ("engine", P_ENGINE, 1.0),
        ("mass", P_INV_MASS, -1.0),  # the kernels hold 1 / mass
        ("drag", P_DRAG, 1.0),
        ("steer_rate", P_STEER_RATE, 1.0),
    ):
        r = getattr(ranges, name)
        if r is not None:
            out[:, col] *= rng.uniform(r[0], r[1], k) ** power
    return out


def _auto_gear(v: np.ndarray, car: CarConfig) -> np.ndarray:
    """The gear the automatic box holds while accelerating through speed ``v [K]``."""
    ratios = np.asarray(car.gear_ratios, np.float64)
    top = car.top_speed * ratios[-1] / ratios  # [G]
    rpm = car.max_rpm * np.abs(v)[:, None] / top[None, :]  # [K, G]
    below = rpm <= car.shift_up_rpm  # [K, G]
    return np.where(below.any(axis=1), below.argmax(axis=1), len(ratios) - 1)  # [K]


def accel_limits(v: np.ndarray, car: CarConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Acceleration limits of the car at speeds ``v [K]`` (m/s), for speed profiles.

    Returns ``(max_forward_accel, max_brake_decel, max_lateral_accel)``, each ``[K]``
    in m/s²: engine force in the gear the automatic box holds minus drag and
    rolling resistance (capped by grip, may be negative above top speed); brakes
    (capped by grip) plus drag and rolling resistance; tyre grip ``mu(v) g``.
    """
    v = np.abs(np.asarray(v, np.float64)).reshape(-1)
    grip = (car.grip + car.downforce * v / 100.0) * GRAVITY  # [K]
    ratios = np.asarray(car.gear_ratios, np.float64)
    gear = _auto_gear(v, car)
    top = car.top_speed * ratios[-1] / ratios
    engine = np.where(car.max_rpm * v / top[gear] < car.max_rpm, car.engine_force * ratios[gear], 0.0)  # [K] N
    resist = (car.drag * v * v + car.rolling_resistance) / car.mass  # [K]
    forward = np.minimum(engine / car.mass, grip) - resist
    brake = np.minimum(car.brake_force / car.mass, grip) + resist
    return forward, brake, grip


@numba.njit(cache=True)
def pedal(a: float, analog: bool) -> float:
    """Pedal pressure from an action value: ``clip(a, 0, 1)`` (analog) or ``a > 0`` (binary)."""
    if analog:
        return min(max(a, 0.0), 1.0)
    return 1.0 if a > 0.0 else 0.0


@numba.njit(cache=True)
def dynamics(
    p: np.ndarray,
    ratios: np.ndarray,
    top: np.ndarray,
    gas: float,
    brake: float,
    steer_cmd: float,
    cs: float,
    sn: float,
    vx: float,
    vy: float,
    steer: float,
    gear: int,
    dt: float,
) -> tuple[float, float, float, float, int, float]:
    """Forces of one sub-step. Returns ``(vx, vy, yaw_rate, steer, gear, rpm)`` after it.

    ``gas``, ``brake`` in ``[0, 1]``; ``steer_cmd`` in ``[-1, 1]`` (+1 full right);
    ``(cs, sn)`` the heading's unit vector.
    """
    # steering, rate-limited
    step = p[P_STEER_RATE] * dt
    steer = steer + min(max(steer_cmd - steer, -step), step)

    v_long = vx * cs + vy * sn
    v_lat = -vx * sn + vy * cs
    speed = math.sqrt(vx * vx + vy * vy)

    # automatic gearbox
    n_gears = ratios.shape[0]
    a_long = abs(v_long)
    rpm = max(p[P_IDLE_RPM], p[P_MAX_RPM] * a_long / top[gear])
    if gear < n_gears - 1 and rpm > p[P_SHIFT_UP]:
        gear += 1
    elif gear > 0 and rpm < p[P_SHIFT_DOWN]:
        gear -= 1
    rpm = max(p[P_IDLE_RPM], p[P_MAX_RPM] * a_long / top[gear])

    # tyre grip: friction circle, larger with speed (downforce), smaller while sliding
    grip = (p[P_GRIP] + p[P_DOWNFORCE] * speed) * GRAVITY
    a_max = grip
    if abs(v_lat) > p[P_SLIDE_SPEED]:
        a_max = grip * p[P_SLIDE_GRIP]

    # longitudinal request: engine, brakes or reverse drive
    ax = 0.0
    if gas > 0.0 and (rpm < p[P_MAX_RPM] or v_long < 0.0):
        ax += gas * p[P_ENGINE] * ratios[gear] * p[P_INV_MASS]
    if brake > 0.0:
        if v_long > STOP_SPEED:
            ax -= brake * p[P_BRAKE] * p[P_INV_MASS]
        elif v_long > -p[P_REVERSE_SPEED]:
            ax -= brake * p[P_REVERSE] * p[P_INV_MASS]

    # heading: kinematic bicycle rate, capped relative to what grip allows, plus self-alignment
    turn = min(a_long * p[P_TAN_STEER_L], p[P_OVERSHOOT] * grip / max(speed, 1.0))
    direction = 1.0 if v_long >= 0.0 else -1.0
    yaw_rate = -steer * turn * direction + p[P_ALIGN] * direction * v_lat / max(speed, 1.0)

    # lateral request: turn the velocity with the heading and remove slip
    kill = min(1.0 / SLIP_TIME, 1.0 / dt)
    ay = yaw_rate * v_long - v_lat * kill
    total = math.sqrt(ax * ax + ay * ay)
    if total > a_max:
        scale = a_max / total
        ax *= scale
        ay *= scale

    vx += (ax * cs - ay * sn) * dt
    vy += (ax * sn + ay * cs) * dt

    # drag and rolling resistance along the velocity
    speed = math.sqrt(vx * vx + vy * vy)
    if speed > 0.0:
        resist = (p[P_DRAG] * speed * speed + p[P_ROLL]) * p[P_INV_MASS] * dt
        factor = max(speed - resist, 0.0) / speed
        vx *= factor
        vy *= factor
    return vx, vy, yaw_rate, steer, gear, rpm


@numba.njit(cache=True)
def move(
    p: np.ndarray, inset: np.ndarray, q: int, x: float, y: float, vx: float, vy: float, dt: float
) -> tuple[float, float, float, float, int, bool]:
    """Move the car's centre by ``v dt`` inside the inset strip, sliding along walls it meets.

    Returns ``(x, y, vx, vy, quad, wall_hit)``. At a wall the car stops on it (lifted
    :data:`WALL_GAP` off it), its velocity takes the wall response and the rest of
    the sub-step continues with the new velocity, at most :data:`MAX_CONTACTS` times.
    """
    remaining = dt
    touched = False
    for _ in range(MAX_CONTACTS):
        dx = vx * remaining
        dy = vy * remaining
        length = math.sqrt(dx * dx + dy * dy)
        if length <= 0.0:
            break
        ux = dx / length
        uy = dy / length
        t, q, hit = trace(inset, q, x, y, ux, uy, length)
        x += ux * t
        y += uy * t
        if hit == HIT_NONE:
            break
        touched = True
        # inward unit normal of the wall reached
        nx = -inset[q, hit - 1, 0]
        ny = -inset[q, hit - 1, 1]
        x += WALL_GAP * nx
        y += WALL_GAP * ny
        remaining *= 1.0 - t / length
        vn = vx * nx + vy * ny
        if vn < 0.0:
            tx = vx - vn * nx
            ty = vy - vn * ny
            vt = math.sqrt(tx * tx + ty * ty)
            keep = 0.0
            if vt > 0.0:
                keep = max(vt - p[P_WALL_FRICTION] * (1.0 + p[P_RESTITUTION]) * (-vn), 0.0) / vt
            vx = tx * keep - p[P_RESTITUTION] * vn * nx
            vy = ty * keep - p[P_RESTITUTION] * vn * ny
    return x, y, vx, vy, q, touched


@numba.njit(cache=True)
def rotate(cs: float, sn: float, angle: float) -> tuple[float, float]:
    """The unit vector ``(cs, sn)`` turned by ``angle``; small angles by their Taylor series (error < 1e-12)."""
    a2 = angle * angle
    if a2 < 0.01:
        c = 1.0 - a2 / 2.0 + a2 * a2 / 24.0 - a2 * a2 * a2 / 720.0
        s = angle * (1.0 - a2 / 6.0 + a2 * a2 / 120.0 - a2 * a2 * a2 / 5040.0)
    else:
        c = math.cos(angle)
        s = math.sin(angle)
    return cs * c - sn * s, sn * c + cs * s


@numba.njit(cache=True)
def wrap_angle(a: float) -> float:
    """Angle brought back into ``[-pi, pi)`` when a sub-step took it just outside."""
    if a >= math.pi:
        return a - 2.0 * math.pi
    if a < -math.pi:
        return a + 2.0 * math.pi
    return a


@numba.njit(cache=True)
def step_car(
    i: int, tables: tuple, state: tuple, actions: np.ndarray, finish: int, analog: bool, h: float, substeps: int
) -> None:
    """One control step of car ``i`` in ``substeps`` sub-steps of ``h`` seconds, in place.

    ``tables = (params, gear_ratios, gear_top_speed, inset_edges, edges, s, center, cp_count)``
    with ``cp_count[q]`` the number of checkpoint gates at or behind quad ``q``'s back gate;
    ``state`` holds the World's arrays in the order of :data:`STATE`.
    """
    p, ratios, top, inset, edges, s, center, cp_count = tables
    (pos, yaw, vel, yaw_rate, steer, gear, rpm, quad, progress_s, lateral, wall_contact, checkpoints,
     cp_forward, cp_backward, finished, race_ticks) = state  # fmt: skip
    gas = pedal(actions[i, 0], analog)
    brake = pedal(actions[i, 1], analog)
    cmd = actions[i, 2]
    x = pos[i, 0]
    y = pos[i, 1]
    vx = vel[i, 0]
    vy = vel[i, 1]
    psi = yaw[i]
    st = steer[i]
    g = gear[i]
    q0 = quad[i]
    q = q0
    r = rpm[i]
    w = yaw_rate[i]
    done = finished[i]
    clock = race_ticks[i]  # physics sub-steps of this run before the finish
    contact = False
    cs = math.cos(psi)
    sn = math.sin(psi)
    for _ in range(substeps):
        vx, vy, w, st, g, r = dynamics(p, ratios, top, gas, brake, cmd, cs, sn, vx, vy, st, g, h)
        q_prev = q
        x, y, vx, vy, q, hit = move(p, inset, q, x, y, vx, vy, h)
        psi = wrap_angle(psi + w * h)
        cs, sn = rotate(cs, sn, w * h)
        contact = contact or hit
        if not done:
            clock += 1
            if q_prev < finish <= q:
                done = True
    pos[i, 0] = x
    pos[i, 1] = y
    vel[i, 0] = vx
    vel[i, 1] = vy
    yaw[i] = psi
    yaw_rate[i] = w
    steer[i] = st
    gear[i] = g
    rpm[i] = r
    quad[i] = q
    wall_contact[i] = contact
    finished[i] = done
    race_ticks[i] = clock
    ahead = cp_count[q] - cp_count[q0]
    cp_forward[i] = max(ahead, 0)
    cp_backward[i] = max(-ahead, 0)
    checkpoints[i] = max(checkpoints[i], cp_count[q])
    progress_s[i] = quad_progress(edges, s, q, x, y)
    lateral[i] = quad_lateral(center, q, x, y)


@car_loop(PARALLEL_CARS)
def step_cars(
    tables: tuple,
    state: tuple,
    actions: np.ndarray,
    track_id: np.ndarray,
    quad_off: np.ndarray,
    finish: np.ndarray,
    analog: bool,
    dt: float,
    substeps: int,
) -> None:
    """One control step of every car. ``actions [N, 3]`` float64, finite and clipped.

    ``tables = (params [N, N_PARAMS], gear_ratios, gear_top_speed, inset, edges, s, center, cp_count)`` with the
    track arrays of a :class:`~evo_rl.sim.trackset.PackedTracks`: car ``i`` drives track ``track_id[i]``
    (quads ``quad_off[k]..quad_off[k+1]``, finish quad ``finish[k]``) with its own car parameters ``params[i]``.
    """
    params, ratios, top, inset, edges, s, center, cp_count = tables
    for i in numba.prange(actions.shape[0]):
        k = track_id[i]
        q0, q1, c0, c1 = track_slices(quad_off, k)
        car = (params[i], ratios, top, inset[q0:q1], edges[q0:q1], s[c0:c1], center[c0:c1], cp_count[q0:q1])
        step_car(i, car, state, actions, finish[k], analog, dt / substeps, substeps)
