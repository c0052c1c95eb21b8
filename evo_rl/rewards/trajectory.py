"""``progress_trajectory``: TMRL's trajectory reward, vectorised over N cars with numba.

The reference is resampled into points 0.1 m apart. Each car keeps an index
``cur`` into those points. Every step:

1. Forward search: walk from ``cur`` one point at a time, keeping the nearest point
   so far (ties move it forward); the walk stops ``check_forward - 1`` points after
   the last new nearest point, or at the last point. If the nearest distance is
   above ``max_stray`` the car made no progress (``best = cur``).
2. Reward ``(best - cur) / 100``: one per 10 m of reference passed.
3. No progress (``best == cur``): a backward search from ``cur`` with patience
   ``check_backward`` (stopping before index 0) lets the index rewind, so driving
   backwards costs nothing but earns nothing until the car is back; after
   ``min_steps`` steps, more than ``failure_countdown`` such steps in a row end the
   episode. Progress resets that count.
4. ``cur = best``; ``end_of_track`` at the finish and ``constant_penalty`` every step are added.

The forward walk skips points that provably cannot be nearer than the best so far,
which gives the same result as visiting every point at a fraction of the cost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numba as nb
import numpy as np
from pydantic import Field

from evo_rl.config import Section
from evo_rl.errors import ConfigError
from evo_rl.rewards.base import RewardTerm, StepContext, register
from evo_rl.rewards.multitrack import TrackGroup
from evo_rl.sim.kernels import PARALLEL_CARS, car_loop

if TYPE_CHECKING:
    from evo_rl.rewards.reference_trajectory import ReferenceTrajectory
    from evo_rl.sim.track import Track

_EPS = 1e-7  # margin, m, for rounding in the skip bounds
DELTA = 0.05  # m: a straight run's points stay this close to their ray


@nb.njit(cache=True, inline="always")
def _dist(data: np.ndarray, i: int, px: float, py: float, pz: float) -> float:
    dx = data[i, 0] - px
    dy = data[i, 1] - py
    dz = data[i, 2] - pz
    return np.sqrt(dx * dx + dy * dy + dz * dz)


@nb.njit(cache=True)
def straight_runs(data: np.ndarray, delta: float, cap: int) -> np.ndarray:
    """Per point ``i``, ``[Q]``: how many of the following points (at most ``cap``) lie within
    ``delta`` of the ray from point ``i`` through point ``i + 1``."""
    n = data.shape[0]
    run = np.zeros(n, np.int32)
    for i in range(n - 1):
        ux = data[i + 1, 0] - data[i, 0]
        uy = data[i + 1, 1] - data[i, 1]
        uz = data[i + 1, 2] - data[i, 2]
        length = np.sqrt(ux * ux + uy * uy + uz * uz)
        if length == 0.0:
            continue
        ux, uy, uz = ux / length, uy / length, uz / length
        k = 0
        while i + k + 1 < n and k < cap:
            vx = data[i + k + 1, 0] - data[i, 0]
            vy = data[i + k + 1, 1] - data[i, 1]
            vz = data[i + k + 1, 2] - data[i, 2]
            t = max(vx * ux + vy * uy + vz * uz, 0.0)
            ex, ey, ez = vx - t * ux, vy - t * uy, vz - t * uz  # offset from the ray
            if ex * ex + ey * ey + ez * ez > delta * delta:
                break
            k += 1
        run[i] = k
    return run


@nb.njit(cache=True, inline="always")
def _ray_distance(data: np.ndarray, i: int, d: float, px: float, py: float, pz: float) -> float:
    """Distance from the car to the ray from point ``i`` through point ``i + 1``; ``d``: to point ``i``."""
    ux = data[i + 1, 0] - data[i, 0]
    uy = data[i + 1, 1] - data[i, 1]
    uz = data[i + 1, 2] - data[i, 2]
    ahead = ((px - data[i, 0]) * ux + (py - data[i, 1]) * uy + (pz - data[i, 2]) * uz) / np.sqrt(
        ux * ux + uy * uy + uz * uz
    )
    return d if ahead <= 0.0 else np.sqrt(max(d * d - ahead * ahead, 0.0))


@nb.njit(cache=True)
def search_best(
    data: np.ndarray,
    run: np.ndarray,
    step: float,
    px: float,
    py: float,
    pz: float,
    cur: int,
    check_forward: int,
    check_backward: int,
    max_stray: float,
) -> int:
    """The new index of one car at (px, py, pz) whose index was ``cur`` (steps 1 and 3 above).

    Skips keep the result of the point-by-point walk: past a point at distance ``d``,
    the next ``(d - min_d) / step`` points are farther than ``min_d`` (consecutive points
    are at most ``step`` apart), and when the car is at least ``min_d + DELTA`` from the
    ray of a straight run, so is every point of the run.
    """
    n = data.shape[0]
    inv_step = 1.0 / step if step > 0.0 else 0.0
    min_d = np.inf
    best = cur
    index = cur
    patience = check_forward
    while True:
        d = _dist(data, index, px, py, pz)
        skip = 0
        if d <= min_d:
            min_d = d
            best = index
            patience = check_forward
        else:
            skip = max(int((d - min_d - _EPS) * inv_step), 0)
            if run[index] > skip and d - DELTA > min_d + _EPS:
                if _ray_distance(data, index, d, px, py, pz) - DELTA > min_d + _EPS:
                    skip = run[index]
        index += 1 + skip
        patience -= 1 + skip
        if index >= n or patience <= 0:
            break
    if min_d > max_stray:
        best = cur
    if best != cur:
        return best
    min_d = np.inf
    index = cur
    patience = check_backward
    while True:
        d = _dist(data, index, px, py, pz)
        skip = 0
        if d <= min_d:
            min_d = d
            best = index
            patience = check_backward
        else:
            skip = max(int((d - min_d - _EPS) * inv_step), 0)
        index -= 1 + skip
        patience -= 1 + skip
        if index <= 0 or patience <= 0:
            break
    return best


@nb.njit(cache=True, inline="always")
def _car_step(
    i: int,
    data: np.ndarray,
    run: np.ndarray,
    step: float,
    pos: np.ndarray,
    cur: np.ndarray,
    step_counter: np.ndarray,
    failure_counter: np.ndarray,
    check_forward: int,
    check_backward: int,
    max_stray: float,
    min_steps: int,
    failure_countdown: int,
    reward: np.ndarray,
    terminate: np.ndarray,
) -> None:
    """One step of car ``i``: its index, counters, reward and termination."""
    step_counter[i] += 1
    best = search_best(
        data, run, step, pos[i, 0], pos[i, 1], pos[i, 2], cur[i], check_forward, check_backward, max_stray
    )
    progressed = best > cur[i]
    reward[i] = (best - cur[i]) / 100.0 if progressed else 0.0
    terminate[i] = False
    if progressed:
        failure_counter[i] = 0
    elif step_counter[i] > min_steps:
        failure_counter[i] += 1
        if failure_counter[i] > failure_countdown:
            terminate[i] = True
    cur[i] = best


@car_loop(PARALLEL_CARS)
def trajectory_step(
    data: np.ndarray,
    run: np.ndarray,
    step: float,
    pos: np.ndarray,
    cur: np.ndarray,
    step_counter: np.ndarray,
    failure_counter: np.ndarray,
    check_forward: int,
    check_backward: int,
    max_stray: float,
    min_steps: int,
    failure_countdown: int,
    reward: np.ndarray,
    terminate: np.ndarray,
) -> None:
    """One step of N cars: updates ``cur``, the counters, ``reward`` [N] and ``terminate`` [N] in place."""
    for i in nb.prange(pos.shape[0]):
        _car_step(
            i,
            data,
            run,
            step,
            pos,
            cur,
            step_counter,
            failure_counter,
            check_forward,
            check_backward,
            max_stray,
            min_steps,
            failure_countdown,
            reward,
            terminate,
        )


@register
class ProgressTrajectory(RewardTerm):
    """TMRL's reward: reference points (0.1 m apart) passed this step / 100, with its failure countdown."""

    name = "progress_trajectory"
    needs = frozenset({"finish"})
    end_reason = "failure_countdown"

    class Params(Section):
        end_of_track: float = Field(100.0, description="reward for reaching the finish line")
        constant_penalty: float = Field(0.0, description="reward added at every step")
        check_forward: int = Field(
            500, ge=1, description="search patience forward, in points 0.1 m apart (500: cuts up to 50 m count)"
        )
        check_backward: int = Field(10, ge=1, description="search patience backward, points")
        failure_countdown: int = Field(10, ge=0, description="end after more steps than this in a row without progress")
        min_steps: int = Field(70, ge=0, description="steps of an episode before the failure countdown runs")
        max_stray: float = Field(100.0, gt=0, description="no progress farther than this from the reference, m")
        resample: bool = Field(
            True, description="resample the reference every 0.1 m (false: use its points as they are, e.g. TMRL's)"
        )

    def __init__(self, n_envs: int, track: Track | None, reference: ReferenceTrajectory, **params: Any) -> None:
        super().__init__(n_envs, track, reference, **params)
        if isinstance(track, TrackGroup):
            raise ConfigError(
                "progress_trajectory follows one reference trajectory, but the cars drive several env.tracks; "
                "use progress_distance (or potential_progress) for multi-track training"
            )
        pts = reference.dense if self.params.resample else reference.points3
        self.data = np.ascontiguousarray(pts, dtype=np.float64)  # [Q, 3]
        chords = np.linalg.norm(np.diff(self.data, axis=0), axis=1)
        self.step = float(chords.max()) * (1 + 1e-9) if len(chords) else 0.0  # m, bound on consecutive distance
        self.run = straight_runs(self.data, DELTA, self.params.check_forward)  # [Q] int32
        self.cur = np.zeros(n_envs, np.int64)  # [N] index of each car on the reference
        self.step_counter = np.zeros(n_envs, np.int64)  # [N]
        self.failure_counter = np.zeros(n_envs, np.int64)  # [N]
        self._finished = np.zeros(n_envs, bool)  # [N] end_of_track already given
        self._reward = np.zeros(n_envs)  # [N]
        self._terminate = np.zeros(n_envs, bool)  # [N]

    def reset(self, mask: np.ndarray) -> None:
        self.cur[mask] = 0
        self.step_counter[mask] = 0
        self.failure_counter[mask] = 0
        self._finished[mask] = False

    def __call__(self, ctx: StepContext) -> tuple[np.ndarray, np.ndarray]:
        p = self.params
        pos = np.ascontiguousarray(ctx.world.position3(), dtype=np.float64)  # [N, 3]
        trajectory_step(
            self.n_envs,
            self.data,
            self.run,
            self.step,
            pos,
            self.cur,
            self.step_counter,
            self.failure_counter,
            p.check_forward,
            p.check_backward,
            p.max_stray,
            p.min_steps,
            p.failure_countdown,
            self._reward,
            self._terminate,
        )
        finished = np.asarray(ctx.world.finished, dtype=bool)
        end = finished & ~self._finished
        self._finished |= finished
        return self._reward + p.end_of_track * end + p.constant_penalty, self._terminate.copy()
