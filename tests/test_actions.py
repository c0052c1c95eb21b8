"""One rule for actions: `sim.world.check_actions`, used by the World and the environments; the
trainer's replay stores exactly what the environment applied."""

from __future__ import annotations

import numpy as np
import pytest

from evo_rl.config import EvoConfig, load_config
from evo_rl.envs import VecTrackEnv
from evo_rl.errors import EvoError
from evo_rl.sim.catalog import get_track
from evo_rl.sim.world import World, check_actions


def test_check_actions_clips_copies_and_keeps_in_range_values() -> None:
    rng = np.random.default_rng(3)
    inside = rng.uniform(-1.0, 1.0, (5, 3)).astype(np.float32)
    inside[0] = [-1.0, 1.0, 0.0]
    out = check_actions(inside, 5)
    assert out.dtype == np.float32 and out is not inside and not np.shares_memory(out, inside)
    np.testing.assert_array_equal(out, inside)  # bit for bit: nothing to clip
    wild = np.array([[2.0, -3.0, 0.5], [-1.5, 0.25, 7.0]])
    np.testing.assert_array_equal(check_actions(wild, 2), np.float32([[1.0, -1.0, 0.5], [-1.0, 0.25, 1.0]]))
    assert check_actions(wild, 2, np.float64).dtype == np.float64


def test_world_and_env_raise_the_same_errors() -> None:
    track = get_track("evo-test")
    world = World(track, 3)
    env = VecTrackEnv(EvoConfig(), 3, track=track)
    env.reset(seed=0)
    bad = np.zeros((3, 3), np.float32)
    bad[2, 1] = np.inf
    messages = []
    for step in (world.step, env.step, lambda a: check_actions(a, 3)):
        for actions in (bad, np.zeros((2, 3), np.float32)):
            with pytest.raises(EvoError) as err:
                step(actions)
            messages.append(str(err.value))
    assert messages[0:2] == messages[2:4] == messages[4:6]
    assert "cars [2]" in messages[0] and "shape (3, 3)" in messages[1]


def test_replay_stores_what_the_env_applied(tmp_path) -> None:
    """Random actions and the actor's both reach the replay exactly as the environment applied them."""
    from evo_rl.train.loop import Trainer
    from evo_rl.train.run import create_run

    overrides = ["env.n_envs=4", "env.max_steps=40", "memory.capacity=2000", "memory.batch_size=16",
                 "train.start_steps=24", "train.total_steps=64", "train.dashboard=none", "train.torch_threads=1",
                 "train.eval_every_minutes=1000", "sim.threads=1", "algo.sac.hidden=[16, 16]"]  # fmt: skip
    cfg = load_config(None, overrides)
    trainer = Trainer(cfg, create_run(tmp_path, "actions", cfg))
    applied, stored = [], []
    env_step, memory_add = trainer.env.step, trainer.memory.add_frames

    def step(actions):
        out = env_step(actions)
        applied.append(trainer.env.core.prev_action.copy())
        return out

    def add(frames, action, *rest, **kw):
        stored.append(np.asarray(action, np.float32).copy())
        return memory_add(frames, action, *rest, **kw)

    trainer.env.step, trainer.memory.add_frames = step, add
    trainer.train()
    assert len(stored) == len(applied) >= 64 // 4  # both phases: 6 random steps, then the actor's
    for a, b in zip(applied, stored, strict=True):
        np.testing.assert_array_equal(a, b)
