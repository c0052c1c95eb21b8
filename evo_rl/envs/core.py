"""The batched core shared by :class:`VecTrackEnv`, :class:`TrackEnv` and the real-time environment.

:class:`TrackCore` owns one car source of N cars (:class:`~evo_rl.envs.source.CarSource`: the
simulator's :class:`~evo_rl.sim.world.World` unless another is given), the reward manager and the
observation buffers. It steps every car, computes rewards and episode ends, and restarts the cars
it is told to; it never decides when to restart (the environments around it do: auto-reset or
the user). A step is :meth:`TrackCore.apply` (send the actions) then :meth:`TrackCore.settle`
(wait for the new state where the source is real-time, then score it); :meth:`TrackCore.step` does
both, as a simulator needs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from evo_rl.config import EvoConfig
from evo_rl.envs.lookahead import CoursePreview
from evo_rl.envs.observation import Observation, ObservationBuilder, flavour_needs
from evo_rl.envs.source import CarSource, require
from evo_rl.envs.tracks import TrackPool
from evo_rl.errors import ConfigError, EvoError
from evo_rl.rewards import RewardManager, StepContext
from evo_rl.rewards.multitrack import TrackGroup
from evo_rl.sim.track import Track
from evo_rl.sim.world import World, check_actions

STEP_LIMIT_LAPS = 2.5  # an unset env.max_steps allows this many reference laps ...
STEP_LIMIT_MIN_S = 120.0  # ... and at least this long (2400 steps at 20 steps/s)
END_FINISH = "finish"  # end_reason of a car that crossed the finish line
END_TIME_LIMIT = "time_limit"  # end_reason of an episode truncated at its step limit
END_LOST = "game_lost"  # end_reason of an episode cut because its game stopped answering (source.lost)


FLAVOUR_FIX = (
    "a game reports LIDAR with a track model of its map (env.track: a recorded .track) or from its picture "
    "(lidar.kind: tmrl and game.screen), and camera frames with game.screen; or choose another env.flavour"
)


class StepResult(NamedTuple):
    """What one batched step produced, before any restart."""

    reward: np.ndarray  # [N] float32
    terminated: np.ndarray  # [N] bool
    truncated: np.ndarray  # [N] bool
    terms: dict[str, np.ndarray]  # term name -> [N] float32
    end_reason: np.ndarray  # [N] str, "" while the episode runs


def step_limit(cfg: EvoConfig, track: Track | None, dt: float) -> int:
    """Steps of an episode before it is truncated: ``env.max_steps``, or else from the track.

    Unset, it allows :data:`STEP_LIMIT_LAPS` reference laps of ``track`` (the simulator's car on its
    racing line), and never less than :data:`STEP_LIMIT_MIN_S` seconds, so that a long track is not
    cut before a car that drives it well can finish. Without a track model, or on one the reference
    lap cannot be driven on (a recorded game track with gaps): the minimum.
    """
    if cfg.env.max_steps is not None:
        return cfg.env.max_steps
    seconds = STEP_LIMIT_MIN_S
    if track is not None:
        from evo_rl.sim.reference_lap import compute_reference_lap

        try:
            lap = compute_reference_lap(track, cfg.car).lap_time
        except (EvoError, ValueError, FloatingPointError):
            lap = math.nan
        if math.isfinite(lap):
            seconds = max(seconds, STEP_LIMIT_LAPS * lap)
    return math.ceil(seconds / dt - 1e-9)


def resolve_track(track: Track | str | None, cfg: EvoConfig) -> Track:
    """A :class:`Track` from an instance, a built-in name or a path (``cfg.env.track`` when None)."""
    if isinstance(track, Track):
        return track
    from evo_rl.sim.catalog import get_track

    name = cfg.env.track if track is None else track
    if name is None:
        raise ConfigError("env.track is null, but the simulator needs a track: name one (`evo-rl tracks list`)")
    return get_track(name)


class TrackCore:
    """N cars of one source: observation buffers, rewards, episode counters.

    With ``env.tracks`` (and no ``track`` given) the simulator's cars draw a track from a
    :class:`~evo_rl.envs.tracks.TrackPool` at every episode start and all step in one batch; the
    step limit, progress and rewards of each car follow its own track. ``randomise`` draws each
    car's physics and action latency per episode and adds sensor noise and dropped readings.
    """

    def __init__(
        self,
        cfg: EvoConfig,
        n_envs: int,
        track: Track | str | None = None,
        source: CarSource | None = None,
        rewards: Any = None,
    ) -> None:
        self.cfg = cfg
        self.n_envs = n_envs
        self.pool: TrackPool | None = None
        if source is None:
            tracks: list[Track]
            if track is None and cfg.env.tracks is not None:
                self.pool = TrackPool(cfg)
                tracks = self.pool.tracks
            else:
                tracks = [resolve_track(track, cfg)]
            source = World(
                tracks, n_envs, car=cfg.car, lidar=cfg.lidar, camera=cfg.camera, sim=cfg.sim,
                controls=cfg.env.controls,
            )  # fmt: skip
        elif source.n_envs != n_envs:
            raise EvoError(f"the car source {source.name!r} drives {source.n_envs} cars, the environment {n_envs}")
        self.source: CarSource = source
        self.sim: World | None = source if isinstance(source, World) else None  # the simulator's own state
        self.track: Track | None = source.track
        require(source.name, source.provides, flavour_needs(cfg), f"env.flavour: {cfg.env.flavour}", FLAVOUR_FIX)
        self.group = None
        if self.pool is not None and self.sim is not None:
            self.group = TrackGroup(self.sim.tracks, self.sim.track_id)
        self.rewards = rewards
        if rewards is None:
            self.rewards = RewardManager(
                cfg.reward, cfg.episode, self.group or self.track, n_envs, source=source.name, provides=source.provides
            )
        self.dt = source.dt
        self.obs = ObservationBuilder(cfg, n_envs)
        if cfg.env.lookahead_points:
            if self.track is None:
                raise ConfigError("env.lookahead_points reads the track model: give env.track a .track of the map")
            track_id = self.group.track_id if self.group is not None else None
            preview_tracks = self.group.tracks if self.group is not None else [self.track]
            self.obs.preview = CoursePreview(
                preview_tracks, cfg.env.lookahead_points, cfg.env.lookahead_distance, track_id
            )
        self._tracks: list[Track | None] = []  # the tracks of the tables below, in track_id order
        self._limits = np.zeros(0, np.int64)  # [K] step limit of each track; 0 until a car first draws it
        self._start_s = np.zeros(0)  # [K] arc length of each track's start line, m
        self._length = np.zeros(0)  # [K] start line to finish line, m
        self._add_tables(list(self.group.tracks) if self.group is not None else [self.track])
        self.step_limits = np.full(n_envs, self._limits_of(np.zeros(1, np.int64))[0])  # [N] of each car's episode
        self.steps = np.zeros(n_envs, np.int64)  # [N] steps of the running episode
        self.episode_return = np.zeros(n_envs, np.float64)  # [N] reward summed over the running episode
        self.prev_action = np.zeros((n_envs, 3), np.float32)  # [N, 3] last applied action, zeros at a start
        self._prev_s = np.zeros(n_envs)  # [N] progress before the step being applied, m
        self._prev_pos3 = np.zeros((n_envs, 3))  # [N, 3] position before it
        self.randomise = cfg.randomise
        self._rng = np.random.default_rng(cfg.env.seed)  # sensor noise; the last generator restart() was given
        if self.randomise.physics and self.sim is None:
            raise ConfigError("randomise: car physics can only be randomised in the simulator (env.source: sim)")
        self._base_params = self.sim.params[0].copy() if self.randomise.physics and self.sim is not None else None
        lo, hi = self.randomise.latency
        self.delay = np.zeros(n_envs, np.int64)  # [N] action latency of each car's episode, steps
        self._sent = np.zeros((hi + 1, n_envs, 3), np.float32)  # [L+1, N, 3] chosen actions, newest first

    @property
    def max_steps(self) -> int:
        """The longest step limit of an episode on any track the cars may drive (computes every track's)."""
        return int(self._limits_of(np.arange(len(self._limits))).max())

    def _limits_of(self, track_id: np.ndarray) -> np.ndarray:
        """Step limits of the tracks ``track_id`` [K], each computed the first time it is asked for (a track's
        limit drives its reference lap: a pool of many tracks would otherwise start slowly)."""
        for k in np.unique(track_id[self._limits[track_id] == 0]):
            self._limits[k] = step_limit(self.cfg, self._tracks[k], self.dt)
        return self._limits[track_id]

    def _add_tables(self, tracks: Sequence[Track | None]) -> None:
        self._tracks.extend(tracks)
        self._limits = np.concatenate([self._limits, np.zeros(len(tracks), np.int64)])
        self._start_s = np.concatenate([self._start_s, [float(t.s[t.start]) if t else 0.0 for t in tracks]])
        self._length = np.concatenate([self._length, [max(t.length, 1e-9) if t else 1.0 for t in tracks]])

    def _promote(self, finished: np.ndarray) -> None:
        """Count ended episodes for the curriculum; a new level's tracks join the world, rewards and tables."""
        assert self.pool is not None
        new = self.pool.record(finished)
        if new:
            assert self.sim is not None
            self.sim.add_tracks(new)
            self.rewards.add_tracks(new)
            if self.obs.preview is not None:
                self.obs.preview.add(new)
            self._add_tables(list(new))

    @property
    def world(self) -> CarSource:
        """The car source (the name comes from the simulator's ``World``, the default source)."""
        return self.source

    # ------------------------------------------------------------------ episodes

    def restart(self, mask: np.ndarray, rng: np.random.Generator) -> None:
        """Put the cars of ``mask`` [N] bool on the start line, with a random sideways offset and heading."""
        env = self.cfg.env
        k = int(np.count_nonzero(mask))
        self._rng = rng
        lateral = np.zeros(self.n_envs)  # [N] m, left positive
        yaw = np.zeros(self.n_envs)  # [N] rad
        lateral[mask] = rng.uniform(-1.0, 1.0, k) * env.start_lateral
        yaw[mask] = rng.uniform(-1.0, 1.0, k) * np.radians(env.start_yaw_deg)
        sim = self.sim
        if self._base_params is not None and sim is not None:
            from evo_rl.sim.physics import randomised_params

            sim.params[mask] = randomised_params(self._base_params, k, rng, self.randomise)
        if self.pool is not None and sim is not None:
            ids = sim.track_id.copy()
            ids[mask] = self.pool.sample(k, rng)
            sim.reset(mask, lateral=lateral, yaw=yaw, track_id=ids)
        else:
            self.source.reset(mask, lateral=lateral, yaw=yaw)
        tid = sim.track_id[mask] if self.group is not None and sim is not None else np.zeros(k, np.int64)
        self.step_limits[mask] = self._limits_of(tid)
        self.obs.start_s[mask] = self._start_s[tid]
        self.obs.length[mask] = self._length[tid]
        lo, hi = self.randomise.latency
        if hi > 0:
            self.delay[mask] = rng.integers(lo, hi + 1, k)
            self._sent[:, mask] = 0.0
        self.rewards.reset(mask)
        self.steps[mask] = 0
        self.episode_return[mask] = 0.0
        self.prev_action[mask] = 0.0
        self.obs.sense(self.source, rows=mask, rng=rng)
        self.obs.restart(mask)

    # ------------------------------------------------------------------ stepping

    def step(self, actions: Any) -> StepResult:
        """Advance every car one control step and score it; nothing changes if the actions are invalid."""
        return self.settle(self.apply(actions))

    def apply(self, actions: Any) -> np.ndarray:
        """Check ``actions`` [N, 3] and send them to the source; returns them as chosen (clipped float32).

        With ``randomise.latency`` each car's source gets the action chosen ``delay`` steps ago (zeros at an
        episode start), as a slow game link would; the observations still hold the chosen actions.
        """
        a = check_actions(actions, self.n_envs)  # [N, 3] float32, clipped
        self._prev_s = self.source.progress_s.copy()
        self._prev_pos3 = self.source.position3()
        sent = a
        if len(self._sent) > 1:
            self._sent[1:] = self._sent[:-1]
            self._sent[0] = a
            sent = self._sent[self.delay, np.arange(self.n_envs)]  # [N, 3]
        self.source.step(sent)
        return a

    def settle(self, a: np.ndarray) -> StepResult:
        """The new state after :meth:`apply` sent ``a``: observation buffers, rewards and episode ends."""
        source = self.source
        source.observe()
        self.steps += 1
        ctx = StepContext(source, self._prev_s, self._prev_pos3, a, self.prev_action, self.steps, self.dt)
        out = self.rewards(ctx)
        self.prev_action = a
        reward = np.asarray(out.reward, np.float32)
        self.episode_return += reward

        finished = source.finished.copy()
        terminated = finished | out.terminate
        truncated = (self.steps >= self.step_limits) & ~terminated
        end_reason = np.where(finished, END_FINISH, np.where(out.terminate, out.reason, ""))
        end_reason = np.where(truncated, END_TIME_LIMIT, end_reason).astype(str)
        lost = getattr(source, "lost", None)  # [N] bool: cars whose game stopped answering (a game source)
        if lost is not None and lost.any():
            terminated = terminated & ~lost
            truncated = truncated | lost
            end_reason = np.where(lost, END_LOST, end_reason).astype(str)

        self.obs.sense(source, rng=self._rng)
        self.obs.push(a)
        if self.pool is not None and self.pool.levels > 1:
            ended = terminated | truncated
            if ended.any():
                self._promote(finished[ended])
        return StepResult(reward, terminated, truncated, dict(out.terms), end_reason)

    # ------------------------------------------------------------------ outputs

    def observation(self) -> Observation:
        """Observations of all cars (fresh arrays)."""
        return self.obs.build()

    def info(self) -> dict[str, Any]:
        """Batched state of all cars: one array per key, rows are cars."""
        w = self.source
        if self.track is not None:
            progress = np.clip((w.progress_s - self.obs.start_s) / self.obs.length, 0.0, 1.0)
        else:
            progress = np.zeros(self.n_envs)
        race_time_ms = np.array(w.race_time_ms, np.int64)  # [N]
        return {
            "checkpoints": np.array(w.checkpoints, np.int32),  # [N]
            "race_time_ms": race_time_ms,  # [N] whole ms, as the games count it
            "race_time": race_time_ms / 1000.0,  # [N] s
            "finished": np.array(w.finished, bool),  # [N]
            "wall_contact": np.array(w.wall_contact, bool),  # [N]
            "progress": progress.astype(np.float32),  # [N] 0..1
            "position": np.asarray(w.position3(), np.float64),  # [N, 3] game x, y, z
            "speed_kmh": (w.speed() * 3.6).astype(np.float32),  # [N]
            "episode_steps": self.steps.copy(),  # [N]
            "episode_return": self.episode_return.copy(),  # [N]
        }
