"""Configuration: validation messages, overrides, import paths, `evo-rl config show`."""

from pathlib import Path

import pytest
import yaml

from evo_rl.cli import main
from evo_rl.config import EvoConfig, config_to_yaml, field_docs, import_object, load_config
from evo_rl.errors import ConfigError

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))


def test_defaults_round_trip_through_yaml(tmp_path):
    cfg = load_config()
    path = tmp_path / "c.yaml"
    path.write_text(config_to_yaml(cfg))
    assert load_config(path) == cfg


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_example_configs_validate(path):
    assert isinstance(load_config(path), EvoConfig)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_example_configs_pass_the_start_up_checks(path, tmp_path):
    from evo_rl.train.preflight import check_startup

    check_startup(load_config(path, [f"train.runs_dir={tmp_path / 'runs'}", "train.device=cpu"]))


def test_overrides_parse_yaml_values():
    cfg = load_config(None, ["env.n_envs=8", "env.flat=true", "sim.dt=0.1", "algo.name=redq"])
    assert (cfg.env.n_envs, cfg.env.flat, cfg.sim.dt, cfg.algo.name) == (8, True, 0.1, "redq")


def test_error_names_field_value_and_rule(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("env:\n  n_envs: -3\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    msg = str(e.value)
    assert "env.n_envs" in msg and "-3" in msg and "greater than or equal to 1" in msg and str(path) in msg


def test_unknown_key_lists_allowed_keys():
    with pytest.raises(ConfigError) as e:
        load_config(None, ["env.n_env=8"])
    assert "env.n_env: unknown key" in str(e.value) and "n_envs" in str(e.value)


def test_bad_literal_lists_choices():
    with pytest.raises(ConfigError) as e:
        load_config(None, ["env.flavour=pixels"])
    assert "env.flavour" in str(e.value) and "'lidar'" in str(e.value) and "'full'" in str(e.value)


def test_malformed_yaml_names_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("env:\n  track: evo-test\n  n_envs: [1, 2\n")
    with pytest.raises(ConfigError, match=r"not valid YAML at line \d+"):
        load_config(path)


def test_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping of sections"):
        load_config(path)


def test_override_syntax_errors():
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(None, ["env.n_envs"])
    with pytest.raises(ConfigError, match="not a section"):
        load_config(None, ["env.track=evo-test", "env.track.x=1"])
    with pytest.raises(ConfigError, match=r"env\.track = \{'x': 1\}"):
        load_config(None, ["env.track.x=1"])


def test_import_object_reports_each_failure():
    assert import_object("os.path:join") is __import__("os").path.join
    with pytest.raises(ConfigError, match="cannot import module 'no_such_module_xyz'"):
        import_object("no_such_module_xyz:Thing")
    with pytest.raises(ConfigError, match="has no attribute 'Nope'"):
        import_object("os:Nope")
    with pytest.raises(ConfigError, match="not an import path"):
        import_object("plainword")


def test_every_field_is_documented():
    rows = field_docs()
    assert len(rows) > 40
    undocumented = [path for path, _, desc in rows if not desc]
    assert undocumented == []


def test_config_show_cli(capsys, tmp_path):
    assert main(["config", "show", "env.n_envs=3"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["env"]["n_envs"] == 3
    path = tmp_path / "c.yaml"
    path.write_text("env:\n  n_envs: 5\n")
    assert main(["config", "show", str(path), "env.hist_len=2"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert (shown["env"]["n_envs"], shown["env"]["hist_len"]) == (5, 2)
    assert main(["config", "show", "env.n_envs=zero"]) == 2
    assert "env.n_envs" in capsys.readouterr().err
