"""The local training loop of ``evo-rl train``.

Off-policy (SAC, REDQ-SAC), one iteration::

    N cars of a vector env -> actions (random for train.start_steps, then the actor)
    -> env step -> batched replay insert -> updates_per_step * N gradient updates on
    sampled batches (+ priority updates with prioritised replay)

On-policy (PPO): a rollout of ``algo.ppo.n_steps`` car-steps, then ``update(rollout)``.

Around both, on wall-clock schedules of active (not paused) time: metrics every
``train.log_every_seconds``, deterministic evaluation episodes every
``train.eval_every_minutes``, checkpoints every ``train.checkpoint_every_minutes``;
at the end (budget reached, Ctrl-C or SIGTERM) a last evaluation (not on a signal)
and a checkpoint. ``evo-rl pause RUN`` stops stepping and learning until
``evo-rl resume RUN``; the state stays in memory.

Owed updates are paid in slices of at most ``UPDATE_SLICE_SECONDS``: between slices the
loop looks at signals, the time budget, the pause file and its schedules, and no car
steps until every owed update is paid (a stop keeps what is unpaid in
``Counters.update_debt``). The trainer holds its run folder's lock (``RunDir.lock``)
from its first line to the end of ``train()``.
"""

from __future__ import annotations

import errno
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evo_rl.algos import make_agent
from evo_rl.algos.state import flatten_state, unflatten_state
from evo_rl.config import EvoConfig
from evo_rl.errors import CheckpointError
from evo_rl.games.errors import GameConnectionError
from evo_rl.memory import ObsLayout
from evo_rl.train.checkpoint import Checkpoint, CheckpointManager, rng_state, set_rng_state
from evo_rl.train.collect import Collector, EpisodeEnd, EpisodeTracker, exploring_actor
from evo_rl.train.dashboard import Dashboard
from evo_rl.train.evaluate import EvalResult, Evaluator, RecentEpisodes
from evo_rl.train.imitation import behaviour_cloning, check_imitation, collect_demos
from evo_rl.train.learn import Learner, lr_factor, scale_learning_rates
from evo_rl.train.logger import MetricsLogger, truncate_metrics
from evo_rl.train.policy import save_policy
from evo_rl.train.run import RunDir

CONTROL_POLL_SECONDS = 0.25  # how often the pause file is looked at
DASHBOARD_SECONDS = 0.25  # how often the dashboard snapshot is refreshed
UPDATE_SLICE_SECONDS = 0.25  # longest run of gradient updates between two looks at signals, budget and schedules
UPDATE_CHECK_EVERY = 4  # updates between two looks at the clock within a slice


@dataclass
class Counters:
    """Everything that counts up over a run; saved in every checkpoint."""

    env_steps: int = 0  # car-steps over all cars
    updates: int = 0  # gradient updates (PPO: minibatch steps)
    episodes: int = 0
    finishes: int = 0
    timeouts: int = 0  # episodes truncated at env.max_steps
    checkpoints_passed: int = 0  # checkpoint gates crossed over all finished training episodes
    evaluations: int = 0
    elapsed: float = 0.0  # active training seconds over all sessions
    sessions: int = 0  # times the run was started (1 + resumes)
    update_debt: float = 0.0  # fractional updates owed (updates_per_step * car-steps not yet spent)
    best_score: float | None = None
    best_lap_time: float | None = None


@dataclass
class Interval:
    """Statistics gathered between two log lines."""

    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    checkpoints: list[int] = field(default_factory=list)
    finishes: int = 0
    timeouts: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    terms: dict[str, float] = field(default_factory=dict)  # per-term sums over ended episodes
    metric_sums: dict[str, float] = field(default_factory=dict)
    metric_counts: int = 0
    env_steps: int = 0
    updates: int = 0
    seconds: float = 0.0

    def add_metrics(self, metrics: dict[str, float]) -> None:
        for k, v in metrics.items():
            self.metric_sums[k] = self.metric_sums.get(k, 0.0) + v
        self.metric_counts += 1

    def losses(self) -> dict[str, float]:
        return {k: v / self.metric_counts for k, v in self.metric_sums.items()} if self.metric_counts else {}

    def episode_summary(self) -> dict[str, Any] | None:
        n = len(self.returns)
        if not n:
            return None
        return {
            "count": n,
            "reward_avg": float(np.mean(self.returns)),
            "reward_max": float(np.max(self.returns)),
            "reward_min": float(np.min(self.returns)),
            "length_avg": float(np.mean(self.lengths)),
            "checkpoints_avg": float(np.mean(self.checkpoints)),
            "checkpoints_max": int(np.max(self.checkpoints)),
            "finishes": self.finishes,
            "timeouts": self.timeouts,
            "finish_rate": self.finishes / n,
            "end_reasons": dict(self.reasons),
            "terms": {k: v / n for k, v in self.terms.items()},
        }


