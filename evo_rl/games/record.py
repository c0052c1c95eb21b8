"""Recording one lap of TrackMania 2020: a reference trajectory and a simulator track from one drive.

``evo-rl game tm2020 record-reward`` and ``record-track`` (docs/games.md) drive the map once and keep
the car's positions from the telemetry:

- :func:`record_lap` starts a run from the start line (the respawn command in the EVO RL protocol; in
  TMRL's, the respawn button or the player, seen as the driven distance going back to 0), samples the
  car position of every record it sees, and stops at the finish line or after ``max_seconds`` real
  seconds. A person drives by hand, or a *driver* (``CarState -> (gas, brake, steer)``) drives through
  an input backend: a virtual game's :class:`~evo_rl.games.control.VirtualInput` with
  :class:`CentrelineDriver` in the tests and with ``--autopilot``.
- :func:`reference_points` resamples the lap evenly (:mod:`evo_rl.rewards.reference_trajectory`), as
  ``episode.reference: FILE.npy`` reads it.
- :func:`track_from_lap` turns the lap into a simulator track (:func:`~evo_rl.sim.centreline.track_from_centreline`)
  with the start line where the car spawned, the finish line where it finished and the checkpoint gates
  where the telemetry counted them.
- :func:`write_atomic` writes files as a temporary file then a rename, so a failed command leaves
  nothing half-written.

Positions are the games': metres, ``(x, y, z)`` with ``y`` up; the plane ``(x, z)`` is the simulator's ``(x, y)``.
"""

from __future__ import annotations

import math
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from evo_rl.config import CarConfig
from evo_rl.envs.source import CarState
from evo_rl.errors import EvoError, TrackError
from evo_rl.games.control import InputBackend
from evo_rl.games.errors import GameConnectionError, GameError
from evo_rl.games.tm2020.client import Telemetry, TM2020Client
from evo_rl.rewards.reference_trajectory import SPACING, resample, save_reference
from evo_rl.sim.centreline import track_from_centreline
from evo_rl.sim.physics import GRAVITY
from evo_rl.sim.track import Track, even_checkpoints
from evo_rl.sim.world import START_AHEAD

Driver = Callable[[CarState], tuple[float, float, float]]  # car state -> (gas 0..1, brake 0..1, steer -1..1)

# Road width of a recorded track, m (wall to wall). The telemetry says nothing about the road, so this is
# a default, not a measurement: the width of the simulator's built-in tracks, whose blocks sit on
# TrackMania's 32 m grid (docs/tracks.md). A map with narrower roads, or a lap that cuts a hairpin
# tighter than width / 2, needs a smaller --width.
DEFAULT_WIDTH = 20.0
LEAD = 10.0  # m of straight road added before the spawn point of a recorded track (its start block)
RUNOFF = 20.0  # m of straight road added after the finish point of a recorded track (its run-off)
TRACK_SPACING = 3.0  # m between the cross-sections of a recorded track
TRACK_SMOOTHING = 4.0  # m, Gaussian smoothing of a recorded centreline
RESTART_DISTANCE = 1.0  # m: a TMRL record with less driven distance than this starts a run
RESTART_DROP_MS = 50  # ms: the race time going back by more than this is a new run (a respawn)
JUMP_M = 10.0  # m: a position jump larger than this plus MAX_SPEED * dt is a respawn at a checkpoint
MAX_SPEED = 150.0  # m/s, faster than any car goes: bounds the distance between two records
BACKTRACK_WINDOW = 30.0  # m of the kept path behind the car searched for where a backwards stretch ends


