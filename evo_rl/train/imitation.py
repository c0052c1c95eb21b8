"""Learning from demonstrations: expert laps seeded into the replay, and behaviour-cloning pre-training.

``train.demo_episodes`` > 0 (off-policy algorithms, the simulator): before the first training
step the scripted expert (:class:`~evo_rl.sim.expert.ExpertDriver`, pure pursuit on each track's
racing line) drives the training environment's cars, on the training tracks, until that many
episodes have ended; every transition goes into the replay, exactly as the agent's own would.
Episodes still running when the budget is reached are cut as truncated (bootstrapped), so the
replay's car streams end cleanly before training starts on them.

``train.bc_updates`` > 0 then trains the actor alone on those transitions for that many batches:
the negative log-likelihood of the expert's action under the policy (for SAC's tanh-squashed
Gaussian, of its pre-squash value), so the policy starts near the expert and the critics learn
from the expert's returns before the agent's own exploration starts.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from evo_rl.config import EvoConfig
from evo_rl.errors import ConfigError
from evo_rl.train.collect import Collector, EpisodeEnd, Transitions


class ExpertActor:
    """The scripted expert as an actor of a simulator vector env: one driver per track, each car driven
    by its own track's (``act(obs)`` ignores the observation and reads the env's world)."""

    def __init__(self, env: Any, cfg: EvoConfig) -> None:
        self.world = env.world
        self.car = cfg.car
        self._drivers: dict[int, Any] = {}

    def act(self, obs: Any, test: bool = False) -> np.ndarray:
        from evo_rl.sim.expert import ExpertDriver

        w = self.world
        track_id = getattr(w, "track_id", np.zeros(w.n_envs, np.int64))
        out = np.zeros((w.n_envs, 3), np.float32)
        for k in np.unique(track_id):
            driver = self._drivers.get(int(k))
            if driver is None:
                driver = self._drivers[int(k)] = ExpertDriver(w.tracks[k], self.car)
            rows = track_id == k
            out[rows] = driver.act(w)[rows]  # the driver reads every car; only its track's rows are right
        return out


@dataclass
class DemoStats:
    episodes: int
    finishes: int
    transitions: int
    mean_lap_time: float | None
    seconds: float

    def line(self) -> str:
        lap = f", mean lap {self.mean_lap_time:.2f} s" if self.mean_lap_time is not None else ""
        return (
            f"demonstrations: the expert drove {self.episodes} episodes ({self.finishes} finished{lap}), "
            f"{self.transitions:,} transitions into the replay in {self.seconds:.0f} s"
        )


def check_imitation(cfg: EvoConfig, on_policy: bool) -> None:
    """Refuse demonstration settings the run cannot honour, naming the fix."""
    t = cfg.train
    if t.demo_episodes == 0 and t.bc_updates == 0:
        return
    if on_policy:
        raise ConfigError(
            f"train.demo_episodes / train.bc_updates seed an off-policy replay, and algo.name is {cfg.algo.name}; "
            "use sac or redq, or set them to 0"
        )
    if cfg.env.source != "sim":
        raise ConfigError("train.demo_episodes: the expert drives the simulator only; set it to 0 for a game")
    if t.bc_updates and not t.demo_episodes:
        raise ConfigError("train.bc_updates clones demonstrations: set train.demo_episodes > 0 as well")


def collect_demos(collector: Collector, learner: Any, cfg: EvoConfig, episodes: int) -> tuple[DemoStats, Any]:
    """The expert drives ``collector``'s env until ``episodes`` episodes end; every step goes to ``learner``.

    Returns the statistics and the env's last observation (the collector keeps acting from it).
    """
    start = time.monotonic()
    own_actor = collector.actor
    collector.actor = ExpertActor(collector.env, cfg)
    ended: list[EpisodeEnd] = []
    transitions = 0
    rounds = episodes // collector.n_envs + 2  # every car has ended this many episodes within the bound below
    core = collector.env.core
    steps = 0
    try:
        while steps < rounds * int(core.step_limits.max()):  # the longest limit of the tracks drawn so far
            steps += 1
            tr = collector.step()
            ended.extend(tr.episodes)
            last = len(ended) >= episodes
            if last:
                tr = _cut(tr, collector)
            learner.add(tr)
            transitions += tr.n_cars
            if last:
                break
    finally:
        collector.actor = own_actor
    laps = [e.race_time for e in ended if e.finished]
    stats = DemoStats(
        episodes=len(ended),
        finishes=len(laps),
        transitions=transitions,
        mean_lap_time=float(np.mean(laps)) if laps else None,
        seconds=time.monotonic() - start,
    )
    return stats, collector.obs


def _cut(tr: Transitions, collector: Collector) -> Transitions:
    """``tr`` with every running episode ended by truncation, its final frames the env's next observation."""
    done = tr.terminated | tr.truncated
    if done.all():
        return tr
    layout = collector.layout
    nxt = layout.frames(collector.obs, collector.n_envs)  # the observation after this step, for running cars
    k = 0
    final: list[list[np.ndarray]] = [[] for _ in layout.fields]
    for i in range(collector.n_envs):
        for f in range(len(layout.fields)):
            final[f].append(tr.final_frames[f][k] if done[i] else nxt[f][i])
        k += int(done[i])
    return Transitions(
        frames=tr.frames,
        action=tr.action,
        reward=tr.reward,
        terminated=tr.terminated,
        truncated=~tr.terminated,
        final_frames=[np.stack(rows) for rows in final],
        episodes=tr.episodes,
    )


def behaviour_cloning(agent: Any, memory: Any, updates: int, batch_size: int) -> dict[str, float]:
    """Train ``agent.actor`` on ``updates`` batches of the replay: maximise the log-likelihood of the stored
    actions (``agent.cloning_loss``). Returns the first and last batch's mean negative log-likelihood."""
    if not hasattr(agent, "cloning_loss"):
        raise ConfigError(f"train.bc_updates: {type(agent).__name__} cannot clone demonstrations")
    first = last = math.nan
    for i in range(updates):
        nll = agent.cloning_loss(memory.sample(batch_size))
        agent.actor_optim.zero_grad(set_to_none=True)
        nll.backward()
        agent.actor_optim.step()
        last = float(nll.detach())
        first = last if i == 0 else first
    return {"bc_nll_first": first, "bc_nll_last": last}