class ActiveClock:
    """Seconds of active (not paused) time since construction."""

    def __init__(self) -> None:
        self._start = time.monotonic()
        self._paused_total = 0.0
        self._paused_at: float | None = None

    def __call__(self) -> float:
        now = self._paused_at if self._paused_at is not None else time.monotonic()
        return now - self._start - self._paused_total

    def pause(self) -> None:
        if self._paused_at is None:
            self._paused_at = time.monotonic()

    def unpause(self) -> None:
        if self._paused_at is not None:
            self._paused_total += time.monotonic() - self._paused_at
            self._paused_at = None


def precision_note(agent: Any) -> str:
    """``", bfloat16 mixed precision"`` (or float16) for an agent that computes in mixed precision (``algo.amp``),
    else ``""``."""
    if not getattr(agent, "amp", False):
        return ""
    dtype = getattr(agent, "amp_dtype", None)
    return f", {str(dtype).removeprefix('torch.')} mixed precision" if dtype is not None else ", mixed precision"


def configure_torch(cfg: EvoConfig) -> None:
    """Seed torch and set its CPU threads (``train.torch_threads``; 0 keeps torch's default, all cores).

    The simulator's kernels and torch take turns on the same cores. On an idle
    2-core machine two torch threads give about 1.5x the updates per second of
    one; when other processes keep the cores busy, threads waiting on each other
    can cost far more than that, and ``train.torch_threads: 1`` is the safe choice.
    """
    torch.manual_seed(cfg.train.seed)
    if cfg.train.torch_threads > 0:
        torch.set_num_threads(cfg.train.torch_threads)


def make_env(cfg: EvoConfig) -> Any:
    """The vector env of the configured source: the simulator, TMNF instances or a real-time game."""
    from evo_rl.envs.vector import VecTrackEnv

    if cfg.env.source == "sim":
        return VecTrackEnv(cfg)
    if cfg.env.source == "tmnf":  # lock-step game instances, one car each
        from evo_rl.games.tmnf.source import open_source

        source = open_source(cfg, cfg.game.ports, virtual=cfg.game.input == "virtual", speed=cfg.game.speed)
        return VecTrackEnv(cfg, n_envs=source.n_envs, source=source)
    from evo_rl.games.realtime import open_vec_env  # a game: one car in real time

    return open_vec_env(cfg)