@dataclass(frozen=True)
class RecordedLap:
    """One run as the telemetry showed it, one row per record sampled (the spawn first)."""

    positions: np.ndarray  # [T, 3] game positions (x, y up, z), m
    times_ms: np.ndarray  # [T] int64 race time (evo) or clock time since the run started (tmrl), ms
    checkpoints: np.ndarray  # [T] int64 checkpoints passed this run (evo; zeros with tmrl)
    checkpoints_total: int | None  # checkpoints of the map (evo), None with tmrl
    finished: bool  # the run crossed the finish line
    lap_time: float | None  # s at the finish: race time (evo) or clock time (tmrl); None if not finished
    time_source: Literal["race", "clock"]  # what times_ms and lap_time count
    protocol: str  # "evo" or "tmrl"
    records: int  # records received while recording (the sampled ones are those that arrived newest)
    restarts: int  # runs restarted while recording (a respawn at the start line), each dropping the samples
    rewinds: int  # respawns at a checkpoint, each cutting the samples back to where the car reappeared

    @property
    def length(self) -> float:
        """Distance along the sampled positions, m."""
        return float(np.linalg.norm(np.diff(self.positions, axis=0), axis=1).sum())

    def checkpoint_points(self) -> np.ndarray:
        """Game positions ``[C, 3]`` of the first sample after each checkpoint the run passed."""
        k = np.flatnonzero(np.diff(self.checkpoints) > 0) + 1
        return self.positions[k]


# --------------------------------------------------------------------------- recording


def record_lap(
    client: TM2020Client,
    inputs: InputBackend | None = None,
    driver: Driver | None = None,
    max_seconds: float = 300.0,
    timeout: float = 2.0,
    say: Callable[[str], None] | None = None,
) -> RecordedLap:
    """Record one run from the start line to the finish (or ``max_seconds`` real seconds).

    ``driver`` (with ``inputs``, the backend its inputs go to) is called with the car state of every
    record sampled; without one the player drives. ``inputs`` alone only presses the respawn button
    (TMRL protocol). A gap of ``timeout`` s without a record, a dropped connection or a closed input
    port raises :class:`GameConnectionError`. ``say`` gets the instructions for the player.
    """
    if driver is not None and inputs is None:
        raise EvoError("a driver needs an input backend to drive through")
    if not (math.isfinite(max_seconds) and max_seconds > 0):
        raise EvoError(f"--max-seconds {max_seconds}: give a positive number of seconds")
    tell = say if say is not None else (lambda _m: None)
    evo = client.protocol == "evo"
    try:
        t = client.wait_newer(-1, timeout)
    except GameConnectionError as e:
        raise GameConnectionError(f"no telemetry, so no lap was recorded: {e}") from e
    connection = t.connection
    deadline = time.monotonic() + max_seconds
    if inputs is not None:
        inputs.release()
    try:
        if evo:
            try:
                t = client.respawn(timeout)
            except GameConnectionError as e:
                raise GameConnectionError(f"the respawn that starts the lap failed: {e}") from e
            tell("respawned at the start line: drive the lap now; recording stops at the finish line")
        else:
            if inputs is not None:
                inputs.respawn()
            else:
                tell("TMRL's plugin takes no commands: press the game's respawn key to start the lap")
            t = _wait_restart(client, t, timeout, deadline, connection)
            tell("the run started: drive the lap now; recording stops at the finish line")
        return _record_run(client, t, inputs, driver, timeout, deadline, connection, tell)
    finally:
        if inputs is not None:
            try:
                inputs.release()
            except GameError:
                pass  # the input port is gone; the error that matters is already raised


def _wait_restart(client: TM2020Client, t: Telemetry, timeout: float, deadline: float, connection: int) -> Telemetry:
    """The first TMRL record of a new run: driven distance back near 0, not finished."""
    while not (t.record.distance < RESTART_DISTANCE and t.record.finished == 0.0):
        if time.monotonic() > deadline:
            raise GameError(
                f"no new run started (the driven distance stayed at {t.record.distance:.0f} m): "
                "press the game's respawn key, or raise --max-seconds"
            )
        t = _next(client, t, timeout, connection, "before the lap started")
    return t


def _next(client: TM2020Client, t: Telemetry, timeout: float, connection: int, when: str) -> Telemetry:
    try:
        new = client.wait_newer(t.seq, timeout)
    except GameConnectionError as e:
        raise GameConnectionError(f"the telemetry stopped {when}: {e}") from e
    if new.connection != connection:
        raise GameConnectionError(
            f"the connection to the game dropped and came back {when} (the game, the plugin or the virtual game "
            "restarted); record the lap again"
        )
    return new


