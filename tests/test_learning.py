"""SAC learns to drive: on a short straight-and-curve track (a 4.6 s reference lap) the deterministic
policy reaches the finish within a fixed budget of car-steps. Counted in steps, not time: with a fixed
seed, one torch thread and one simulator thread the run is the same on every machine."""

from __future__ import annotations

from conftest import straight_then_curve, tiny_config

from evo_rl.train.loop import Trainer
from evo_rl.train.run import create_run

BUDGET = 5000  # car-steps over 8 cars; seeds 0-3 first finish between 2400 and 3300


def test_sac_reaches_the_finish_of_a_short_track_within_a_step_budget(tmp_path):
    straight_then_curve().save(tmp_path / "straight-curve.track")
    cfg = tiny_config(
        f"train.runs_dir={tmp_path}",
        f"env.track={tmp_path / 'straight-curve.track'}",
        "env.n_envs=8",
        "env.max_steps=300",  # 15 s of sim time, three reference laps
        "memory.capacity=50000",
        "memory.batch_size=128",
        "train.start_steps=800",
        "train.updates_per_step=0.25",
        f"train.total_steps={BUDGET}",
        "train.eval_episodes=4",
        "train.eval_every_minutes=600",  # one evaluation, at the end: nothing depends on the clock
        "train.checkpoint_every_minutes=600",
        "train.save_replay=false",
        "train.seed=0",
        "algo.sac.hidden=[64, 64]",
        "algo.sac.lr_actor=0.001",
        "algo.sac.lr_critic=0.001",
        "algo.sac.lr_entropy=0.001",
    )
    trainer = Trainer(cfg, create_run(tmp_path, "learn", cfg))
    actor = trainer.agent.actor
    untrained = trainer.evaluator.run(lambda obs: actor.act(obs, test=True))
    assert untrained.finish_rate == 0.0  # the freshly built policy does not get there

    c = trainer.train()
    assert c.env_steps == BUDGET and c.updates == round(0.25 * (BUDGET - 800 + 8))
    result = trainer.last_eval
    assert result is not None and result.finish_rate == 1.0, result
    assert result.lap_time_ratio is not None and result.lap_time_ratio < 2.0
