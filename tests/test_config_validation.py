"""Config validation and start-up checks: bad values, bad files, and `train` failing before a run folder exists."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
import torch

from evo_rl.cli import main
from evo_rl.config import (
    MAX_SHOWN_ERRORS,
    EvoConfig,
    apply_overrides,
    format_validation_errors,
    load_config,
    validate_config,
)
from evo_rl.envs import resolve_config
from evo_rl.errors import ConfigError, EvoError
from evo_rl.train.preflight import check_runs_dir, check_startup

PACKAGE = Path(__file__).resolve().parent.parent / "evo_rl"

# fast enough that a run which should have been refused still ends quickly
SMALL = [
    "env.n_envs=2",
    "env.max_steps=20",
    "memory.capacity=2000",
    "memory.batch_size=8",
    "train.total_steps=20",
    "train.start_steps=20",
    "train.eval_episodes=1",
    "train.dashboard=none",
    "train.torch_threads=1",
    "sim.threads=1",
    "algo.sac.hidden=[8]",
]


def _write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def _train(tmp_path: Path, *overrides: str, options: tuple[str, ...] = ()) -> int:
    return main(["train", *options, *SMALL, *overrides, f"train.runs_dir={tmp_path / 'runs'}"])


def _no_run_folder(tmp_path: Path) -> bool:
    runs = tmp_path / "runs"
    return not runs.exists() or not any(runs.iterdir())


# --------------------------------------------------------------------------- public helpers, one override path


def test_no_module_imports_a_private_name_of_another_package():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("evo_rl."):
                there = node.module.split(".")[1]
                private = [a.name for a in node.names if a.name.startswith("_")]
                if there != here and private:
                    wrong.append(f"{path.relative_to(PACKAGE)}: {node.module}.{', '.join(private)}")
    assert wrong == []


def test_apply_overrides_takes_texts_and_mappings_alike():
    texts = apply_overrides({}, ["env.n_envs=3", "lidar.beams=7", "train.device=cpu"])
    mapping = apply_overrides({}, {"env.n_envs": 3, "lidar.beams": 7, "train.device": "cpu"})
    assert texts == mapping == {"env": {"n_envs": 3}, "lidar": {"beams": 7}, "train": {"device": "cpu"}}
    cfg = validate_config(texts, "test")
    assert (cfg.env.n_envs, cfg.lidar.beams) == (3, 7)
    with pytest.raises(ConfigError, match="invalid configuration \\(here\\):\n  env.n_envs = 0"):
        validate_config({"env": {"n_envs": 0}}, "here")


def test_environment_overrides_report_mistakes_as_load_config_does():
    with pytest.raises(ConfigError) as from_cli:
        load_config(None, ["env.track=evo-mini", "env.track.x=1"])
    with pytest.raises(ConfigError) as from_env:
        resolve_config(None, **{"env.track.x": 1})
    assert "track is not a section" in str(from_cli.value) and "track is not a section" in str(from_env.value)
    with pytest.raises(ConfigError, match="env.no_such_field: unknown key"):
        resolve_config(None, no_such_field=1)


def test_format_validation_errors_is_public_and_names_the_source():
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as e:
        EvoConfig.model_validate({"sim": {"dt": -1}})
    text = format_validation_errors(e.value, "my.yaml")
    assert text.splitlines()[0] == "invalid configuration (my.yaml):" and "sim.dt = -1" in text


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize(
    "override, field",
    [
        ("algo.sac.lr_actor=.inf", "algo.sac.lr_actor"),
        ("algo.redq.lr_critic=.inf", "algo.redq.lr_critic"),
        ("algo.ppo.lr=.nan", "algo.ppo.lr"),
        ("car.engine_force=.inf", "car.engine_force"),
        ("algo.sac.target_entropy=-.inf", "algo.sac.target_entropy"),
        ("car.gear_ratios=[1.0, .nan]", "car.gear_ratios[1]"),
        ("train.minutes=.inf", "train.minutes"),
        ("algo.ppo.log_std_init=.nan", "algo.ppo.log_std_init"),
    ],
)
def test_non_finite_floats_are_refused_naming_the_field(override, field):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert f"{field} = " in str(e.value) and "finite" in str(e.value)


def test_nan_reward_weight_is_refused_naming_the_term(tmp_path):
    path = _write(tmp_path / "c.yaml", "reward:\n  - term: progress_distance\n    weight: .nan\n")
    with pytest.raises(ConfigError, match=r"reward\[0\]\.weight = nan: Input should be a finite number"):
        load_config(path)


def test_non_finite_reward_term_parameter_is_refused_at_start_up():
    cfg = load_config(None, ["reward=[{term: potential_progress, params: {scale: .inf}}]"])
    with pytest.raises(ConfigError, match=r"(?s)reward\[0\] \(potential_progress\).*params\.scale = inf"):
        check_startup(cfg)


def test_empty_reward_list_is_refused_with_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="reward = \\[\\]: the list of reward terms is empty.*progress_distance"):
        load_config(None, ["reward=[]"])
    assert main(["config", "show", "reward=[]"]) == 2


@pytest.mark.parametrize("algo", ["sac", "redq", "ppo"])
@pytest.mark.parametrize("hidden", ["[0]", "[64, -3]"])
def test_hidden_sizes_must_be_positive(algo, hidden):
    with pytest.raises(ConfigError, match=rf"algo\.{algo}\.hidden\[\d\] = -?\d+: Input should be greater than 0"):
        load_config(None, [f"algo.{algo}.hidden={hidden}"])


def test_ppo_minibatch_larger_than_its_rollout_is_refused():
    base = ["algo.name=ppo", "env.n_envs=16", "algo.ppo.n_steps=100"]  # rollout: 100 // 16 * 16 = 96 steps
    assert load_config(None, [*base, "algo.ppo.batch_size=96"]).algo.ppo.batch_size == 96
    with pytest.raises(ConfigError) as e:
        load_config(None, [*base, "algo.ppo.batch_size=97"])
    msg = str(e.value)
    assert "algo.ppo.batch_size (97)" in msg and "96 steps" in msg and "env.n_envs (16)" in msg
    assert "(top level)" not in msg
    # the ppo section of another algorithm is not used, so not checked
    assert load_config(None, ["algo.name=sac", "algo.ppo.n_steps=8", "algo.ppo.batch_size=64"]).algo.name == "sac"


def test_ppo_rollout_shorter_than_the_cars_is_refused():
    with pytest.raises(ConfigError, match=r"algo\.ppo\.n_steps \(8\).*env\.n_envs \(16\)"):
        load_config(None, ["algo.name=ppo", "algo.ppo.n_steps=8", "algo.ppo.batch_size=8"])


def test_potential_progress_gamma_must_equal_the_algorithms():
    term = "reward=[{term: potential_progress}]"
    check_startup(load_config(None, [term, "train.runs_dir=/tmp"]))  # 0.99 and SAC's default 0.99
    with pytest.raises(ConfigError) as e:
        check_startup(load_config(None, [term, "algo.preset=tmrl-sac"]))
    msg = str(e.value)
    assert "reward[0] (potential_progress): params.gamma is 0.99 (the term's default)" in msg
    assert "algo.sac.gamma = 0.995" in msg and "reward[0].params.gamma: 0.995" in msg
    given = "reward=[{term: potential_progress, params: {gamma: 0.9}}]"
    with pytest.raises(ConfigError, match=r"params\.gamma is 0\.9 but .*algo\.ppo\.gamma = 0\.99"):
        check_startup(load_config(None, [given, "algo.name=ppo"]))
    fixed = "reward=[{term: potential_progress, params: {gamma: 0.995}}]"
    check_startup(load_config(None, [fixed, "algo.preset=tmrl-sac", "train.runs_dir=/tmp"]))


@pytest.mark.parametrize("device", ["tpu9", "gpu", "cuda:", "cuda:x", "CPU", ""])
def test_unknown_device_strings_are_refused_naming_the_field(device):
    with pytest.raises(ConfigError, match=r"train\.device = .*unknown torch device; use auto"):
        load_config(None, [f"train.device={device!r}" if device else "train.device=''"])


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1", "mps"])
def test_known_device_strings_validate(device):
    assert load_config(None, [f"train.device={device}"]).train.device == device


def test_missing_cuda_device_is_refused_at_start_up():
    if torch.cuda.is_available():
        device = f"cuda:{torch.cuda.device_count()}"
        expected = "CUDA device(s)"
    else:
        device = "cuda"
        expected = "torch finds no CUDA device"
    with pytest.raises(ConfigError, match=rf"train\.device = '{device}', but .*{expected}"):
        check_startup(load_config(None, [f"train.device={device}"]))


# --------------------------------------------------------------------------- files


def test_duplicate_yaml_keys_are_reported_with_file_key_and_lines(tmp_path):
    path = _write(tmp_path / "dup.yaml", "env:\n  n_envs: 2\n  hist_len: 2\n  n_envs: 3\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    msg = str(e.value)
    assert str(path) in msg and "'n_envs'" in msg and "lines 2 and 4" in msg
    section = _write(tmp_path / "dup2.yaml", "env:\n  n_envs: 2\nsim:\n  dt: 0.05\nenv:\n  hist_len: 3\n")
    with pytest.raises(ConfigError, match="key 'env' appears twice .*lines 1 and 5"):
        load_config(section)


def test_yaml_merge_keys_may_still_be_overridden(tmp_path):
    path = _write(tmp_path / "merge.yaml", "env:\n  <<: {n_envs: 2, hist_len: 3}\n  n_envs: 5\n")
    cfg = load_config(path)
    assert (cfg.env.n_envs, cfg.env.hist_len) == (5, 3)


def test_duplicate_keys_in_an_override_value_are_refused():
    with pytest.raises(ConfigError, match="'n_envs' appears twice"):
        load_config(None, ["env={n_envs: 2, n_envs: 3}"])


def test_many_unknown_keys_are_capped(tmp_path):
    path = _write(tmp_path / "many.yaml", "".join(f"key{i}: 1\n" for i in range(5000)))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    lines = str(e.value).splitlines()
    assert len(lines) == MAX_SHOWN_ERRORS + 2
    assert lines[-1] == f"  ... and {5000 - MAX_SHOWN_ERRORS} more"
    assert len(str(e.value)) < 5000


def test_binary_config_files_give_clean_errors(tmp_path, capsys):
    binary = _write(tmp_path / "b.yaml", bytes(range(128, 256)) * 4)
    with pytest.raises(ConfigError, match=r"is not a text file: byte 0x80 at offset 0 is not UTF-8"):
        load_config(binary)
    nul = _write(tmp_path / "n.yaml", b"env:\n  n_envs: 2\x00\x01\n")
    with pytest.raises(ConfigError, match=r"not valid YAML at line 2: character '\\x00' is not allowed"):
        load_config(nul)
    assert main(["config", "show", str(binary)]) == 2
    assert main(["train", "--config", str(nul), f"train.runs_dir={tmp_path / 'runs'}"]) == 2
    err = capsys.readouterr().err
    assert err.count("evo-rl: error: config file") == 2 and "Traceback" not in err
    assert _no_run_folder(tmp_path)


def test_config_path_that_is_a_folder(tmp_path):
    with pytest.raises(ConfigError, match="is not a file"):
        load_config(tmp_path)


# --------------------------------------------------------------------------- start-up checks


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["env.track=no-such-track"], "env.track = 'no-such-track': unknown track"),
        (["env.track=missing/file.track"], "track file missing/file.track does not exist"),
        (["reward=[{term: no_such_term}]"], "reward[0] (no_such_term): unknown reward term"),
        (["reward=[{term: no_such_module_xyz:term}]"], "cannot import module 'no_such_module_xyz'"),
        (["reward=[{term: lateral_offset, params: {powr: 2}}]"], "params.powr: unknown parameter"),
        (["algo.name=no_such_module_xyz:Agent"], "algo.name 'no_such_module_xyz:Agent': cannot import module"),
        (["algo.name=dqn"], "algo.name 'dqn' is neither sac, redq, ppo nor an import path"),
        (["memory.capacity=100000000000000"], "memory.capacity = 100000000000000: the replay memory needs"),
        (["memory.capacity=3"], "memory.capacity = 3 is too small"),
        (["reward=[{term: potential_progress}]", "algo.preset=tmrl-redq"], "params.gamma is 0.99"),
    ],
)
def test_train_refuses_before_creating_a_run_folder(tmp_path, capsys, overrides, message):
    assert _train(tmp_path, *overrides, options=("--name", "bad")) == 2
    err = capsys.readouterr().err
    assert message in err and "cannot start training" in err
    assert _no_run_folder(tmp_path)
    assert main(["config", "show", *SMALL, *overrides]) == 2  # config show refuses the same config
    assert message in capsys.readouterr().err


def test_amp_on_a_device_without_it_is_refused(monkeypatch):
    from evo_rl.train import preflight

    cfg = load_config(None, ["algo.amp=true"])
    preflight._amp(cfg, torch.device("cpu"))  # bfloat16 on the CPU
    with pytest.raises(ConfigError, match="algo.amp = true needs a CUDA device or the CPU"):
        preflight._amp(cfg, torch.device("mps"))


def test_all_start_up_problems_are_reported_at_once():
    cfg = load_config(None, ["env.track=no-such-track", "algo.name=no_such_module_xyz:Agent"])
    with pytest.raises(ConfigError) as e:
        check_startup(cfg)
    msg = str(e.value)
    assert msg.startswith("cannot start training:\n- ") and "env.track" in msg and "algo.name" in msg


def test_replay_memory_estimate_matches_the_memory(monkeypatch):
    """The start-up estimate is the memory's own size: refused just above, accepted at it."""
    from evo_rl.envs.spaces import observation_space
    from evo_rl.memory import ObsLayout, ReplayMemory

    cfg = load_config(None, ["env.flavour=full", "env.n_envs=4", "memory.capacity=4000", "train.runs_dir=/tmp"])
    layout = ObsLayout.from_space(observation_space(cfg), cfg.env.hist_len, cfg.env.act_buf_len, "full")
    need = ReplayMemory.nbytes(layout, 4000)
    monkeypatch.setattr("evo_rl.memory.replay.available_memory", lambda: need)
    check_startup(cfg)
    monkeypatch.setattr("evo_rl.memory.replay.available_memory", lambda: need - 1)
    with pytest.raises(ConfigError, match="memory.capacity = 4000: the replay memory needs .* full observations"):
        check_startup(cfg)


