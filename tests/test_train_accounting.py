"""The off-policy update-to-data accounting of the Trainer, counted exactly.

The rule (evo_rl/train/loop.py, ``_offpolicy_step``): every iteration steps all N cars
once; once ``env_steps >= train.start_steps`` and the replay memory holds at least one
batch, each iteration adds ``N * train.updates_per_step`` to ``update_debt`` and pays one
gradient update per whole unit before the next car step. The run stops at the first
iteration that reaches ``train.total_steps`` with nothing whole owed; a fraction stays in
``update_debt``.
"""

from __future__ import annotations

import math

import pytest
from conftest import tiny_config

from evo_rl.train.loop import Trainer
from evo_rl.train.run import create_run

CASES = [
    # updates_per_step, cars, start_steps, batch_size, total_steps, updates by hand
    # 3 cars, 20 iterations (env_steps 3..60); the memory holds env_steps - 3 sampleable transitions, so the
    # batch of 16 first fits at env_steps 21 (start_steps 10 passed long before): 14 iterations * 1.5 = 21
    pytest.param(0.5, 3, 10, 16, 60, 21, id="half-3cars-batch-bound"),
    # 4 cars, 25 iterations (4..100); start_steps 40 binds (36 transitions >= 32 by then): 16 * 8 = 128
    pytest.param(2.0, 4, 40, 32, 100, 128, id="two-4cars-start-bound"),
    # 2 cars, total 41 is passed at 42 (21 iterations); batch 8 fits at 10: 17 * 0.5 = 8.5 -> 8, 0.5 stays owed
    pytest.param(0.25, 2, 0, 8, 41, 8, id="quarter-2cars-fraction-left"),
]


def _trainer(tmp_path, ups: float, n: int, start: int, batch: int, total: int) -> Trainer:
    cfg = tiny_config(
        f"train.runs_dir={tmp_path}",
        f"env.n_envs={n}",
        f"train.start_steps={start}",
        f"memory.batch_size={batch}",
        f"train.updates_per_step={ups}",
        f"train.total_steps={total}",
        "train.eval_episodes=1",
        "algo.sac.hidden=[16]",
        "memory.nstep=1",  # the counts by hand: a transition is sampleable one step after it is added
    )
    return Trainer(cfg, create_run(tmp_path, "acct", cfg))


@pytest.mark.parametrize(("ups", "n", "start", "batch", "total", "by_hand"), CASES)
def test_updates_are_exactly_updates_per_step_times_car_steps_after_start(
    tmp_path, ups, n, start, batch, total, by_hand
):
    trainer = _trainer(tmp_path, ups, n, start, batch, total)
    adds: list[tuple[int, int]] = []  # (env_steps after the iteration, sampleable transitions) per car step
    update_at: list[int] = []  # env_steps at each gradient update

    real_add, real_update = trainer.memory.add_frames, trainer.agent.update

    def add(*args, **kwargs):
        real_add(*args, **kwargs)
        adds.append((trainer.counters.env_steps + n, len(trainer.memory)))

    def update(batch_):
        assert batch_.act.shape[0] == batch
        update_at.append(trainer.counters.env_steps)
        return real_update(batch_)

    trainer.memory.add_frames = add
    trainer.agent.update = update
    c = trainer.train()

    iterations = math.ceil(total / n)
    assert c.env_steps == iterations * n == adds[-1][0]
    assert [e for e, _ in adds] == [n * (i + 1) for i in range(iterations)]

    # the rule, replayed iteration by iteration: updates are paid at the iteration that owes them
    debt, expected_at = 0.0, []
    for env_steps, n_valid in adds:
        if env_steps >= start and n_valid >= batch:
            debt += n * ups
        whole = math.floor(debt)
        expected_at += [env_steps] * whole
        debt -= whole
    assert update_at == expected_at
    qualifying = sum(1 for e, v in adds if e >= start and v >= batch)
    assert c.updates == len(update_at) == math.floor(ups * n * qualifying) == by_hand
    assert c.update_debt == pytest.approx(ups * n * qualifying - by_hand, abs=1e-9)
    assert 0.0 <= c.update_debt < 1.0
    assert trainer.agent.num_updates == c.updates


def test_no_updates_before_start_steps(tmp_path):
    """A budget spent inside the random phase trains nothing and owes nothing."""
    trainer = _trainer(tmp_path, 2.0, 4, 48, 8, 48)  # the last iteration reaches 48: before it, 44 < start
    c = trainer.train()
    assert c.env_steps == 48
    assert c.updates == 8 and c.update_debt == 0.0  # only the iteration at env_steps 48: 4 cars * 2
    trainer2 = _trainer(tmp_path / "b", 2.0, 4, 52, 8, 48)  # start_steps beyond the budget
    c2 = trainer2.train()
    assert c2.env_steps == 48 and c2.updates == 0 and c2.update_debt == 0.0
