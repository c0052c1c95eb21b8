"""A sampling-based model-predictive planner that uses the simulator itself as its model.

At every control step of a lap :class:`CEMPlanner` copies the real car's state into the ``K``
rows of a planning :class:`~evo_rl.sim.world.World`, rolls ``K`` candidate action sequences
of ``H`` control steps out at once (one ``World.step`` per horizon step for all of them),
scores each by the lap time it leads to, refits its sampling distribution on the best ones,
executes the first action of the best sequence on the real car and shifts the plan by one
step to warm-start the next control step (receding horizon).

Why the cross-entropy method (Rubinstein, "Optimization of computer simulation models with
rare events", 1997; in its MPC form with warm starts, temporally correlated noise and elites
kept across iterations: Pinneri et al., "Sample-efficient Cross-Entropy Method for Real-time
Planning", CoRL 2020) rather than MPPI (Williams et al., "Information theoretic MPC for
model-based reinforcement learning", ICRA 2017):

- the model is exact and deterministic, so the best sequence found is a lap the real car
  drives exactly; CEM keeps it (it executes the best sequence's first action, and the
  shifted best is a candidate of the next step), so the plan never gets worse from one step
  to the next, while an MPPI average of sequences is a sequence nobody rolled out;
- CEM ranks candidates, so the cost's terms (seconds of lap time, wall penalties, the
  finish) need no temperature tuned to their scale, which differs between a straight and a
  hairpin; MPPI's weights ``exp(-J / lambda)`` do;
- with binary pedals (``env.controls: binary``) a pedal is pressed when its value is above a
  threshold: an average of on/off sequences is not itself a good on/off sequence, while the
  elites' mean and spread still describe where pressing pays.

The cost of a candidate is an estimate of the lap time it leads to, in seconds: the race time
at the finish if it crosses the finish line within the horizon (earlier is better, counted
in physics sub-steps), otherwise the race time at the horizon's end plus the reference lap's
time from there to the finish (:func:`~evo_rl.sim.reference_lap.compute_reference_lap`: the
horizon is too short to see every braking point, so the reference speed profile stands in
for what lies beyond it), plus terminal terms for a speed above the reference speed there
(the car could not make the next corner: ``overspeed_penalty`` s per (m/s)²) or below it
(the time lost accelerating back to it, ``(v_ref - v)² / (2 a v_ref)`` with the car's
acceleration ``a``), plus ``wall_penalty`` seconds per control step touching a wall.

The planner samples two numbers per step, a pedal value ``u`` and the steering, from
Gaussians whose noise is correlated over time (first-order autoregressive, ``smoothing``);
the action is ``[u - d, -u - d, steer]``: with binary controls ``d = 1/3``, so the gas is
pressed for ``u > 1/3``, the brakes for ``u < -1/3`` and neither in between; with analog
controls ``d = 0``, a pedal pressure of ``|u|``.

:func:`plan_lap` drives one lap from the start and records it as the expert's
:class:`~evo_rl.sim.expert.LapResult`; it is deterministic for a given seed.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from evo_rl.config import EvoConfig
from evo_rl.errors import EvoError

if TYPE_CHECKING:  # the simulator's modules load on first use, so `evo-rl --help` stays quick
    from evo_rl.sim.expert import LapResult
    from evo_rl.sim.reference_lap import ReferenceLap
    from evo_rl.sim.track import Track
    from evo_rl.sim.world import World

BINARY_DEADBAND = 1.0 / 3.0  # binary controls: a pedal is pressed when |u| is above this
CAR_EXTRAS = ("track_id", "params")  # per-car World arrays beside STATE that a rollout must copy where they exist


@dataclass(frozen=True)
class PlannerSettings:
    """Tuning of :class:`CEMPlanner`; the defaults plan a 47 s lap in under a minute on 2 cores."""

    samples: int = 128  # K candidate action sequences per iteration
    horizon: int = 60  # H control steps each candidate looks ahead (3 s at 20 steps a second)
    iterations: int = 5  # CEM refits per control step
    elites: int = 12  # best candidates the sampling distribution is refitted on
    pedal_std: float = 0.7  # initial spread of the pedal value u at every control step
    steer_std: float = 0.35  # initial spread of the steering
    min_std: float = 0.05  # the spread never drops below this, so the search keeps exploring
    smoothing: float = 0.7  # correlation of the sampling noise between consecutive steps, [0, 1)
    momentum: float = 0.1  # weight of the old mean in each refit
    keep: int = 4  # elites of the last control step (shifted) among the next step's first candidates
    wall_penalty: float = 0.05  # s per control step with a wall contact
    overspeed_penalty: float = 0.02  # s per (m/s)² above the reference speed at the horizon's end
    seed: int = 0  # seed of the sampling noise: the same seed drives the same lap

    def check(self) -> None:
        """Raise :class:`EvoError` naming a bad setting."""
        if self.samples < 4:
            raise EvoError(f"planner samples must be at least 4, got {self.samples}")
        if self.horizon < 2:
            raise EvoError(f"planner horizon must be at least 2 control steps, got {self.horizon}")
        if self.iterations < 1:
            raise EvoError(f"planner iterations must be at least 1, got {self.iterations}")
        if not 2 <= self.elites <= self.samples - 2:
            raise EvoError(
                f"planner elites must be between 2 and samples - 2 = {self.samples - 2}, got {self.elites}; "
                "lower elites or raise samples"
            )
        if not 0 <= self.keep <= self.elites:
            raise EvoError(f"planner keep must be between 0 and elites = {self.elites}, got {self.keep}")
        if not 0.0 <= self.smoothing < 1.0:
            raise EvoError(f"planner smoothing must lie in [0, 1), got {self.smoothing}")
        if not 0.0 <= self.momentum < 1.0:
            raise EvoError(f"planner momentum must lie in [0, 1), got {self.momentum}")
        if not self.wall_penalty >= 0:
            raise EvoError(f"planner wall_penalty must be at least 0 s, got {self.wall_penalty}")
        for name in ("pedal_std", "steer_std", "min_std"):
            if not getattr(self, name) > 0:
                raise EvoError(f"planner {name} must be positive, got {getattr(self, name)}")


class CEMPlanner:
    """Plans the actions of the one car of a :class:`World` with the cross-entropy method.

    :attr:`world` is a ``K``-car World on the same track with the same car, simulator and
    controls as the real car's; its rows are overwritten with the real car's state before each rollout.
    :meth:`act` is the driver's interface (``act(world) -> actions [1, 3]``, as
    :meth:`~evo_rl.sim.expert.ExpertDriver.act`), :attr:`plan_seconds` the time it has spent.
    """

    def __init__(
        self,
        track: Track,
        cfg: EvoConfig,
        settings: PlannerSettings | None = None,
        reference: ReferenceLap | None = None,
    ) -> None:
        from evo_rl.sim.physics import accel_limits
        from evo_rl.sim.reference_lap import compute_reference_lap
        from evo_rl.sim.world import World

        self.settings = s = settings or PlannerSettings()
        s.check()
        self._accel_limits = accel_limits
        self.track = track
        self.cfg = cfg
        self.reference = reference if reference is not None else compute_reference_lap(track, cfg.car)
        self.world = World(track, s.samples, cfg.car, cfg.lidar, cfg.camera, cfg.sim, controls=cfg.env.controls)
        self.deadband = 0.0 if self.world.analog else BINARY_DEADBAND
        self.rng = np.random.default_rng(s.seed)
        self._tick = cfg.sim.dt / cfg.sim.substeps  # s per physics sub-step (the race clock's unit)
        self._std0 = np.array([s.pedal_std, s.steer_std])  # [2]
        self.reset()
        self.plan_seconds = 0.0  # wall-clock time spent planning

    def reset(self) -> None:
        """Forget the plan: full gas, straight ahead."""
        h = self.settings.horizon
        self.mean = np.zeros((h, 2))  # [H, 2] (pedal u, steer)
        self.mean[:, 0] = 1.0
        self.best = self.mean.copy()  # [H, 2] best sequence of the last control step
        self.kept = np.zeros((0, h, 2))  # [keep, H, 2] elites of the last control step, shifted

    # ------------------------------------------------------------------ actions

    def to_actions(self, plans: np.ndarray) -> np.ndarray:
        """World actions ``[..., 3]`` float32 ``[gas, brake, steer]`` for plans ``[..., 2]`` (pedal, steer)."""
        u, steer = plans[..., 0], plans[..., 1]
        actions = np.stack([u - self.deadband, -u - self.deadband, steer], axis=-1)
        return np.clip(actions, -1.0, 1.0).astype(np.float32)  # clipping keeps every pedal's sign

    def act(self, real: World) -> np.ndarray:
        """The action ``[1, 3]`` float32 for the real car (row 0 of ``real``), after planning from its state."""
        start = time.perf_counter()
        best = self.plan(real)
        self.plan_seconds += time.perf_counter() - start
        return self.to_actions(best[:1])  # [1, 3]

    # ------------------------------------------------------------------ planning

    def plan(self, real: World, row: int = 0) -> np.ndarray:
        """Refine the plan from car ``row`` of ``real``; returns the best sequence ``[H, 2]``.

        ``real`` is a one-track World of :attr:`track` (its state, physics included, is copied as it is).

        The kept plan (mean and best sequence) is shifted by one step afterwards, ready for the next
        control step.
        """
        s = self.settings
        k, h = s.samples, s.horizon
        state = snapshot(real, row)
        mean = self.mean.copy()  # [H, 2]
        std = np.broadcast_to(self._std0, (h, 2)).copy()  # [H, 2]
        best, best_cost = self.best.copy(), math.inf
        for it in range(s.iterations):
            plans = np.clip(mean + std * self._noise(k, h), -1.0, 1.0)  # [K, H, 2]
            plans[0] = np.clip(mean, -1.0, 1.0)
            plans[1] = best  # the best so far (at the first iteration: the last step's, shifted)
            if it == 0 and len(self.kept):
                plans[2 : 2 + len(self.kept)] = self.kept
            cost = self.rollout(state, plans)  # [K]
            order = np.argsort(cost, kind="stable")
            if cost[order[0]] < best_cost:
                best, best_cost = plans[order[0]].copy(), float(cost[order[0]])
            elite = plans[order[: s.elites]]  # [E, H, 2]
            mean = s.momentum * mean + (1.0 - s.momentum) * elite.mean(axis=0)
            std = np.maximum(s.momentum * std + (1.0 - s.momentum) * elite.std(axis=0), s.min_std)
        self.best_cost = best_cost
        self.kept = np.concatenate([elite[: s.keep, 1:], elite[: s.keep, -1:]], axis=1)  # [keep, H, 2]
        self.mean = _shift(mean)
        self.best = _shift(best)
        return best

    def _noise(self, k: int, h: int) -> np.ndarray:
        """Standard normal noise ``[K, H, 2]`` correlated over the horizon (AR(1), unit variance)."""
        a = self.settings.smoothing
        eps = self.rng.standard_normal((k, h, 2))  # [K, H, 2]
        scale = math.sqrt(1.0 - a * a)
        for t in range(1, h):
            eps[:, t] = a * eps[:, t - 1] + scale * eps[:, t]
        return eps

    def rollout(self, state: dict[str, np.ndarray], plans: np.ndarray) -> np.ndarray:
        """Estimated lap time ``[K]`` (s, lower is better) of each plan ``[K, H, 2]`` from ``state``."""
        s, w, ref = self.settings, self.world, self.reference
        restore(w, state)
        actions = self.to_actions(plans)  # [K, H, 3]
        walls = np.zeros(w.n_envs)  # [K] control steps touching a wall
        for t in range(plans.shape[1]):
            w.step(actions[:, t])
            walls += w.wall_contact
        clock = w.race_ticks * self._tick  # [K] s: at the finish for the finished cars, else at the horizon's end
        line_s = ref.line_s(w.progress_s)  # [K]
        to_go = ref.lap_time - np.interp(w.progress_s, ref.center_s, ref.time)  # [K] reference time left
        v = w.speed()  # [K]
        v_ref = ref.speed_at(line_s)  # [K]
        a = np.maximum(self._accel_limits(v_ref, self.cfg.car)[0], 1.0)  # [K] m/s² the car gains speed at
        slow = np.maximum(v_ref - v, 0.0) ** 2 / (2.0 * a * np.maximum(v_ref, 1.0))  # [K] s lost getting back up
        fast = s.overspeed_penalty * np.maximum(v - v_ref, 0.0) ** 2  # [K]
        cost = np.where(w.finished, clock, clock + to_go + slow + fast)
        return cost + s.wall_penalty * walls


def snapshot(world: World, row: int = 0) -> dict[str, np.ndarray]:
    """Copies of car ``row``'s state arrays: the names of :data:`~evo_rl.sim.physics.STATE`, and where the
    World has them, :data:`CAR_EXTRAS` (its track on a many-track World, its randomised physics)."""
    from evo_rl.sim.physics import STATE

    names = [*STATE, *(name for name in CAR_EXTRAS if getattr(world, name, None) is not None)]
    return {name: np.array(getattr(world, name)[row]) for name in names}


def restore(world: World, state: dict[str, np.ndarray]) -> None:
    """Put every car of ``world`` in ``state`` (from :func:`snapshot`)."""
    for name, value in state.items():
        getattr(world, name)[:] = value


def _shift(plan: np.ndarray) -> np.ndarray:
    """The plan ``[H, 2]`` one step on: drop the first step, repeat the last."""
    return np.concatenate([plan[1:], plan[-1:]], axis=0)


@dataclass
class PlannerLap:
    """A lap driven by :class:`CEMPlanner`: the lap record and what planning it cost."""

    lap: LapResult  # the recorded lap, as the expert's
    plan_seconds: float  # wall-clock seconds spent planning
    settings: PlannerSettings

    @property
    def lap_time(self) -> float | None:
        """Race time at the finish line, s (None if not finished)."""
        return self.lap.lap_time


def plan_lap(
    track: Track,
    cfg: EvoConfig,
    settings: PlannerSettings | None = None,
    max_seconds: float = 300.0,
    reference: ReferenceLap | None = None,
) -> PlannerLap:
    """Drive one lap of ``track`` from the start with :class:`CEMPlanner` and the config's car, simulator and
    controls; the same settings (seed included) drive the same lap."""
    from evo_rl.sim.expert import record_lap

    planner = CEMPlanner(track, cfg, settings, reference)
    lap = record_lap(track, cfg, planner.act, max_seconds, planner.reference)
    return PlannerLap(lap=lap, plan_seconds=planner.plan_seconds, settings=planner.settings)