def test_ppo_rollout_that_cannot_fit_is_refused():
    cfg = load_config(None, ["algo.name=ppo", "env.flavour=full", "algo.ppo.n_steps=10000000000"])
    with pytest.raises(ConfigError, match="algo.ppo.n_steps = 10000000000: the PPO rollout needs"):
        check_startup(cfg)


@pytest.mark.parametrize("minutes", ["nan", "inf", "-1", "0"])
def test_minutes_must_be_a_positive_finite_number(tmp_path, capsys, minutes):
    assert _train(tmp_path, options=("--minutes", minutes)) == 2
    err = capsys.readouterr().err
    assert "--minutes must be a positive number of minutes" in err and "Traceback" not in err
    assert _no_run_folder(tmp_path)


# --------------------------------------------------------------------------- runs_dir and the run folder


def test_runs_dir_that_is_a_file_or_under_one(tmp_path, capsys):
    afile = _write(tmp_path / "afile", "x")
    with pytest.raises(ConfigError, match="train.runs_dir = .* is a file, not a folder"):
        check_runs_dir(afile)
    with pytest.raises(ConfigError, match=f"cannot be created: {afile} is a file"):
        check_runs_dir(afile / "runs")
    assert main(["train", *SMALL, f"train.runs_dir={afile / 'runs'}"]) == 2
    assert "cannot be created" in capsys.readouterr().err
    check_runs_dir(tmp_path / "new" / "deeper")  # creatable
    assert not (tmp_path / "new").exists()


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True, reason="root may write anywhere")
def test_runs_dir_under_a_read_only_parent(tmp_path):
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        with pytest.raises(ConfigError, match="cannot be created: .* is not writable"):
            check_runs_dir(parent / "runs")
    finally:
        parent.chmod(0o700)