def _record_run(
    client: TM2020Client,
    t: Telemetry,
    inputs: InputBackend | None,
    driver: Driver | None,
    timeout: float,
    deadline: float,
    connection: int,
    tell: Callable[[str], None],
) -> RecordedLap:
    evo = client.protocol == "evo"
    positions: list[tuple[float, float, float]] = []
    times: list[int] = []
    cps: list[int] = []
    run_start = t.received_at  # clock time of the run's first record (tmrl's race time)
    armed = False  # finished only counts after a record of this run that is not finished
    records = restarts = rewinds = 0
    last_time: int | None = None
    last_distance = 0.0
    while True:
        rec = t.record
        records += 1
        state = t.car_state()
        distance = float(getattr(rec, "distance", 0.0))
        new_run = (
            last_time is not None and state.race_time_ms < last_time - RESTART_DROP_MS
            if evo
            else distance < last_distance - RESTART_DISTANCE
        )
        if new_run:
            positions.clear()
            times.clear()
            cps.clear()
            restarts += 1
            armed = False
            run_start = t.received_at
            tell("a new run started (respawn at the start line): recording again from here")
        now_ms = state.race_time_ms if evo else int(round((t.received_at - run_start) * 1000.0))
        last_time, last_distance = now_ms, distance
        pos = state.position
        if positions:
            jump = math.dist(pos, positions[-1])
            if jump > JUMP_M + MAX_SPEED * max(now_ms - times[-1], 0) / 1000.0:
                keep = _nearest(positions, pos) + 1  # respawned at a checkpoint: drive on from where it reappeared
                if keep < len(positions):
                    del positions[keep:], times[keep:], cps[keep:]
                    rewinds += 1
        if now_ms >= 0:  # not during the start countdown
            positions.append(pos)
            times.append(now_ms)
            cps.append(state.checkpoints)
        if driver is not None and inputs is not None:
            try:
                inputs.apply(*driver(state))
            except GameConnectionError as e:
                raise GameConnectionError(f"the inputs stopped mid-lap ({len(positions)} points): {e}") from e
        if not state.finished:
            armed = True
        elif armed:
            lap_time = now_ms / 1000.0
            return _lap(positions, times, cps, rec, True, lap_time, evo, records, restarts, rewinds)
        if time.monotonic() > deadline:
            tell("--max-seconds reached before the finish line")
            return _lap(positions, times, cps, rec, False, None, evo, records, restarts, rewinds)
        t = _next(
            client, t, timeout, connection, f"mid-lap ({len(positions)} points, {now_ms / 1000:.1f} s into the run)"
        )


def _nearest(positions: Sequence[tuple[float, float, float]], pos: tuple[float, float, float]) -> int:
    arr = np.asarray(positions, np.float64)  # [T, 3]
    return int(np.argmin(((arr - np.asarray(pos)) ** 2).sum(axis=1)))


def _lap(
    positions: list[tuple[float, float, float]],
    times: list[int],
    cps: list[int],
    last: object,
    finished: bool,
    lap_time: float | None,
    evo: bool,
    records: int,
    restarts: int,
    rewinds: int,
) -> RecordedLap:
    return RecordedLap(
        positions=np.asarray(positions, np.float64).reshape(-1, 3),
        times_ms=np.asarray(times, np.int64),
        checkpoints=np.asarray(cps, np.int64),
        checkpoints_total=int(getattr(last, "checkpoints_total", 0)) if evo else None,
        finished=finished,
        lap_time=lap_time,
        time_source="race" if evo else "clock",
        protocol="evo" if evo else "tmrl",
        records=records,
        restarts=restarts,
        rewinds=rewinds,
    )


# --------------------------------------------------------------------------- what a lap becomes


