"""The sampling-based planner (evo_rl.sim.planner), record laps (evo_rl.sim.records), and where they show:
`evo-rl drive --planner mpc`, `evo-rl tracks list|record`, EvalResult.record_ratio."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from evo_rl.cli import main
from evo_rl.config import EvoConfig
from evo_rl.errors import EvoError
from evo_rl.sim import records
from evo_rl.sim.catalog import BUILTIN, get_track, list_tracks
from evo_rl.sim.expert import ExpertDriver
from evo_rl.sim.physics import STATE
from evo_rl.sim.planner import CAR_EXTRAS, CEMPlanner, PlannerSettings, plan_lap, restore, snapshot
from evo_rl.sim.reference_lap import compute_reference_lap
from evo_rl.sim.world import World
from evo_rl.train.evaluate import summarize

FAST = PlannerSettings(samples=32, horizon=30, iterations=2, elites=6, keep=2)  # ~3 s for a lap of evo-mini
MINI_BAND = (0.85, 1.08)  # planner lap with FAST over evo-mini's reference lap


@pytest.fixture(scope="module")
def cfg() -> EvoConfig:
    return EvoConfig()


@pytest.fixture(scope="module")
def mini_lap(cfg):
    return plan_lap(get_track("evo-mini"), cfg, FAST)


@pytest.fixture
def no_cache(tmp_path, monkeypatch) -> Path:
    """An empty records cache in a temporary folder."""
    path = tmp_path / "cache" / "records.json"
    monkeypatch.setenv("EVO_RL_RECORDS", str(path))
    return path


# --------------------------------------------------------------------------- the planner


def test_planner_finishes_evo_mini_near_the_reference(mini_lap):
    lap = mini_lap.lap
    assert lap.finished and lap.lap_time is not None
    ratio = lap.lap_time / lap.reference_lap_time
    assert MINI_BAND[0] < ratio < MINI_BAND[1], f"planner lap {lap.lap_time:.2f} s vs {lap.reference_lap_time:.2f} s"
    assert lap.times[-1] == pytest.approx(lap.lap_time)
    assert lap.actions.shape == (len(lap.times), 3) and np.all(np.abs(lap.actions) <= 1.0)
    assert mini_lap.plan_seconds > 0 and mini_lap.settings == FAST


def test_same_seed_same_lap(cfg, mini_lap):
    again = plan_lap(get_track("evo-mini"), cfg, FAST)
    assert again.lap_time == mini_lap.lap_time
    np.testing.assert_array_equal(again.lap.actions, mini_lap.lap.actions)
    np.testing.assert_array_equal(again.lap.xy, mini_lap.lap.xy)


def test_another_seed_samples_other_plans(cfg):
    track = get_track("evo-mini")
    world = World(track, 1, cfg.car, cfg.lidar, cfg.camera, cfg.sim)
    expert = ExpertDriver(track, cfg.car)
    for _ in range(100):  # to the first braking point, where the plans have choices
        world.step(expert.act(world))
    action = CEMPlanner(track, cfg, FAST).act(world)
    assert action.shape == (1, 3) and action.dtype == np.float32
    a = CEMPlanner(track, cfg, FAST).plan(world)  # [H, 2]
    b = CEMPlanner(track, cfg, replace(FAST, seed=1)).plan(world)
    assert a.shape == (FAST.horizon, 2)
    np.testing.assert_array_equal(a, CEMPlanner(track, cfg, FAST).plan(world))
    assert not np.array_equal(a, b)


def test_snapshot_restore_copies_one_car_to_every_row(cfg):
    track = get_track("evo-mini")
    real = World(track, 3, cfg.car, cfg.lidar, cfg.camera, cfg.sim)
    if getattr(real, "params", None) is not None:  # per-car physics: a heavier car 1
        real.params[1, 0] *= 0.8  # params[:, 0] is 1 / mass
    for _ in range(20):
        real.step(np.tile([[1.0, -1.0, 0.3]], (3, 1)))
    state = snapshot(real, row=1)
    assert set(STATE) <= set(state)
    plan = World(track, 4, cfg.car, cfg.lidar, cfg.camera, cfg.sim)
    restore(plan, state)
    for name in [*STATE, *(n for n in CAR_EXTRAS if hasattr(real, n))]:
        for row in range(4):
            np.testing.assert_array_equal(getattr(plan, name)[row], getattr(real, name)[1])
    # the copies drive on exactly as the original
    real.step(np.tile([[1.0, -1.0, -0.2]], (3, 1)))
    plan.step(np.tile([[1.0, -1.0, -0.2]], (4, 1)))
    np.testing.assert_array_equal(plan.pos[2], real.pos[1])


def test_rollout_cost_is_a_lap_time_estimate(cfg):
    """Full gas from rest on evo-mini's start straight: the estimate is near the reference lap time, and a
    plan that finishes costs its race time at the finish."""
    track = get_track("evo-mini")
    planner = CEMPlanner(track, cfg, FAST)
    real = World(track, 1, cfg.car, cfg.lidar, cfg.camera, cfg.sim)
    plans = np.zeros((FAST.samples, FAST.horizon, 2))
    plans[:, :, 0] = 1.0  # full gas
    plans[1:, :, 0] = -1.0  # brakes: standing still costs the whole reference lap and more
    cost = planner.rollout(snapshot(real), plans)
    ref = planner.reference.lap_time
    assert abs(cost[0] - ref) < 0.05 * ref
    assert cost[1] > cost[0] + 1.0
    assert np.all(cost[1:] == cost[1])


def test_bad_settings_name_the_field(cfg):
    with pytest.raises(EvoError, match="elites"):
        PlannerSettings(samples=8, elites=12).check()
    with pytest.raises(EvoError, match="horizon"):
        CEMPlanner(get_track("evo-mini"), cfg, PlannerSettings(horizon=1))


def test_analog_controls(cfg):
    analog = cfg.model_copy(deep=True)
    analog.env.controls = "analog"
    planner = CEMPlanner(get_track("evo-mini"), analog, FAST)
    assert planner.deadband == 0.0
    np.testing.assert_allclose(planner.to_actions(np.array([[0.5, 0.2]])), [[0.5, -0.5, 0.2]])
    binary = CEMPlanner(get_track("evo-mini"), cfg, FAST)
    gas, brake, _ = binary.to_actions(np.array([0.2, 0.0]))
    assert gas <= 0 and brake <= 0  # a small pedal value coasts with binary pedals


# --------------------------------------------------------------------------- records


def test_shipped_records_load_and_match_the_builtin_tracks(cfg):
    shipped = records.load_records(records.PACKAGE_RECORDS)
    assert {r.track for r in shipped} == set(BUILTIN)
    for r in shipped:
        track = get_track(r.track)
        assert r.track_key == records.track_key(track)
        assert r.config_key == records.config_key(cfg)
        assert r.reference_lap_time == pytest.approx(compute_reference_lap(track, cfg.car).lap_time, abs=2e-3)
        assert records.record_lap_time(r.track) == r.lap_time
        assert set(r.planner) == set(PlannerSettings.__dataclass_fields__)


def test_records_hold_for_one_config(cfg):
    slow = cfg.model_copy(deep=True)
    slow.car.engine_force = 15000.0
    assert records.record_lap_time("evo-mini", cfg) is not None
    assert records.record_lap_time("evo-mini", slow) is None
    assert records.record_lap_time(None) is None


def test_cache_keeps_the_fastest_record(cfg, mini_lap, no_cache):
    track = get_track("evo-mini")
    moved = replace(track, name="moved", left=track.left + 1.0, right=track.right + 1.0)
    assert records.record_lap_time(moved, cfg) is None
    record = records.new_record(moved, cfg, mini_lap)
    assert records.store_record(record, no_cache)
    assert records.record_lap_time(moved, cfg) == record.lap_time
    assert not records.store_record(replace(record, lap_time=record.lap_time + 1.0), no_cache)
    assert records.store_record(replace(record, lap_time=record.lap_time - 1.0), no_cache)
    assert records.record_lap_time(moved, cfg) == record.lap_time - 1.0
    assert len(records.load_records(no_cache)) == 1


def test_a_broken_records_file_is_an_evo_error(tmp_path):
    bad = tmp_path / "records.json"
    bad.write_text("{not json")
    with pytest.raises(EvoError, match="records file"):
        records.load_records(bad)


def test_record_ratio_in_eval_result():
    lap = np.array([30.0, 33.0, math.nan])
    progress, zeros = np.array([1.0, 1.0, 0.4]), np.zeros(3)
    result = summarize(lap, progress, zeros, zeros, {}, ref=33.0, record=28.0)
    assert result.mean_lap_time == 31.5
    assert result.lap_time_ratio == pytest.approx(31.5 / 33.0)
    assert result.record_lap_time == 28.0 and result.record_ratio == pytest.approx(31.5 / 28.0)
    assert summarize(lap, progress, zeros, zeros, {}, ref=33.0).record_ratio is None  # no record
    none = summarize(np.full(2, math.nan), np.array([0.5, 0.2]), np.zeros(2), np.zeros(2), {}, 33.0, 28.0)
    assert none.record_ratio is None and none.record_lap_time == 28.0  # no finish


# --------------------------------------------------------------------------- CLI


def test_tracks_list_json_has_the_record_column(capsys):
    assert main(["tracks", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == list_tracks()
    for r in rows:
        assert r["record_lap_s"] == pytest.approx(records.record_lap_time(r["name"]), abs=0.005)
    assert main(["tracks", "list", "car.grip=1.5"]) == 0  # another car: no records
    assert "record s" in capsys.readouterr().out


def test_drive_planner_mpc_json(capsys, mini_lap):
    argv = ["drive", "--planner", "mpc", "--track", "evo-mini", "--json"]
    knobs = ["--samples", "32", "--horizon", "30", "--iterations", "2", "--elites", "6"]
    assert main([*argv, *knobs]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["planner"] == "mpc" and out["finished"] is True
    assert out["record_lap_time"] == records.record_lap_time("evo-mini")
    assert out["settings"]["samples"] == 32 and out["wall_seconds"] > 0
    assert main([*argv, "--samples", "2"]) == 2
    assert "samples" in capsys.readouterr().err


def test_drive_planner_mpc_text(capsys):
    knobs = ["--samples", "16", "--horizon", "20", "--iterations", "1", "--elites", "4"]
    assert main(["drive", "--planner", "mpc", "--track", "evo-mini", *knobs]) == 0
    text = capsys.readouterr().out
    assert "planner lap" in text and "record" in text and "ms per control step" in text


def test_tracks_record_writes_to_the_cache(tmp_path, capsys, no_cache, cfg):
    track = get_track("evo-mini")
    moved = replace(track, name="moved", left=track.left + 1.0, right=track.right + 1.0)
    path = tmp_path / "moved.track"
    moved.save(path)
    knobs = ["--samples", "16", "--horizon", "20", "--iterations", "1", "--elites", "4"]
    assert main(["tracks", "record", str(path), "--write", "--json", *knobs]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["written"] is True and out["path"] == str(no_cache)
    assert records.record_lap_time(str(path), cfg) == out["record_lap_time"]
    assert main(["tracks", "record", str(path), "--seeds", "0"]) == 2


@pytest.mark.slow
@pytest.mark.parametrize("name", list(BUILTIN))
def test_default_planner_beats_the_reference(cfg, name):
    """The default settings (about a minute a lap) beat the reference lap on every built-in track."""
    lap = plan_lap(get_track(name), cfg).lap
    assert lap.finished and lap.lap_time is not None
    assert lap.lap_time < lap.reference_lap_time