def test_run_folder_that_cannot_be_created_is_a_clean_error(tmp_path, capsys, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("evo_rl.train.run.create_run", refuse)
    assert _train(tmp_path) == 2
    err = capsys.readouterr().err
    assert "cannot create the run folder: Permission denied" in err and "train.runs_dir" in err


class _FailingTrainer:
    """Stands in for the Trainer, failing as its construction may (after the run folder exists)."""

    writes: str | None = None

    def __init__(self, cfg, run, **kwargs):
        if self.writes:
            (run.path / self.writes).write_text("x")
        raise EvoError("construction failed")


def test_a_failed_start_removes_the_new_run_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("evo_rl.train.loop.Trainer", _FailingTrainer)
    runs = tmp_path / "runs"
    assert _train(tmp_path, options=("--name", "first")) == 2
    assert "construction failed" in capsys.readouterr().err
    assert not runs.exists()  # the run folder and the runs_dir this start created
    (runs / "other").mkdir(parents=True)
    assert _train(tmp_path, options=("--name", "second")) == 2
    assert sorted(p.name for p in runs.iterdir()) == ["other"]  # only what this start created is gone
    assert _train(tmp_path) == 2  # a timestamp name
    assert sorted(p.name for p in runs.iterdir()) == ["other"]


def test_a_failed_start_keeps_folders_it_did_not_create_or_that_hold_more(tmp_path, monkeypatch):
    monkeypatch.setattr("evo_rl.train.loop.Trainer", _FailingTrainer)
    runs = tmp_path / "runs"
    (runs / "empty").mkdir(parents=True)
    assert _train(tmp_path, options=("--name", "empty")) == 2
    assert (runs / "empty").is_dir() and list((runs / "empty").iterdir()) == []  # kept, as it was
    monkeypatch.setattr(_FailingTrainer, "writes", "metrics.jsonl")
    assert _train(tmp_path, options=("--name", "wrote")) == 2
    assert (runs / "wrote" / "metrics.jsonl").is_file() and (runs / "wrote" / "config.yaml").is_file()


class _QuickTrainer:
    """Stands in for a Trainer that starts and ends at once."""

    last_eval = None
    stop_reason = ""

    def __init__(self, cfg, run, **kwargs):
        self.run = run

    def train(self):
        from types import SimpleNamespace

        return SimpleNamespace(env_steps=0, updates=0, episodes=0)


def test_a_name_freed_by_a_failed_start_can_be_used_again(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("evo_rl.train.loop.Trainer", _FailingTrainer)
    assert _train(tmp_path, options=("--name", "again")) == 2
    monkeypatch.setattr("evo_rl.train.loop.Trainer", _QuickTrainer)
    assert _train(tmp_path, options=("--name", "again")) == 0
    assert (tmp_path / "runs" / "again" / "config.yaml").is_file()
    assert "runs/again: 0 env steps" in capsys.readouterr().out


def test_resume_refuses_a_bad_override_without_touching_the_run(tmp_path, capsys):
    from evo_rl.train.run import create_run

    run = create_run(tmp_path / "runs", "r", load_config(None, SMALL))
    before = run.config_path.read_text()
    assert main(["train", "--resume", "r", f"train.runs_dir={tmp_path / 'runs'}", "train.device=tpu9"]) == 2
    assert "train.device = 'tpu9'" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["train", "--resume", "r", f"train.runs_dir={tmp_path / 'runs'}", "train.device=cuda"]) == 2
        assert "torch finds no CUDA device" in capsys.readouterr().err
    assert run.config_path.read_text() == before