def forward_path(positions: np.ndarray, window: float = BACKTRACK_WINDOW) -> np.ndarray:
    """The lap's positions ``[T, 3]`` without the stretches where the car went backwards, ``[T', 3]``.

    A car that bounces off a wall, reverses after a crash or jitters on the spot draws its path
    back over itself; a reference or a centre line must only go forwards. Walking the samples, a
    sample nearer to an earlier kept one (within the last ``window`` m of the kept path) than to the
    last kept one cuts the kept path back to that earlier sample. Distances are 3D (a loop of the
    road passes over itself); repeated positions are dropped.
    """
    pts = np.asarray(positions, np.float64).reshape(-1, 3)
    if len(pts) == 0:
        return pts
    kept = np.empty_like(pts)  # [T, 3] the kept path in its first n rows
    arc = np.empty(len(pts))  # [T] arc length of each kept sample, m
    kept[0], arc[0], n = pts[0], 0.0, 1
    for q in pts[1:]:
        lo = int(np.searchsorted(arc[:n], arc[n - 1] - window))
        d = np.sqrt(((kept[lo:n] - q) ** 2).sum(axis=1))
        j = lo + int(np.argmin(d))
        n = j + 1  # cut back to the nearest kept sample (nothing cut when it is the last one)
        if d[j - lo] > 1e-6:
            arc[n] = arc[n - 1] + float(d[j - lo])
            kept[n] = q
            n += 1
    return kept[:n].copy()


def reference_points(positions: np.ndarray, spacing: float = SPACING) -> np.ndarray:
    """The lap's positions ``[T, 3]``, going forwards only (:func:`forward_path`), resampled every ``spacing`` m."""
    if not (math.isfinite(spacing) and spacing > 0):
        raise EvoError(f"--spacing {spacing}: give a positive number of metres")
    pts = forward_path(positions)
    if len(pts) < 2:
        raise GameError(f"the lap has no length ({len(positions)} samples, the car never moved): nothing to save")
    return resample(pts, spacing)


def track_from_lap(
    positions: np.ndarray,
    width: float = DEFAULT_WIDTH,
    name: str = "recorded",
    checkpoint_points: np.ndarray | None = None,
    n_checkpoints: int = 4,
    spacing: float = TRACK_SPACING,
    smoothing: float = TRACK_SMOOTHING,
) -> Track:
    """A simulator track around a lap's positions ``[T, 3]`` (spawn first, finish last).

    The centreline is the lap going forwards only (:func:`forward_path`), smoothed and resampled (:func:`track_from_centreline`), with
    :data:`LEAD` m of straight road before the spawn and :data:`RUNOFF` m after the finish; the start
    line lies ``START_AHEAD`` m behind the spawn, so the simulator's cars start where the game's car
    spawned, and the finish line where the lap ended. ``checkpoint_points`` ``[C, 3]`` (where the
    telemetry counted the checkpoints) place the gates; without them ``n_checkpoints`` gates are spread
    evenly. :class:`TrackError` says what does not fit.
    """
    pts = forward_path(positions)
    if len(pts) < 2:
        raise TrackError("the lap has no length: the car never moved")
    plane = pts[:, [0, 2]]  # [T, 2] simulator (x, y)
    keep = np.concatenate([[True], np.linalg.norm(np.diff(plane, axis=0), axis=1) > 1e-6])
    plane = plane[keep]
    if len(plane) < 2:
        raise TrackError("the lap has no length in the horizontal plane: the car never moved")
    height = float(pts[:, 1].mean())
    head, tail = _end_direction(plane), _end_direction(plane[::-1])
    before = plane[0] + np.outer(np.arange(LEAD, 0.0, -1.0), -head)  # [L, 2] back along the first heading
    after = plane[-1] + np.outer(np.arange(1.0, RUNOFF + 0.5, 1.0), -tail)  # [R, 2] on along the last heading
    line = np.concatenate([before, plane, after])
    track = track_from_centreline(
        line, width, name, 0, spacing, smoothing, LEAD - START_AHEAD, RUNOFF, height
    )  # fmt: skip
    if checkpoint_points is not None and len(checkpoint_points):
        cps = _gates_at(track, np.asarray(checkpoint_points, np.float64).reshape(-1, 3)[:, [0, 2]])
    else:
        cps = even_checkpoints(track.s, track.start, track.finish, n_checkpoints)
    out = Track(track.name, track.left, track.right, track.width, track.start, track.finish, cps, track.height)
    out.validate()
    return out


