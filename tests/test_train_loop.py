"""The training loop on the real pipeline: checkpoint round trip, resume, corrupt
checkpoints, signals, smoke runs per algorithm and observation flavour, eval."""

from __future__ import annotations

import json
import os
import signal
import threading

import numpy as np
import pytest
import torch
from conftest import TINY_TRAIN, tiny_config

from evo_rl.cli import main
from evo_rl.train.loop import Trainer
from evo_rl.train.policy import load_policy
from evo_rl.train.run import create_run, resolve_run

# TINY_TRAIN (4 cars, short episodes, tiny networks, one thread each) and the other algorithms' tiny networks
ALGOS_SMALL = [
    "algo.redq.hidden=[32, 32]",
    "algo.redq.n_critics=3",
    "algo.ppo.hidden=[32, 32]",
    "algo.ppo.n_steps=32",
    "algo.ppo.batch_size=16",
    "algo.ppo.epochs=1",
]
SMALL = [*TINY_TRAIN, *ALGOS_SMALL]


def small_cfg(*extra: str):
    return tiny_config(*ALGOS_SMALL, *extra)


def _fixed_obs(trainer: Trainer):
    obs, _ = trainer.evaluator.env.reset(seed=123)
    return obs


def _agent_state(trainer: Trainer) -> dict:
    from evo_rl.algos.state import flatten_state

    return flatten_state(trainer.agent.state_dict())[0]


def test_checkpoint_round_trip_and_resume(tmp_path):
    cfg = small_cfg("train.total_steps=160")
    run = create_run(tmp_path, "r", cfg)
    first = Trainer(cfg, run)
    c = first.train()
    # 4 cars, start_steps 40, batch 32, updates_per_step 0.25, 3-step returns (a car's newest 3 steps wait for
    # their returns: 44 - 12 = 32 sampleable at env_steps 44): iterations at 44, 48, ..., 160 pay one each
    assert c.env_steps == 160 and c.updates == len(range(44, 161, 4)) == 30 and c.evaluations == 1
    obs = _fixed_obs(first)
    state = _agent_state(first)
    actions = first.agent.actor.act(obs, test=True)
    torch_rng = torch.get_rng_state()
    np_rng = first.rng.bit_generator.state
    replay = first.memory.sample(8)  # the memory's sampling RNG is restored too

    second = Trainer(cfg, run, resume=True)
    assert second.counters.env_steps == 160 and second.counters.updates == c.updates
    assert second.counters.sessions == 2
    np.testing.assert_array_equal(second.agent.actor.act(obs, test=True), actions)
    resumed = _agent_state(second)
    assert resumed.keys() == state.keys()
    for key, value in state.items():  # networks, targets, optimiser moments and steps, alpha
        assert torch.equal(resumed[key], value), key
    assert any("optim" in k and "exp_avg" in k for k in state)
    assert torch.equal(torch.get_rng_state(), torch_rng)
    assert second.rng.bit_generator.state == np_rng
    assert len(second.memory) == len(first.memory) > 0
    again = second.memory.sample(8)
    for a, b in zip(replay.obs, again.obs, strict=True):
        assert torch.equal(a, b)
    assert torch.equal(replay.indices, again.indices) and torch.equal(replay.act, again.act)

    second.cfg.train.total_steps = 240  # continue: counters go on, metrics.jsonl grows
    c2 = second.train()
    assert c2.env_steps == 240 and c2.updates == 30 + len(range(164, 241, 4)) and c2.evaluations == 2
    steps = [r["env_steps"] for r in map(json.loads, run.metrics_path.read_text().splitlines())]
    assert steps == sorted(steps) and steps[-1] == 240 and 160 in steps


def test_learning_rates_follow_the_schedule_and_resume_with_it(tmp_path):
    from evo_rl.train.learn import lr_factor

    assert [lr_factor("constant", 0.1, f) for f in (0.0, 0.5, 1.0)] == [1.0, 1.0, 1.0]
    assert [lr_factor("linear", 0.1, f) for f in (0.0, 0.5, 1.0)] == pytest.approx([1.0, 0.55, 0.1])
    assert [lr_factor("cosine", 0.1, f) for f in (0.0, 0.5, 1.0)] == pytest.approx([1.0, 0.55, 0.1])
    assert lr_factor("cosine", 0.1, 0.25) > lr_factor("linear", 0.1, 0.25)  # the cosine stays high longer
    cfg = small_cfg("train.total_steps=160", "train.lr_schedule=linear", "train.lr_final=0.2")
    lr = cfg.algo.sac.lr_actor
    run = create_run(tmp_path, "r", cfg)
    first = Trainer(cfg, run)
    first.train()  # the run's last loop iteration is at its whole budget: the final rates
    groups = [first.agent.actor_optim.param_groups[0], first.agent.critic_optim.param_groups[0]]
    assert [g["lr"] for g in groups] == pytest.approx([0.2 * lr, 0.2 * cfg.algo.sac.lr_critic])
    assert groups[0]["initial_lr"] == lr
    second = Trainer(cfg, run, resume=True)  # the checkpoint keeps both rates
    group = second.agent.actor_optim.param_groups[0]
    assert group["initial_lr"] == lr and group["lr"] == pytest.approx(0.2 * lr)


