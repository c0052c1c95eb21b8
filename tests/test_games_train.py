"""The trainer with a game as its car source (``env.source: tm2020``), against the virtual game at 5x:
it trains and checkpoints, starts from a simulator run (``--init``), and when the game does not come
back it saves its checkpoint, says so, and resumes afterwards."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_config

from evo_rl.errors import CheckpointError
from evo_rl.games.errors import GameConnectionError
from evo_rl.games.tm2020.virtual import VirtualTM2020
from evo_rl.train.loop import Trainer
from evo_rl.train.run import create_run

SCALE = 5.0


def game_overrides(game: VirtualTM2020, *extra: str) -> list[str]:
    return [
        "env.source=tm2020",
        "game.input=virtual",
        f"game.port={game.port}",
        f"game.input_port={game.input_port}",
        f"game.time_scale={SCALE}",
        "env.max_steps=400",
        *extra,
    ]


def test_trains_in_the_virtual_game_and_starts_from_a_simulator_run(tmp_path) -> None:
    sim_cfg = tiny_config(f"train.runs_dir={tmp_path}", "train.minutes=0.05", "env.max_steps=400")
    sim_run = create_run(tmp_path, "sim", sim_cfg)
    sim = Trainer(sim_cfg, sim_run)
    sim.train()
    with VirtualTM2020("evo-test", port=0, time_scale=SCALE) as game:
        cfg = tiny_config(f"train.runs_dir={tmp_path}", "train.minutes=0.1", *game_overrides(game))
        run = create_run(tmp_path, "game", cfg)
        trainer = Trainer(cfg, run, init=sim_run.path)
        assert trainer.n_envs == 1 and trainer.env.world.name == "tm2020"
        for a, b in zip(trainer.agent.actor.parameters(), sim.agent.actor.parameters(), strict=True):
            torch.testing.assert_close(a, b)  # the simulator run's agent, loaded before any game step
        c = trainer.train()
    assert c.env_steps > 50 and c.updates > 0 and c.evaluations >= 1
    assert len(trainer.checkpoints.saved()) >= 1 and (run.path / "policy.safetensors").is_file()
    assert trainer.env.timing.steps > 0  # the real-time timing reached the dashboard's source


def test_init_refuses_another_observation_layout(tmp_path) -> None:
    sim_cfg = tiny_config(f"train.runs_dir={tmp_path}", "train.minutes=0.02", "env.hist_len=2")
    sim_run = create_run(tmp_path, "sim", sim_cfg)
    Trainer(sim_cfg, sim_run).train()
    cfg = tiny_config(f"train.runs_dir={tmp_path}")
    with pytest.raises(CheckpointError, match=r"observations differ.*env.hist_len: 2 there, 4 here"):
        Trainer(cfg, create_run(tmp_path, "other", cfg), init=sim_run.path)


def test_a_game_that_does_not_come_back_stops_the_run_with_its_checkpoint(tmp_path) -> None:
    game = VirtualTM2020("evo-test", port=0, time_scale=SCALE).start()
    port, input_port = game.port, game.input_port
    extra = ("game.record_timeout=0.3", "game.reconnect_timeout=1.0", "train.minutes=1.0")
    cfg = tiny_config(f"train.runs_dir={tmp_path}", *game_overrides(game, *extra))
    run = create_run(tmp_path, "lost", cfg)
    trainer = Trainer(cfg, run)

    import threading

    threading.Timer(4.0, game.stop).start()  # the game goes away a few seconds into the run
    with pytest.raises(GameConnectionError, match="did not come back within game.reconnect_timeout"):
        trainer.train()
    assert trainer.stop_reason == "game_lost"
    saved = trainer.checkpoints.saved()
    assert saved, "the run keeps what it learned"
    steps, stored = trainer.counters.env_steps, len(trainer.memory)
    # (the newest memory.nstep steps wait for the observations that end their returns)
    assert steps > 0 and stored >= steps - cfg.memory.nstep
    # the game is back: the run resumes from its checkpoint, the replay included
    with VirtualTM2020("evo-test", port=port, input_port=input_port, time_scale=SCALE):
        resumed = Trainer(run.load_config(), run, resume=True, minutes=0.03)
        assert resumed.counters.env_steps == steps and len(resumed.memory) == stored
        c = resumed.train()
    assert c.env_steps > steps and np.isfinite(c.elapsed)