def _end_direction(plane: np.ndarray, span: float = 5.0) -> np.ndarray:
    """Unit direction from ``plane[0]`` to the first point ``span`` m away (or the farthest one)."""
    d = np.linalg.norm(plane - plane[0], axis=1)
    far = np.flatnonzero(d >= span)
    v = plane[far[0] if len(far) else int(np.argmax(d))] - plane[0]
    return v / np.linalg.norm(v)


def _gates_at(track: Track, points: np.ndarray) -> np.ndarray:
    """Cross-sections nearest to ``points`` ``[C, 2]``, in driving order, strictly between start and finish."""
    inner = np.arange(track.start + 1, track.finish)
    gates: list[int] = []
    for q in points:
        lo = gates[-1] + 1 if gates else track.start + 1
        cand = inner[inner >= lo]
        if len(cand) == 0:
            raise TrackError(f"checkpoint {len(gates) + 1} of the lap lies past the finish line of the recorded track")
        gates.append(int(cand[np.argmin(np.linalg.norm(track.center[cand] - q, axis=1))]))
    return np.asarray(gates, np.int64)


# --------------------------------------------------------------------------- files


def check_output(path: str | Path, suffixes: Sequence[str], what: str) -> Path:
    """``path`` if a file with one of ``suffixes`` can be written there; checked before a lap is driven."""
    out = Path(path).expanduser()
    if out.suffix.lower() not in suffixes:
        raise EvoError(f"{what} {out}: the file name must end in {' or '.join(suffixes)}")
    if not out.parent.is_dir():
        raise EvoError(f"{what} {out}: the folder {out.parent} does not exist")
    if out.is_dir():
        raise EvoError(f"{what} {out} is a folder; give a file name")
    return out


def write_atomic(files: Sequence[tuple[Path, Callable[[Path], None]]]) -> None:
    """Write every ``(path, writer)``: each writer writes a temporary file next to its path, then all are renamed.

    A writer that fails leaves no file behind, neither its own nor the others'.
    """
    temps: list[tuple[Path, Path]] = []
    try:
        for path, writer in files:
            # a fresh name in the same folder (so the rename is atomic), created by the writer with the usual mode
            tmp = path.with_name(f".{path.stem}.{os.getpid()}-{uuid.uuid4().hex[:12]}.tmp{path.suffix}")
            temps.append((tmp, path))
            writer(tmp)
        for tmp, path in temps:
            os.replace(tmp, path)
    finally:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)


def save_reference_atomic(path: Path, points3: np.ndarray) -> None:
    """:func:`~evo_rl.rewards.reference_trajectory.save_reference`, written atomically."""
    write_atomic([(path, lambda tmp: save_reference(tmp, points3))])


# --------------------------------------------------------------------------- a driver for virtual games