def test_corrupt_latest_checkpoint_resumes_from_previous(tmp_path):
    cfg = small_cfg("train.total_steps=80")
    run = create_run(tmp_path, "c", cfg)
    trainer = Trainer(cfg, run)
    trainer.train()  # checkpoint at 80 steps (with an evaluation, so it ranks among the best)
    replay_at_80 = len(trainer.memory)
    trainer.cfg.train.total_steps = 120
    trainer.train()  # checkpoint at 120 steps
    latest = trainer.checkpoints.saved()[0]
    data = bytearray((latest / "agent.safetensors").read_bytes())
    data[len(data) // 2] ^= 0x55
    (latest / "agent.safetensors").write_bytes(bytes(data))
    resumed = Trainer(cfg, run, resume=True)
    assert resumed.counters.env_steps == 80
    notes = "\n".join(resumed._notes)
    assert latest.name in notes and "previous checkpoint" in notes
    assert len(resumed.memory) == replay_at_80 > 0  # the previous checkpoint keeps its replay memory too


def test_sigterm_saves_a_checkpoint(tmp_path):
    cfg = small_cfg("train.total_steps=100000000", "train.eval_every_minutes=60")
    run = create_run(tmp_path, "s", cfg)
    trainer = Trainer(cfg, run)
    timer = threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    c = trainer.train()
    timer.join()
    assert trainer.stop_reason == "SIGTERM"
    assert c.evaluations == 0  # no evaluation on a signal, only the checkpoint
    ck = trainer.checkpoints.load_latest()
    assert ck.state["env_steps"] == c.env_steps > 0
    assert run.policy_path.is_file() and not run.trainer_path.exists()
    assert signal.getsignal(signal.SIGTERM) is not trainer._on_signal  # handlers restored


PER = ["memory.prioritized=true", "memory.nstep=3"]
IMAGES = ["camera.width=36", "camera.height=36", "env.hist_len=2"]


@pytest.mark.parametrize(
    "algo, flavour, extra",
    [
        ("sac", "lidar", []),
        ("sac", "lidar", PER),
        ("redq", "lidar", []),
        ("ppo", "lidar", []),
        ("sac", "lidar_progress", []),
        ("sac", "full", IMAGES),
    ],
)
def test_smoke_train_cli(tmp_path, capsys, algo, flavour, extra):
    argv = ["train", "--name", f"{algo}-{flavour}", *SMALL, *extra]
    argv += [f"algo.name={algo}", f"env.flavour={flavour}", f"train.runs_dir={tmp_path}", "train.total_steps=96"]
    assert main(argv) == 0
    run = resolve_run(f"{algo}-{flavour}", tmp_path)
    records = [json.loads(line) for line in run.metrics_path.read_text().splitlines()]
    assert records[-1]["env_steps"] == 96 and any("eval" in r for r in records)
    assert any(r.get("losses") for r in records)
    assert run.load_config().algo.name == algo
    assert list(run.checkpoints_dir.iterdir())
    policy = load_policy(run.policy_path)
    assert policy.cfg.env.flavour == flavour and policy.meta["env_steps"] == 96
    assert "96 env steps" in capsys.readouterr().out


def test_minutes_budget_and_eval_json(tmp_path, capsys):
    argv = ["train", "--minutes", "0.02", "--name", "m", *SMALL, f"train.runs_dir={tmp_path}"]
    assert main(argv) == 0
    run = resolve_run("m", tmp_path)
    assert run.load_config().train.minutes == 0.02
    capsys.readouterr()
    assert main(["eval", str(run.path), "--episodes", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    keys = {"finish_rate", "lap_times", "mean_lap_time", "reference_lap_time", "lap_time_ratio"}
    assert keys <= out.keys()
    assert out["episodes"] == 2 and 0.0 <= out["finish_rate"] <= 1.0
    assert out["reference_lap_time"] > 0
    if not out["lap_times"]:
        assert out["mean_lap_time"] is None and out["lap_time_ratio"] is None
    # overrides like train's: a step limit of 5 steps ends every episode at it
    assert main(["eval", str(run.path), "--episodes", "2", "--json", "env.max_steps=5"]) == 0
    assert json.loads(capsys.readouterr().out)["end_reasons"] == {"time_limit": 2}
    assert main(["eval", str(run.path), "-e", "2", "env.hist_len=7"]) == 2  # the policy's layout cannot change
    assert "env.hist_len" in capsys.readouterr().err


def test_resume_cli_accepts_only_train_overrides(tmp_path, capsys):
    assert main(["train", "--name", "x", *SMALL, f"train.runs_dir={tmp_path}", "train.total_steps=40"]) == 0
    assert main(["train", "--resume", "x", f"train.runs_dir={tmp_path}", "env.n_envs=8"]) == 2
    assert "only train.*" in capsys.readouterr().err
    assert main(["train", "--resume", "x", f"train.runs_dir={tmp_path}", "train.total_steps=80"]) == 0
    run = resolve_run("x", tmp_path)
    assert run.load_config().train.total_steps == 80
    assert json.loads(run.metrics_path.read_text().splitlines()[-1])["env_steps"] == 80


def test_demo_writes_an_animation(tmp_path, capsys):
    assert main(["train", "--name", "d", *SMALL, f"train.runs_dir={tmp_path}", "train.total_steps=40"]) == 0
    capsys.readouterr()
    out = tmp_path / "lap.gif"
    assert main(["demo", "--policy", str(tmp_path / "d"), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert str(out) in text and ("lap time" in text or "no finish" in text)
    assert out.read_bytes()[:6] in (b"GIF87a", b"GIF89a")


def test_shipped_pretrained_policy_loads_and_drives(capsys):
    from evo_rl.train.policy import PRETRAINED

    policy = load_policy(PRETRAINED)
    assert policy.cfg.env.track == "evo-test" and policy.cfg.env.flavour == "lidar"
    assert PRETRAINED.stat().st_size < 2_000_000
    assert main(["eval", "pretrained", "--episodes", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["episodes"] == 1 and out["track"] == "evo-test"
    # `evo-rl demo` promises a lap: if the simulator's physics change, retrain the policy (docs/training.md)
    assert out["finish_rate"] == 1.0, out
