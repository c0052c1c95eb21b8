"""The built-in reward terms computed with NumPy (``progress_trajectory`` is in trajectory.py).

Every term is oriented so that a positive weight rewards good driving: penalties
(time, wall contact, offsets, steering changes, air time) are negative values.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field

from evo_rl.config import Section
from evo_rl.rewards.base import RewardTerm, StepContext, register
from evo_rl.rewards.multitrack import TrackGroup

if TYPE_CHECKING:
    from evo_rl.rewards.reference_trajectory import ReferenceTrajectory
from evo_rl.sim.track import Track


@register
class ProgressDistance(RewardTerm):
    """Metres gained along the reference since the last step (negative when driving backwards)."""

    name = "progress_distance"
    needs = frozenset({"track"})

    def __call__(self, ctx: StepContext) -> np.ndarray:
        ref = self.reference
        return ref.along(ctx.world.progress_s) - ref.along(ctx.prev_progress_s)


@register
class TimePenalty(RewardTerm):
    """-1 every step: with a positive weight, the faster the finish, the higher the return."""

    name = "time_penalty"

    def __call__(self, ctx: StepContext) -> np.ndarray:
        return np.full(self.n_envs, -1.0)


@register
class Speed(RewardTerm):
    """Forward speed along the track, m/s (negative when driving backwards)."""

    name = "speed"
    needs = frozenset({"track", "velocity"})

    def __init__(self, n_envs: int, track: Track | None, reference: ReferenceTrajectory, **params: Any) -> None:
        super().__init__(n_envs, track, reference, **params)
        assert track is not None  # guaranteed by needs = {"track", ...}: the manager refuses sources without one
        self._group = track if isinstance(track, TrackGroup) else None
        self._first = np.zeros(1, np.int64)  # [K] first row of each track in _tangent
        self._tangent = _tangents(track) if self._group is None else np.zeros((0, 2))  # [M, 2] unit
        self._n_tracks = 0

    def __call__(self, ctx: StepContext) -> np.ndarray:
        row = ctx.world.quad
        if self._group is not None:  # several tracks: each car reads its own track's rows
            if self._n_tracks != len(self._group.tracks):
                self._tangent, self._first = self._group.quad_tables(_tangents)
                self._n_tracks = len(self._group.tracks)
            row = self._first[self._group.track_id] + row
        t = self._tangent[row]  # [N, 2]
        return (ctx.world.vel * t).sum(axis=1)


def _tangents(track: Track) -> np.ndarray:
    """Unit direction of each quad's centre line ``[M, 2]``."""
    d = np.diff(track.center, axis=0)  # [M, 2]
    return d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)


@register
class WallContact(RewardTerm):
    """-1 on every step the car touches a wall."""

    name = "wall_contact"
    needs = frozenset({"wall_contact"})

    def __call__(self, ctx: StepContext) -> np.ndarray:
        return np.where(ctx.world.wall_contact, -1.0, 0.0)


@register
class LateralOffset(RewardTerm):
    """-|offset|**power: distance, m, from the reference line at the car's place along the track."""

    name = "lateral_offset"
    needs = frozenset({"track"})

    class Params(Section):
        power: float = Field(1.0, gt=0, description="exponent of the offset (2: squared metres)")
        tolerance: float = Field(0.0, ge=0, description="offset, m, that costs nothing; only the excess counts")

    def __call__(self, ctx: StepContext) -> np.ndarray:
        off = np.abs(self.reference.offset(ctx.world.progress_s, ctx.world.lateral))
        return -(np.maximum(off - self.params.tolerance, 0.0) ** self.params.power)


@register
class SteeringSmoothness(RewardTerm):
    """-|steer - previous steer|**power: penalises large steering changes between steps."""

    name = "steering_smoothness"

    class Params(Section):
        power: float = Field(2.0, gt=0, description="exponent of the change (steering spans [-1, 1])")

    def __call__(self, ctx: StepContext) -> np.ndarray:
        change = np.abs(ctx.action[:, 2].astype(np.float64) - ctx.prev_action[:, 2])
        return -(change**self.params.power)


@register
class PotentialProgress(RewardTerm):
    """gamma * phi(s') - phi(s), phi = metres along the reference: shaping that keeps optimal policies.

    The potential of a terminal state is 0 (Ng et al., 1999), so the shaping of a
    whole episode sums to -phi(start) whatever the policy does. Set ``gamma`` to the
    algorithm's discount factor.
    """

    name = "potential_progress"
    needs = frozenset({"track"})

    class Params(Section):
        gamma: float = Field(0.99, gt=0, le=1, description="discount factor; must equal the algorithm's gamma")
        scale: float = Field(1.0, description="potential per metre along the reference")

    def __call__(self, ctx: StepContext) -> np.ndarray:
        p = self.params
        self._next_phi = p.scale * self.reference.along(ctx.world.progress_s)  # [N]
        return p.gamma * self._next_phi - p.scale * self.reference.along(ctx.prev_progress_s)

    def finalize(self, values: np.ndarray, terminal: np.ndarray) -> None:
        values[terminal] -= self.params.gamma * self._next_phi[terminal]


@register
class Checkpoint(RewardTerm):
    """Checkpoint reward: a bonus per checkpoint passed (each counts once, as in the game),
    a value per checkpoint crossed backwards, a bonus at the finish and a constant per step."""

    name = "checkpoint"
    needs = frozenset({"checkpoints", "finish"})

    class Params(Section):
        forward: float = Field(500.0, description="reward per checkpoint passed for the first time this episode")
        backward: float = Field(-10.0, description="reward per checkpoint crossed backwards")
        finish: float = Field(100.0, description="reward at the finish line")
        constant: float = Field(0.0, description="reward added every step (negative: a time penalty)")

    def __init__(self, n_envs: int, track: Track | None, reference: ReferenceTrajectory, **params: Any) -> None:
        super().__init__(n_envs, track, reference, **params)
        self._net = np.zeros(n_envs, np.int64)  # [N] forward minus backward crossings
        self._best = np.zeros(n_envs, np.int64)  # [N] highest net count reached
        self._finished = np.zeros(n_envs, bool)  # [N] finish already rewarded

    def reset(self, mask: np.ndarray) -> None:
        self._net[mask] = 0
        self._best[mask] = 0
        self._finished[mask] = False

    def __call__(self, ctx: StepContext) -> np.ndarray:
        w, p = ctx.world, self.params
        self._net += w.cp_forward - w.cp_backward
        new = np.maximum(self._net - self._best, 0)  # [N] checkpoints reached for the first time
        self._best += new
        finish = w.finished & ~self._finished
        self._finished |= w.finished
        return p.forward * new + p.backward * w.cp_backward + p.finish * finish + p.constant


@register
class AirTime(RewardTerm):
    """-seconds in the air during the step: a positive weight discourages jumps and flips."""

    name = "air_time"
    needs = frozenset({"air"})

    def __call__(self, ctx: StepContext) -> np.ndarray:
        return np.where(ctx.world.airborne, -ctx.dt, 0.0)