class CentrelineDriver:
    """Pure pursuit along a track's centre line, pedals towards a speed profile: drives a virtual game.

    A :data:`Driver` for the simulator's tracks: steering points the car at the centre-line point a
    speed-dependent distance ahead (Coulter, CMU-RI-TR-92-01, 1992); the target speed keeps the lateral
    acceleration at ``lateral_g`` times the tyre grip and brakes at ``brake_g`` times it ahead of
    curves. ``heading=False`` (TMRL's records carry none) estimates the heading from the car's motion.
    """

    def __init__(
        self,
        track: Track,
        car: CarConfig | None = None,
        heading: bool = True,
        max_speed: float = 35.0,  # m/s
        lateral_g: float = 0.5,  # fraction of the grip cornering may use
        brake_g: float = 0.4,  # fraction of the grip braking may use
        lookahead_min: float = 4.0,  # m, pursuit distance at rest
        lookahead_time: float = 0.25,  # s, extra pursuit distance per m/s
    ) -> None:
        car = car or CarConfig()
        c = track.center[track.start :]
        s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(c, axis=0), axis=1))])
        u = np.arange(0.0, s[-1], 1.0)  # [K] every metre
        self.points = np.stack([np.interp(u, s, c[:, 0]), np.interp(u, s, c[:, 1])], axis=1)  # [K, 2] m
        d = np.diff(self.points, axis=0)
        yaw = np.unwrap(np.arctan2(d[:, 1], d[:, 0]))  # [K-1]
        window = 5  # m over which the curvature is averaged
        turn = np.abs(yaw[window:] - yaw[:-window]) / window  # [K-1-window] 1/m
        kappa = np.zeros(len(u))
        kappa[window // 2 : window // 2 + len(turn)] = turn
        grip = car.grip * GRAVITY  # m/s²
        v = np.minimum(max_speed, np.sqrt(lateral_g * grip / np.maximum(kappa, 1e-6)))  # [K]
        for i in range(len(v) - 2, -1, -1):  # backward pass: brake in time for what comes
            v[i] = min(v[i], math.sqrt(v[i + 1] ** 2 + 2.0 * brake_g * grip * 1.0))
        self.speed = v  # [K] target speed, m/s
        self.heading_known = heading
        self.track_name = track.name
        self.track_width = track.width  # m
        self.lookahead_min = lookahead_min
        self.lookahead_time = lookahead_time
        self._per_steer = math.tan(math.radians(car.max_steer_deg)) / car.wheelbase  # 1/m at full lock
        self._i = 0
        self._anchor: np.ndarray | None = None
        self._yaw = math.atan2(d[0, 1], d[0, 0])

    def __call__(self, state: CarState) -> tuple[float, float, float]:
        pos = np.array([state.position[0], state.position[2]])  # game (x, z) = simulator (x, y)
        n = len(self.points)
        lo, hi = max(self._i - 10, 0), min(self._i + 100, n)
        d2 = ((self.points[lo:hi] - pos) ** 2).sum(axis=1)
        i = lo + int(np.argmin(d2))
        if d2[i - lo] > 15.0**2:  # lost (a respawn): search the whole line
            d2 = ((self.points - pos) ** 2).sum(axis=1)
            i = int(np.argmin(d2))
            if d2[i] > self.track_width**2:
                raise GameError(
                    f"the car is {math.sqrt(d2[i]):.0f} m from the centre line of {self.track_name!r}, off its road: "
                    f"does the virtual game run --track {self.track_name}?"
                )
        self._i = i
        speed = abs(state.speed_kmh) / 3.6  # m/s
        yaw = state.heading if self.heading_known else self._estimate_yaw(pos, i)
        ahead = min(i + int(self.lookahead_min + self.lookahead_time * speed), n - 1)
        dx, dy = self.points[ahead] - pos
        forward = dx * math.cos(yaw) + dy * math.sin(yaw)
        left = -dx * math.sin(yaw) + dy * math.cos(yaw)
        curvature = 2.0 * left / max(forward**2 + left**2, 1e-6)  # 1/m, left positive
        steer = min(max(-curvature / self._per_steer, -1.0), 1.0)  # steer +1 is full right
        target = float(self.speed[min(i + 2, n - 1)])
        gas = min(max((target - speed) / 2.0, 0.0), 1.0)
        brake = min(max((speed - target - 1.0) / 2.0, 0.0), 1.0)
        return gas, brake, steer

    def _estimate_yaw(self, pos: np.ndarray, i: int) -> float:
        if self._anchor is None or np.linalg.norm(pos - self._anchor) > 20.0:  # first call or a respawn
            self._anchor = pos
            j = min(i + 1, len(self.points) - 1)
            d = self.points[j] - self.points[j - 1]
            self._yaw = math.atan2(d[1], d[0])
        elif np.linalg.norm(pos - self._anchor) > 0.5:
            d = pos - self._anchor
            self._yaw = math.atan2(d[1], d[0])
            self._anchor = pos
        return self._yaw