class Trainer:
    """One training session of a run folder (a new run, or a resumed one).

    ``Trainer(cfg, run, resume=True)`` restores the last good checkpoint:
    counters, agent and optimiser state, replay memory and RNG states (a run without a
    checkpoint yet starts from scratch, with a note). ``train()`` runs until the budget
    is spent or a signal arrives and returns the final counters.

    The first thing the constructor does is take the run folder's lock; a second
    trainer of the same run, in any process, is refused (:class:`RunLockedError` naming
    the pid holding it). ``train()`` releases it when it returns (and takes it again
    when called again); so does :meth:`close`.
    """

    def __init__(
        self,
        cfg: EvoConfig,
        run: RunDir,
        resume: bool = False,
        minutes: float | None = None,
        dashboard: Dashboard | None = None,
        init: str | Path | None = None,
    ) -> None:
        self._lock = run.lock()  # before anything is built: a second trainer of this run stops here
        try:
            self._build(cfg, run, resume, minutes, dashboard)
            if init is not None and not resume:
                self._init_from(init)
        except BaseException:
            self._lock.release()
            env = getattr(self, "env", None)
            if env is not None and cfg.env.source != "sim":
                env.close()
            raise

    def _build(
        self, cfg: EvoConfig, run: RunDir, resume: bool, minutes: float | None, dashboard: Dashboard | None
    ) -> None:
        self.cfg = cfg
        self.run = run
        self.minutes = minutes if minutes is not None else cfg.train.minutes
        self.checkpoints = CheckpointManager(run.checkpoints_dir, cfg.train.keep_best)
        self._notes: list[str] = []  # shown when the dashboard starts (resume, corrupt checkpoints)
        removed = self.checkpoints.cleanup()  # what a killed trainer left: temporary folders, orphan chunks
        for tmp in run.path.glob(".*.safetensors.*.tmp"):  # policy files being written (save_policy)
            tmp.unlink(missing_ok=True)
            removed.append(tmp.name)
        if removed:
            self._notes.append(
                f"removed {len(removed)} unfinished or unreferenced checkpoint files: {', '.join(removed)}"
            )
        configure_torch(cfg)
        self.rng = np.random.default_rng(cfg.train.seed)
        self.env: Any = self._make_env()
        self.n_envs = self.env.num_envs
        self.agent = make_agent(cfg, self.env.single_observation_space, self.env.single_action_space, cfg.train.device)
        self.on_policy = self.agent.on_policy  # checked against OffPolicyAgent / OnPolicyAgent by make_agent
        self.memory = None
        self.rollout = None
        self.learner: Learner | None = None
        self.collector: Collector | None = None
        self.tracker = EpisodeTracker(self.n_envs)
        if self.on_policy:
            self.rollout = self.agent.make_rollout(self.n_envs)
        else:
            layout = ObsLayout.from_space(
                self.env.single_observation_space, cfg.env.hist_len, cfg.env.act_buf_len, cfg.env.flavour
            )
            self.learner = Learner(cfg, self.agent, layout, self.n_envs)
            self.memory = self.learner.memory
            self.collector = self._make_collector(layout)
        check_imitation(cfg, self.on_policy)
        self.evaluator: Evaluator | RecentEpisodes
        if cfg.env.source == "sim":
            self.evaluator = Evaluator(cfg, cfg.train.eval_episodes)
        else:
            self.evaluator = RecentEpisodes(cfg, cfg.train.eval_episodes, self.env.track)
        self.counters = Counters()
        self.last_eval: EvalResult | None = None
        self.dashboard = dashboard or Dashboard(run.name, self._budget(), cfg.train.dashboard)
        self._env_rng_state: dict[str, Any] | None = None
        self._purge_step: int | None = None  # TensorBoard steps after the restored checkpoint are hidden
        self._clock: ActiveClock | None = None  # the running session's clock (train())
        self.save_failures = 0  # checkpoints that could not be written (e.g. a full disk)
        if resume:
            self._restore()
        self.counters.sessions += 1
        self._stop: str | None = None
        self.stop_reason = ""
        self.interval = Interval()
        self.shown_episode: dict[str, Any] | None = None  # last interval's episode summary, for the dashboard
        self.shown_losses: dict[str, float] = {}
        self.shown_rates = (0.0, 0.0)  # env steps/s, updates/s
        self.logger: MetricsLogger | None = None

    def _make_env(self) -> Any:
        return make_env(self.cfg)

    def _make_collector(self, layout: ObsLayout) -> Collector | None:
        """The off-policy collector: this trainer's env and actor (with ``train.param_noise``, its perturbed copies)."""
        actor = exploring_actor(self.agent.actor, self.cfg.train.param_noise, self.cfg.train.seed)
        return Collector(self.env, layout, actor, self.rng)

    # ------------------------------------------------------------------ budget

    def _budget(self) -> tuple[str, float]:
        if self.minutes is not None:
            return ("minutes", self.minutes)
        return ("steps", float(self.cfg.train.total_steps))

    def _fraction(self, session_elapsed: float) -> float:
        frac = self.counters.env_steps / self.cfg.train.total_steps
        if self.minutes is not None:
            frac = max(frac, session_elapsed / (60.0 * self.minutes))
        return min(1.0, frac)

    def _schedule_lr(self, session_elapsed: float) -> None:
        """``train.lr_schedule``: every optimiser of the agent at its configured rates times
        :func:`lr_factor` of the run's fraction done."""
        cfg = self.cfg.train
        if cfg.lr_schedule != "constant":
            scale_learning_rates(self.agent, lr_factor(cfg.lr_schedule, cfg.lr_final, self._fraction(session_elapsed)))

    # ------------------------------------------------------------------ checkpoints

    def _state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors, skeleton = flatten_state(self.agent.state_dict(), prefix="agent")
        rng_js, rng_tensors = rng_state(self.rng)
        tensors.update(rng_tensors)
        c = self.counters
        state = {
            **c.__dict__,
            "agent": skeleton,
            "rng": rng_js,
            "env_rng": self.env.np_random.bit_generator.state,
            "last_eval": self.last_eval.to_dict() if self.last_eval else None,
        }
        return tensors, state

    def save_checkpoint(self) -> Path | None:
        """Write a checkpoint (agent, counters, RNG states, new replay chunk) and the latest policy.

        A failed write (a full disk, any OSError) is reported on the dashboard and in
        ``save_failures``; the previous checkpoints stay as they were and training goes
        on. Returns the new checkpoint folder, or None when it could not be written.
        """
        tensors, state = self._state()
        score = self.last_eval.score if self.last_eval else None
        replay = self.memory if self.memory is not None and self.cfg.train.save_replay else None
        try:
            path = self.checkpoints.save(tensors, state, score=score, replay=replay)
        except OSError as e:
            self.save_failures += 1
            kept = self.checkpoints.saved()
            last = f"the last good checkpoint is still {kept[0].name}" if kept else "the run has no checkpoint yet"
            why = "the disk is full" if e.errno == errno.ENOSPC else f"{type(e).__name__}: {e}"
            self.dashboard.message(
                f"warning: checkpoint not saved ({why}); {last}; training goes on and the next checkpoint "
                f"is tried in {self.cfg.train.checkpoint_every_minutes:g} min"
            )
            return None
        self._save_policy()
        if self.logger is not None:
            self.logger.flush()
        self.dashboard.message(f"checkpoint saved: {path.name}")
        return path

    def _restore(self) -> None:
        ck = self.checkpoints.load_latest(report=self._warn, set_aside=True)
        if ck is None:
            self._notes.append(
                f"run {self.run.path} has no checkpoint yet (its first trainer stopped before writing one): "
                "starting it from scratch"
            )
            self._truncate_metrics(0)
            return
        self._load_agent(ck)
        set_rng_state(self.rng, ck.state["rng"], ck.tensors)
        for name in Counters.__dataclass_fields__:
            if name in ck.state:
                setattr(self.counters, name, ck.state[name])
        if ck.state.get("last_eval"):
            self.last_eval = EvalResult(**ck.state["last_eval"])
        self._env_rng_state = ck.state.get("env_rng")
        self._restore_extra(ck.state)
        if self.memory is not None and not self.checkpoints.restore_replay(ck, self.memory):
            self._warn(f"checkpoint {ck.path.name} holds no replay memory; continuing with an empty one")
        self._truncate_metrics(self.counters.env_steps)
        self._notes.append(
            f"resumed from {ck.path.name}: {self.counters.env_steps:,} env steps, {self.counters.updates:,} updates"
            + (f", {len(self.memory):,} transitions in replay" if self.memory is not None else "")
        )

    def _init_from(self, spec: str | Path) -> None:
        """Start from another run's agent (its last good checkpoint) or from a policy file's actor.

        The observation layout and the algorithm must match: a policy trained in the simulator drives
        the game through the same observation interface.
        """
        from evo_rl.envs.spaces import observation_space
        from evo_rl.train.policy import load_policy
        from evo_rl.train.run import resolve_run

        path = Path(spec)
        if path.suffix == ".safetensors" and path.is_file():
            policy = load_policy(path)
            self._check_init(str(path), policy.cfg, observation_space)
            self.agent.actor.load_state_dict(policy.actor.state_dict())
            self._notes.append(f"actor initialised from policy file {path} (critics start fresh)")
            return
        source = resolve_run(str(spec), self.cfg.train.runs_dir)
        self._check_init(str(source.path), source.load_config(), observation_space)
        ck = CheckpointManager(source.checkpoints_dir, 0).load_latest(report=self._warn)
        if ck is None:
            raise CheckpointError(f"--init {spec}: run {source.path} has no readable checkpoint")
        try:
            self._load_agent(ck)
        except CheckpointError as e:
            raise CheckpointError(f"--init {spec}: {e}") from None
        self._notes.append(
            f"agent initialised from {source.path.name}/{ck.path.name} ({ck.state['env_steps']:,} steps)"
        )

    def _check_init(self, where: str, other: EvoConfig, observation_space: Any) -> None:
        cfg = self.cfg
        if other.algo.name != cfg.algo.name:
            raise CheckpointError(
                f"--init {where}: it was trained with {other.algo.name}, this run uses {cfg.algo.name}"
            )
        if observation_space(other) != observation_space(cfg):
            fields = [
                f"{section}.{key}: {getattr(getattr(other, section), key)!r} there, {getattr(getattr(cfg, section), key)!r} here"
                for section, key in (("env", "flavour"), ("env", "hist_len"), ("env", "act_buf_len"), ("env", "flat"),
                                     ("lidar", "kind"), ("lidar", "layout"), ("lidar", "beams"), ("lidar", "range"),
                                     ("camera", "width"), ("camera", "height"))
                if getattr(getattr(other, section), key) != getattr(getattr(cfg, section), key)
            ]  # fmt: skip
            raise CheckpointError(
                f"--init {where}: its observations differ from this run's ({'; '.join(fields) or 'spaces differ'}); "
                "use the same observation settings"
            )

    def _load_agent(self, ck: Checkpoint) -> None:
        """Load the agent's state; a network that config.yaml now builds differently is a clear error."""
        want, _ = flatten_state(self.agent.state_dict(), prefix="agent")
        have = {k: v for k, v in ck.tensors.items() if k.startswith("agent/")}
        items = {"/".join(k.split("/")[:2]) for k in want}
        problems = []
        for key in sorted(want.keys() | have.keys()):
            if key not in have:
                problems.append(f"{key}: config.yaml builds shape {list(want[key].shape)}, the checkpoint has none")
            elif key not in want:
                if "/".join(key.split("/")[:2]) in items and "/state/" not in key:  # optimiser moments are lazy
                    problems.append(f"{key}: the checkpoint holds shape {list(have[key].shape)}, config.yaml has none")
            elif want[key].shape != have[key].shape:
                problems.append(
                    f"tensor {key}: config.yaml builds shape {list(want[key].shape)}, "
                    f"the checkpoint holds {list(have[key].shape)}"
                )
        hint = (
            f"checkpoint {ck.path.name} does not match the networks {self.run.config_path} describes "
            "(was config.yaml edited? a resumed run keeps its network sizes; start a new run to change them)"
        )
        if problems:
            more = f"\n  ... and {len(problems) - 8} more" if len(problems) > 8 else ""
            raise CheckpointError(hint + ":\n  " + "\n  ".join(problems[:8]) + more)
        try:
            self.agent.load_state_dict(unflatten_state(have, ck.state["agent"]))
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as e:
            raise CheckpointError(f"{hint}: {type(e).__name__}: {e}") from None

    def _truncate_metrics(self, env_steps: int) -> None:
        """Drop what a killed session logged after the restored checkpoint (metrics.jsonl, TensorBoard)."""
        dropped = truncate_metrics(self.run.metrics_path, env_steps)
        if dropped:
            self._notes.append(
                f"metrics.jsonl: dropped {dropped} records after {env_steps:,} env steps (work lost after the checkpoint)"
            )
        self._purge_step = env_steps + 1

    def _warn(self, text: str) -> None:
        self._notes.append(f"warning: {text}")

    @property
    def policy(self) -> Any:
        """What evaluations drive and policy files hold: the agent's ``policy`` (SAC and REDQ with
        ``algo.sac.policy_average``: the averaged actor), or its ``actor`` for agents without one."""
        return getattr(self.agent, "policy", self.agent.actor)

    def _save_policy(self, path: Path | None = None) -> None:
        ev = self.last_eval.to_dict() if self.last_eval else None
        path = path or self.run.policy_path
        try:
            save_policy(path, self.policy, self.cfg, env_steps=self.counters.env_steps, eval=ev)
        except OSError as e:
            why = "the disk is full" if e.errno == errno.ENOSPC else f"{type(e).__name__}: {e}"
            self.dashboard.message(f"warning: {path.name} not saved ({why}); the previous one is kept")

    def close(self) -> None:
        """Release the run folder's lock (``train()`` does when it returns)."""
        self._lock.release()

    # ------------------------------------------------------------------ evaluation

    def evaluate(self) -> EvalResult:
        """Run the deterministic evaluation episodes, log them and save the policy files."""
        actor = self.policy
        result = self.evaluator.run(lambda obs: actor.act(obs, test=True))
        c = self.counters
        c.evaluations += 1
        self.last_eval = result
        improved = c.best_score is None or result.score > c.best_score
        if improved:
            c.best_score = result.score
            self._save_policy(self.run.path / "policy-best.safetensors")
        if result.best_lap_time is not None and (c.best_lap_time is None or result.best_lap_time < c.best_lap_time):
            c.best_lap_time = result.best_lap_time
        self._save_policy()
        ref = result.reference_lap_time
        lap = "no finish" if result.mean_lap_time is None else f"mean lap {result.mean_lap_time:.2f} s"
        ratio = f" ({result.lap_time_ratio:.3f}x reference {ref:.2f} s" if result.lap_time_ratio else ""
        if ratio and result.record_ratio:
            ratio += f", {result.record_ratio:.3f}x record {result.record_lap_time:.2f} s"
        ratio += ")" if ratio else ""
        self.dashboard.message(
            f"evaluation {c.evaluations}: finish rate {100 * result.finish_rate:.0f}%, {lap}{ratio}, "
            f"progress {100 * result.mean_progress:.0f}%"
        )
        if self.logger is not None:
            record = {"time": time.time(), "elapsed": c.elapsed, "env_steps": c.env_steps, "updates": c.updates}
            self.logger.log(record | {"eval": result.to_dict()})
        return result

    # ------------------------------------------------------------------ episodes

    def _record_episodes(self, episodes: list[EpisodeEnd]) -> None:
        """Gather the statistics of ended training episodes."""
        if not episodes:
            return
        iv, c = self.interval, self.counters
        for e in episodes:
            if isinstance(self.evaluator, RecentEpisodes):
                self.evaluator.add(e)
            iv.returns.append(e.ret)
            iv.lengths.append(e.steps)
            iv.checkpoints.append(e.checkpoints)
            iv.finishes += e.finished
            iv.timeouts += e.reason == "time_limit"
            iv.reasons[e.reason] = iv.reasons.get(e.reason, 0) + 1
            for name, value in e.terms.items():
                iv.terms[name] = iv.terms.get(name, 0.0) + value
            c.finishes += e.finished
            c.timeouts += e.reason == "time_limit"
            c.checkpoints_passed += e.checkpoints
        c.episodes += len(episodes)

    # ------------------------------------------------------------------ stepping

    def _imitate(self) -> None:
        """Seed the replay with expert episodes and clone them into the actor (train.demo_episodes, bc_updates)."""
        assert self.collector is not None and self.learner is not None
        stats, _ = collect_demos(self.collector, self.learner, self.cfg, self.cfg.train.demo_episodes)
        self._notes.append(stats.line())
        if self.cfg.train.bc_updates and self.learner.ready():
            bc = behaviour_cloning(self.agent, self.memory, self.cfg.train.bc_updates, self.cfg.memory.batch_size)
            self._notes.append(
                f"behaviour cloning: {self.cfg.train.bc_updates} batches, negative log-likelihood "
                f"{bc['bc_nll_first']:.2f} -> {bc['bc_nll_last']:.2f}"
            )

    def _random_phase(self) -> bool:
        """Off-policy runs act at random for their first ``train.start_steps`` car-steps."""
        return not self.on_policy and self.counters.env_steps < self.cfg.train.start_steps

    def _offpolicy_step(self) -> None:
        if self._owes_updates():  # no car steps while updates are owed: the update-to-data ratio stays exact
            self._pay_updates()
            return
        tr = self.collector.step(random=self._random_phase())
        self.learner.add(tr)
        self._record_episodes(tr.episodes)
        self._count_steps(tr.n_cars)

    def _count_steps(self, n: int) -> None:
        """``n`` car-steps stored: count them and owe their updates (once learning has started)."""
        cfg, c = self.cfg, self.counters
        c.env_steps += n
        self.interval.env_steps += n
        if c.env_steps >= cfg.train.start_steps and self.learner.ready():
            self._owe(n * cfg.train.updates_per_step)

    def _owe(self, updates: float) -> None:
        """New data owes ``updates`` gradient updates: pay them now (local training)."""
        self.counters.update_debt += updates
        self._pay_updates()

    def _owes_updates(self) -> bool:
        """Whether owed updates wait to be paid before the next car step (off-policy)."""
        return self.learner is not None and self.counters.update_debt >= 1.0 and self.learner.ready()

    def _must_yield(self) -> bool:
        """A signal arrived or the session's time budget is spent: stop paying updates now."""
        if self._stop is not None:
            return True
        clock = self._clock
        return clock is not None and self.minutes is not None and clock() >= 60.0 * self.minutes

    def _pay_updates(self) -> None:
        """Pay owed updates (one per whole unit of ``update_debt``) for at most
        ``UPDATE_SLICE_SECONDS``; what is left is paid by the next iterations, before any
        car steps, unless the run stops first (then it stays in ``update_debt``)."""
        c = self.counters
        deadline = time.monotonic() + UPDATE_SLICE_SECONDS
        done = 0
        while c.update_debt >= 1.0:
            if done % UPDATE_CHECK_EVERY == 0 and (self._must_yield() or (done and time.monotonic() >= deadline)):
                return
            self.interval.add_metrics(self.learner.update())
            c.update_debt -= 1.0
            c.updates += 1
            self.interval.updates += 1
            done += 1

    def _onpolicy_step(self) -> None:
        c, rollout = self.counters, self.rollout
        step = self.agent.policy_step(self.obs)
        next_obs, reward, terminated, truncated, infos = self.env.step(step.action)
        final_value = self.agent.final_values(infos, truncated)
        rollout.add(self.obs, step.raw_action, step.log_prob, step.value, reward, terminated, truncated, final_value)
        self._record_episodes(self.tracker.step(infos, terminated, truncated))
        self.obs = next_obs
        c.env_steps += self.n_envs
        self.interval.env_steps += self.n_envs
        if rollout.full:
            rollout.compute_returns_and_advantages(self.agent.value(next_obs))
            before = self.agent.num_updates
            self.interval.add_metrics(self.agent.update(rollout).metrics)
            rollout.reset()
            done = self.agent.num_updates - before
            c.updates += done
            self.interval.updates += done

    # ------------------------------------------------------------------ signals and control

    def _on_pause(self, paused: bool) -> None:
        """Hook: the run was paused or resumed (``evo-rl pause`` / ``resume``)."""

    def _idle(self, seconds: float) -> None:
        """Hook: what a paused trainer does between two looks at the pause file."""
        time.sleep(seconds)

    def _restore_extra(self, state: dict[str, Any]) -> None:
        """Hook: read what a subclass added to the checkpoint state (:meth:`_state`)."""

    def _reset_env(self, seed: int) -> None:
        self.obs, _ = self.env.reset(seed=seed)
        if self._env_rng_state is not None:
            self.env.np_random.bit_generator.state = self._env_rng_state
        if self.collector is not None:
            self.collector.obs = self.obs

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._stop is not None:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self._stop = signal.Signals(signum).name
        self.dashboard.message(f"{self._stop}: saving a checkpoint before exiting (again to quit at once)")

    def request_stop(self, reason: str = "stop") -> None:
        """Ask the loop to save and return at the next step (thread-safe)."""
        self._stop = reason

    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        old = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, self._on_signal)
        return old

    # ------------------------------------------------------------------ logging

    def _counts(self) -> dict[str, Any]:
        """Counters and rates shown on the dashboard and written to metrics.jsonl alike."""
        c = self.counters
        return {
            "elapsed": c.elapsed,
            "env_steps": c.env_steps,
            "updates": c.updates,
            "episodes": c.episodes,
            "env_steps_per_s": self.shown_rates[0],
            "updates_per_s": self.shown_rates[1],
            "finishes": c.finishes,
            "timeouts": c.timeouts,
            "replay_size": len(self.memory) if self.memory is not None else 0,
        }

    def _snapshot(self, session_elapsed: float, paused: bool) -> dict[str, Any]:
        c, ev = self.counters, self.last_eval
        return {
            "fraction": self._fraction(session_elapsed),
            **self._counts(),
            "episode": self.shown_episode,
            "losses": self.shown_losses,
            "eval": ev.to_dict() if ev else None,
            "best_lap_time": c.best_lap_time,
            "reference_lap_time": self.evaluator.reference_lap_time,
            "evaluations": c.evaluations,
            "paused": paused,
            "status": "collecting random steps" if self._random_phase() else "learning",
            "realtime": self.env.timing.summary() if hasattr(self.env, "timing") else None,
        }

    def _log_interval(self) -> None:
        c, iv = self.counters, self.interval
        seconds = max(iv.seconds, 1e-9)
        self.shown_rates = (iv.env_steps / seconds, iv.updates / seconds)
        episode = iv.episode_summary()
        if episode is not None:
            self.shown_episode = episode
        losses = iv.losses()
        if losses:
            self.shown_losses = losses
        record = {"time": time.time(), **self._counts(), "checkpoints_passed": c.checkpoints_passed}
        if hasattr(self.env, "timing"):  # a game in real time: its step timing (evo_rl.games.realtime.StepTiming)
            record["realtime"] = self.env.timing.summary()
        if episode is not None:
            record["episode"] = episode
        if losses:
            record["losses"] = losses
        pool = getattr(getattr(self.env, "core", None), "pool", None)
        if pool is not None:  # env.tracks: the curriculum's level and the tracks drawn from
            record["tracks"] = {"level": pool.level, "difficulty": pool.difficulty, "drawn_from": len(pool.active)}
        self.logger.log(record)
        self.interval = Interval()

    # ------------------------------------------------------------------ main loop

    def train(self) -> Counters:
        """Run the session; returns the counters at its end."""
        cfg, c = self.cfg, self.counters
        if not self._lock.held:  # a second train() of the same trainer
            self._lock = self.run.lock()
        try:
            self.logger = MetricsLogger(self.run.path, cfg, self.run.name, purge_step=self._purge_step)
        except BaseException:
            self._lock.release()
            raise
        self._purge_step = None
        self.interval = Interval()
        self._stop = None
        old_handlers = self._install_signals()
        self._reset_env(cfg.env.seed + 7919 * (c.sessions - 1))
        if c.env_steps == 0 and cfg.train.demo_episodes and self.collector is not None:
            self._imitate()
            self._reset_env(cfg.env.seed + 1)  # the replay ended every demonstration: start the cars afresh
        step = self._onpolicy_step if self.on_policy else self._offpolicy_step
        clock = self._clock = ActiveClock()
        elapsed_before = c.elapsed
        next_log = cfg.train.log_every_seconds
        next_eval = 60.0 * cfg.train.eval_every_minutes
        next_ckpt = 60.0 * cfg.train.checkpoint_every_minutes
        next_poll = next_show = 0.0
        interval_start = 0.0
        paused = False
        reason = "done"
        lost: Exception | None = None
        try:
            with self.dashboard:
                for note in self._notes:
                    self.dashboard.message(note)
                self.dashboard.message(
                    f"run folder {self.run.path}: {cfg.algo.name} on {cfg.env.track} ({cfg.env.flavour}), "
                    f"{self.n_envs} cars, device {self.agent.device}{precision_note(self.agent)}"
                )
                while True:
                    now = clock()
                    c.elapsed = elapsed_before + now
                    self._schedule_lr(now)
                    if self._stop is not None:
                        reason = self._stop
                        break
                    if c.env_steps >= cfg.train.total_steps and not self._owes_updates():
                        reason = "total_steps reached"
                        break
                    if self.minutes is not None and now >= 60.0 * self.minutes:
                        reason = "time budget reached"
                        break
                    if now >= next_poll:
                        next_poll = now + CONTROL_POLL_SECONDS
                        if self.run.is_paused() != paused:
                            paused = not paused
                            (clock.pause if paused else clock.unpause)()
                            self._on_pause(paused)
                            self.dashboard.message("paused" if paused else "resumed")
                            self.dashboard.update(self._snapshot(now, paused), log_line=True)
                    if paused:
                        self._idle(CONTROL_POLL_SECONDS)
                        next_poll = 0.0
                        self.dashboard.update(self._snapshot(now, paused))
                        continue
                    try:
                        step()
                    except GameConnectionError as e:  # the game did not come back: save what was learned, then say so
                        lost = e
                        reason = "game_lost"
                        break
                    if now >= next_log:
                        self.interval.seconds = now - interval_start
                        interval_start = now
                        next_log = now + cfg.train.log_every_seconds
                        self._log_interval()
                        self.dashboard.update(self._snapshot(now, paused), log_line=True)
                        next_show = now + DASHBOARD_SECONDS
                    elif now >= next_show:
                        next_show = now + DASHBOARD_SECONDS
                        self.dashboard.update(self._snapshot(now, paused))
                    if now >= next_eval:
                        self.evaluate()
                        next_eval = clock() + 60.0 * cfg.train.eval_every_minutes
                    if now >= next_ckpt:
                        self.save_checkpoint()
                        next_ckpt = clock() + 60.0 * cfg.train.checkpoint_every_minutes
                c.elapsed = elapsed_before + clock()
                self.interval.seconds = clock() - interval_start
                self._log_interval()
                self.dashboard.message(f"stopping: {reason}")
                if reason not in ("SIGINT", "SIGTERM", "game_lost"):
                    self.evaluate()
                self.save_checkpoint()
                self.dashboard.update(self._snapshot(clock(), False), log_line=True)
        finally:
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)
            errors = self.logger.write_errors
            self.logger.close()
            self.logger = None
            self._clock = None
            self._lock.release()
            if cfg.env.source != "sim":
                self.env.close()  # a game's connections and input devices (train() runs once on a game)
        if errors:
            self.dashboard.message(f"warning: {errors} writes to metrics.jsonl failed (is the disk full?)")
        self.stop_reason = reason
        if lost is not None:
            raise lost
        return c
