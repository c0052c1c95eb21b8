"""The trainer talks to agents through OffPolicyAgent / OnPolicyAgent only: a custom agent written from
scratch (no EVO RL base class) trains, and the TD error its update returns becomes the replay's priorities."""

from __future__ import annotations

import numpy as np
import torch
from conftest import tiny_config
from gymnasium import spaces

from evo_rl.algos import Batch, OffPolicyAgent, UpdateResult, make_agent
from evo_rl.algos.base import resolve_device
from evo_rl.memory.replay import PRIORITY_EPS
from evo_rl.nets import SquashedGaussianActor
from evo_rl.train.loop import Trainer
from evo_rl.train.run import create_run

TD_ERROR = 3.0


class ScratchAgent:
    """An off-policy agent with exactly the protocol's members: it records its batches and never learns."""

    on_policy = False

    def __init__(self, obs_space, act_space, cfg, device):
        self.device = torch.device(device)
        self.gamma = 0.9
        self.actor = SquashedGaussianActor(obs_space, act_space, [8]).to(self.device)
        self.cfg = cfg
        self.batches: list[Batch] = []

    def update(self, batch: Batch) -> UpdateResult:
        self.batches.append(batch)
        td_error = torch.full((batch.act.shape[0],), TD_ERROR)
        return UpdateResult({"calls": float(len(self.batches))}, td_error)

    def state_dict(self) -> dict:
        return {"actor": self.actor.state_dict(), "calls": torch.tensor(len(self.batches))}

    def load_state_dict(self, state: dict) -> None:
        self.actor.load_state_dict(state["actor"])


def test_a_custom_agent_trains_through_the_protocol_and_sets_priorities(tmp_path):
    cfg = tiny_config(
        f"train.runs_dir={tmp_path}",
        f"algo.name={__name__}:ScratchAgent",
        "memory.prioritized=true",
        "memory.nstep=2",
        "train.total_steps=96",
        "train.updates_per_step=0.5",
    )
    trainer = Trainer(cfg, create_run(tmp_path, "scratch", cfg))
    agent = trainer.agent
    assert isinstance(agent, ScratchAgent) and isinstance(agent, OffPolicyAgent) and not trainer.on_policy
    assert trainer.memory.gamma == 0.9  # the replay's n-step returns use the agent's gamma
    c = trainer.train()

    # 4 cars, start_steps 40, batch 32: iterations at env_steps 40..96 pay 4 * 0.5 = 2 updates each
    assert c.env_steps == 96 and c.updates == len(agent.batches) == 2 * len(range(40, 97, 4)) == 30
    last = agent.batches[-1]
    assert isinstance(last, Batch) and last.act.shape == (32, 3) and last.indices is not None
    assert last.discount is not None and last.weights is not None
    prio = trainer.memory._prio[last.indices.numpy()]  # every sampled slot got |td_error| + eps
    np.testing.assert_allclose(prio, TD_ERROR + PRIORITY_EPS)
    assert (trainer.run.path / "metrics.jsonl").read_text().count('"calls"') >= 1  # metrics reach the log


def test_custom_agents_get_the_whole_config_and_a_resolved_device():
    cfg = tiny_config(f"algo.name={__name__}:ScratchAgent")
    obs = spaces.Box(-1.0, 1.0, (5,), np.float32)
    act = spaces.Box(-1.0, 1.0, (3,), np.float32)
    agent = make_agent(cfg, obs, act, device="auto")  # ScratchAgent calls torch.device(device): "auto" would fail
    assert type(agent) is ScratchAgent and agent.cfg is cfg and agent.device == resolve_device("auto")
