"""The scripted expert driver: it finishes every built-in track and generated tracks
close to the reference lap time, drives many cars at once, and `evo-rl drive` prints
its lap time and writes a GIF."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from evo_rl.cli import main
from evo_rl.config import EvoConfig
from evo_rl.sim.animate import TRANSPARENT, _deltas
from evo_rl.sim.catalog import get_track, list_tracks
from evo_rl.sim.expert import ExpertDriver, run_expert_lap
from evo_rl.sim.generate import generate_track
from evo_rl.sim.world import World

BAND = (0.98, 1.15)  # expert lap time over the reference lap time


@pytest.fixture(scope="module")
def cfg() -> EvoConfig:
    return EvoConfig()


@pytest.fixture(scope="module")
def mini_lap(cfg):
    return run_expert_lap(get_track("evo-mini"), cfg)


def check_lap(lap) -> None:
    assert lap.finished, f"{lap.track}: the expert did not finish"
    ratio = lap.lap_time / lap.reference_lap_time
    assert BAND[0] < ratio < BAND[1], (
        f"{lap.track}: lap {lap.lap_time:.2f} s vs reference {lap.reference_lap_time:.2f} s"
    )
    assert lap.wall_contacts <= 2, f"{lap.track}: {lap.wall_contacts} steps touching a wall"


@pytest.mark.parametrize("name", list_tracks())
def test_expert_finishes_builtin_tracks(name, cfg):
    check_lap(run_expert_lap(get_track(name), cfg))


@pytest.mark.parametrize("seed", [0, 1])
def test_expert_finishes_generated_tracks(seed, cfg):
    check_lap(run_expert_lap(generate_track(seed), cfg))


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(2, 22))
def test_expert_finishes_many_generated_tracks(seed, cfg):
    check_lap(run_expert_lap(generate_track(seed), cfg))


@pytest.mark.slow
@pytest.mark.parametrize("kwargs", [{"width": 12.0}, {"n_blocks": 30}, {"min_radius": 48.0}])
def test_expert_finishes_generated_track_variants(kwargs, cfg):
    for seed in range(3):
        check_lap(run_expert_lap(generate_track(seed, **kwargs), cfg))


def test_expert_with_analog_pedals(cfg):
    analog = cfg.model_copy(deep=True)
    analog.env.controls = "analog"
    lap = run_expert_lap(get_track("evo-mini"), analog)
    check_lap(lap)
    pedals = lap.actions[:-1, :2]
    assert np.any((pedals > 0.01) & (pedals < 0.99))  # it does use partial pedal


def test_lap_result_records_the_lap(mini_lap, cfg):
    lap = mini_lap
    n = len(lap.times)
    assert lap.positions3.shape == (n, 3) and lap.xy.shape == (n, 2)
    assert lap.speeds.shape == lap.yaw.shape == lap.gears.shape == (n,)
    assert lap.actions.shape == (n, 3) and lap.actions.dtype == np.float32
    track = get_track("evo-mini")
    np.testing.assert_allclose(lap.positions3[:, 1], track.height)
    np.testing.assert_allclose(lap.positions3[:, [0, 2]], lap.xy)
    assert lap.times[0] == 0.0 and np.all(np.diff(lap.times) > 0)
    assert lap.lap_time == pytest.approx(lap.times[-1])
    assert lap.lap_time <= (n - 1) * cfg.sim.dt + 1e-9
    assert lap.speeds[0] == 0.0 and lap.speeds.max() > 30.0
    assert lap.gears.min() == 0 and lap.gears.max() >= 2
    # binary controls: every pedal value is a clear press or release
    assert set(np.unique(lap.actions[:-1, :2])) <= {-1.0, 1.0}


def test_expert_drives_many_cars_at_once(cfg):
    track = get_track("evo-mini")
    n = 6
    world = World(track, n, cfg.car, cfg.lidar, cfg.camera, cfg.sim)
    world.reset(lateral=np.linspace(-4.0, 4.0, n), yaw=np.linspace(-0.15, 0.15, n))
    driver = ExpertDriver(track, cfg.car)
    # the actions of each car depend on that car alone
    world.step(np.tile(np.array([[1.0, -1.0, 0.0]], np.float32), (n, 1)))
    actions = driver.act(world)
    assert actions.shape == (n, 3) and actions.dtype == np.float32
    assert np.all(np.abs(actions) <= 1.0)
    for i in range(n):
        single = World(track, 1, cfg.car, cfg.lidar, cfg.camera, cfg.sim)
        for name in ("pos", "yaw", "vel", "yaw_rate", "steer", "gear", "rpm", "quad", "progress_s", "race_ticks"):
            getattr(single, name)[0] = getattr(world, name)[i]
        np.testing.assert_allclose(driver.act(single)[0], actions[i], atol=1e-6)
    finish_time = np.full(n, np.nan)
    for _ in range(int(60.0 / cfg.sim.dt)):
        world.step(driver.act(world))
        finish_time[world.finished & np.isnan(finish_time)] = world.race_time[world.finished & np.isnan(finish_time)]
        if world.finished.all():
            break
    assert world.finished.all()
    ref = driver.reference.lap_time
    assert np.all((finish_time > BAND[0] * ref) & (finish_time < BAND[1] * ref))


# --------------------------------------------------------------------------- evo-rl drive


def test_drive_json_prints_one_object(capsys, mini_lap):
    assert main(["drive", "--track", "evo-mini", "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    result = json.loads(out[0])
    assert set(result) == {
        "track", "planner", "finished", "lap_time", "reference_lap_time", "record_lap_time", "wall_contacts",
        "wall_seconds",
    }  # fmt: skip
    assert result["planner"] == "expert"
    assert result["track"] == "evo-mini" and result["finished"] is True
    assert result["lap_time"] == pytest.approx(mini_lap.lap_time, abs=1e-3)
    assert result["reference_lap_time"] == pytest.approx(mini_lap.reference_lap_time, abs=1e-3)


def test_drive_writes_a_gif(tmp_path, capsys, mini_lap, cfg):
    out = tmp_path / "lap.gif"
    assert main(["drive", "--track", "evo-mini", "--out", str(out), "--fps", "5"]) == 0
    text = capsys.readouterr().out
    assert f"{mini_lap.lap_time:.2f} s" in text and f"reference {mini_lap.reference_lap_time:.2f} s" in text
    with Image.open(out) as gif:
        assert gif.format == "GIF"
        every = round(1 / (5 * cfg.sim.dt))
        assert gif.n_frames == len(range(0, len(mini_lap.times), every)) + ((len(mini_lap.times) - 1) % every != 0)
        assert max(gif.size) >= 640 and min(gif.size) < 640  # the track view's longest side, plus the HUD band
    assert out.stat().st_size < 3_000_000


def test_drive_rejects_a_non_gif_output(tmp_path, capsys):
    assert main(["drive", "--track", "evo-mini", "--out", str(tmp_path / "lap.png")]) == 2
    assert ".gif" in capsys.readouterr().err


def test_gif_deltas_decode_to_the_same_frames(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 200, (40, 60, 3), dtype=np.uint8)
    rgb = []
    for k in range(4):
        img = base.copy()
        img[10 + 5 * k : 20 + 5 * k, 5 * k : 10 + 5 * k] = (255, 0, 0)  # a moving box
        rgb.append(Image.fromarray(img))
    palette = rgb[0].quantize(colors=255)
    frames = [im.quantize(palette=palette, dither=Image.Dither.NONE) for im in rgb]
    deltas = _deltas(frames)
    assert (np.asarray(deltas[1]) == TRANSPARENT).mean() > 0.8  # most pixels are unchanged
    path = tmp_path / "d.gif"
    deltas[0].save(path, save_all=True, append_images=deltas[1:], duration=50, transparency=TRANSPARENT, disposal=1)
    with Image.open(path) as gif:
        for k, frame in enumerate(frames):
            gif.seek(k)
            np.testing.assert_array_equal(np.asarray(gif.convert("RGB")), np.asarray(frame.convert("RGB")))
