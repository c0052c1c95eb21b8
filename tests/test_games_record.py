"""Recording laps of TrackMania 2020 (evo_rl.games.record, `evo-rl game tm2020 record-reward|record-track`):
against virtual games driven by the centre-line autopilot, and against scripted telemetry for the edge cases."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import free_port, games_cli

from evo_rl.config import CarConfig, EvoConfig
from evo_rl.errors import EvoError, TrackError
from evo_rl.games import record as rec
from evo_rl.games.control import VirtualInput
from evo_rl.games.errors import GameConnectionError, GameError
from evo_rl.games.tm2020 import protocol as p
from evo_rl.games.tm2020.client import Telemetry, TM2020Client
from evo_rl.games.tm2020.virtual import VirtualTM2020
from evo_rl.rewards.reference_trajectory import load_reference, project_on_track
from evo_rl.sim.catalog import get_track
from evo_rl.sim.expert import run_expert_lap
from evo_rl.sim.reference_lap import compute_reference_lap
from evo_rl.sim.track import Track
from evo_rl.sim.track_format import format_track
from evo_rl.sim.world import START_AHEAD, World

WAIT = 10.0  # s to wait for something that must happen (returns as soon as it does)
SCALE = 10.0  # game seconds per real second of the virtual games here (evo-mini: ~3 s a lap, evo-test: ~8 s)


def _drive(game: VirtualTM2020, **kw: object) -> rec.RecordedLap:
    """One lap of ``game`` driven by the centre-line autopilot through its input port."""
    with (
        TM2020Client(port=game.port, protocol=game.protocol) as client,
        VirtualInput(game.input_port, timeout=WAIT) as pad,
    ):
        driver = rec.CentrelineDriver(game.track, heading=game.protocol == "evo")
        return rec.record_lap(client, pad, driver, timeout=WAIT, **kw)  # type: ignore[arg-type]


@pytest.fixture
def mini() -> Iterator[VirtualTM2020]:
    with VirtualTM2020(track="evo-mini", port=0, time_scale=SCALE) as g:
        yield g


def _no_files_but(folder: Path, *names: str) -> None:
    """``folder`` holds exactly ``names``: nothing half-written, no temporary file left."""
    assert sorted(f.name for f in folder.iterdir()) == sorted(names)


# --------------------------------------------------------------------------- recording on a virtual game


def test_a_lap_on_the_virtual_game_lies_on_the_track(mini: VirtualTM2020, tmp_path: Path) -> None:
    messages: list[str] = []
    mini.inputs = (1.0, 0.0, 0.3)  # the car is somewhere else when the recording starts: it respawns first
    time.sleep(0.3)
    lap = _drive(mini, say=messages.append)
    track = mini.track
    assert lap.finished and lap.protocol == "evo" and lap.time_source == "race"
    assert (
        lap.restarts == 0 and lap.rewinds == 0 and lap.records >= len(lap.positions) > 100
    )  # some, even on a busy machine
    assert 10.0 < lap.lap_time < 60.0 and lap.lap_time == lap.times_ms[-1] / 1000.0  # type: ignore[operator]
    assert np.all(np.diff(lap.times_ms) >= 0)
    assert any("drive the lap" in m for m in messages)
    # every point lies on the road, from the spawn to just past the finish line
    s, lat = project_on_track(track, lap.positions[:, [0, 2]])
    assert np.abs(lat).max() < track.width / 2 - CarConfig().half_width
    assert abs(s[0] - (track.s[track.start] + START_AHEAD)) < 0.5
    assert track.s[track.finish] <= s[-1] < track.s[track.finish] + 8.0  # the first record past it
    assert np.all(lap.positions[:, 1] == track.height)
    assert abs(lap.length - track.length) < 0.02 * track.length
    # the checkpoints where the game counted them: just past the track's gates
    gates = lap.checkpoint_points()
    assert lap.checkpoints_total == len(track.checkpoints) == len(gates) == 2
    gs, _ = project_on_track(track, gates[:, [0, 2]])
    assert np.all((gs >= track.s[track.checkpoints]) & (gs < track.s[track.checkpoints] + 8.0))
    # resampled evenly and saved as episode.reference reads it
    points = rec.reference_points(lap.positions)
    chords = np.linalg.norm(np.diff(points, axis=0), axis=1)  # every 0.1 m of arc length
    assert chords.max() <= 0.1 + 1e-9 and chords.min() > 0.099
    rec.save_reference_atomic(tmp_path / "ref.npy", points)
    assert np.array_equal(load_reference(tmp_path / "ref.npy"), points)
    _no_files_but(tmp_path, "ref.npy")
    assert mini.inputs == (0.0, 0.0, 0.0)  # released at the end


def test_a_lap_in_the_tmrl_protocol_starts_at_the_respawn_button() -> None:
    with VirtualTM2020(track="evo-mini", port=0, protocol="tmrl", time_scale=SCALE) as game:
        game.inputs = (1.0, 0.0, 0.0)
        deadline = time.monotonic() + WAIT
        while game.distance < 20 and time.monotonic() < deadline:  # the car has driven off: a restart must be seen
            time.sleep(0.01)
        lap = _drive(game)
    track = game.track
    assert lap.finished and lap.protocol == "tmrl" and lap.time_source == "clock" and lap.checkpoints_total is None
    assert lap.lap_time is not None and 0 < lap.lap_time < 30.0 / SCALE * 4
    s, lat = project_on_track(track, lap.positions[:, [0, 2]])
    assert s[0] < track.s[track.start] + START_AHEAD + 1.0 and s[-1] >= track.s[track.finish]
    assert np.abs(lat).max() < track.width / 2
    assert len(lap.checkpoint_points()) == 0


def test_a_lap_of_evo_test_makes_a_track_the_simulator_drives(tmp_path: Path) -> None:
    with VirtualTM2020(track="evo-test", port=0, time_scale=SCALE) as game:
        lap = _drive(game)
    real = get_track("evo-test")
    assert lap.finished
    track = rec.track_from_lap(lap.positions, rec.DEFAULT_WIDTH, "evo-test-recorded", lap.checkpoint_points())
    assert abs(track.length - real.length) < 0.03 * real.length
    assert track.width == rec.DEFAULT_WIDTH and track.height == real.height
    assert len(track.checkpoints) == len(real.checkpoints)
    # the start line lies where the game's car spawned, minus START_AHEAD: the simulator's cars start there too
    world = World(track, 1)
    assert np.linalg.norm(world.pos[0] - lap.positions[0, [0, 2]]) < 2.0  # half a cross-section spacing
    gates_s, _ = project_on_track(real, track.center[track.checkpoints])
    assert np.all(np.abs(gates_s - real.s[real.checkpoints]) < 8.0)  # the gates sit where the game counted them
    # written as a .track file, read back exactly, driven by the simulator
    path = tmp_path / "recorded.track"
    rec.write_atomic([(path, lambda tmp: tmp.write_text(format_track(track)))])
    loaded = Track.load(path)
    assert np.array_equal(loaded.left, track.left) and np.array_equal(loaded.checkpoints, track.checkpoints)
    for _ in range(50):
        world.step(np.array([[1.0, -1.0, 0.0]], np.float32))
    assert world.speed()[0] > 10 and not world.wall_contact[0]
    ref = compute_reference_lap(loaded, CarConfig())
    real_ref = compute_reference_lap(real, CarConfig())
    assert np.isfinite(ref.lap_time) and abs(ref.length - real_ref.length) < 0.03 * real_ref.length
    assert run_expert_lap(loaded, EvoConfig(), max_seconds=200.0).finished


# --------------------------------------------------------------------------- the commands


def test_cli_record_reward_and_record_track(
    mini: VirtualTM2020, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--port", str(mini.port), "--input-port", str(mini.input_port), "--autopilot", "evo-mini", "--json"]
    ref = tmp_path / "mini.csv"
    assert games_cli(["game", "tm2020", "record-reward", "--out", str(ref), "--spacing", "0.5", *base]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["out"] == str(ref) and out["finished"] is True and out["time"] == "race"
    assert out["points"] == len(load_reference(ref)) and out["spacing_m"] == 0.5
    assert abs(out["length_m"] - mini.track.length) < 0.02 * mini.track.length
    assert 10 < out["lap_time_s"] < 60

    path = tmp_path / "mini.track"
    assert games_cli(["game", "tm2020", "record-track", "--out", str(path), "--width", "16", *base]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["reference"] == str(tmp_path / "mini.npy") and out["checkpoints"] == 2 and out["width_m"] == 16
    track = get_track(str(path))
    assert track.name == "mini" and track.width == 16.0
    assert abs(track.length - mini.track.length) < 0.03 * mini.track.length
    assert len(load_reference(tmp_path / "mini.npy")) == out["points"]

    # again from the recorded trajectory, without driving: same line, gates spread evenly
    again = tmp_path / "again.track"
    argv = ["game", "tm2020", "record-track", "--out", str(again), "--from-reference", str(tmp_path / "mini.npy")]
    assert games_cli([*argv, "--checkpoints", "3", "--name", "again"]) == 0
    text = capsys.readouterr().out
    assert f"saved {again}" in text and "3 checkpoints" in text and f"episode.reference={tmp_path / 'mini.npy'}" in text
    assert abs(get_track(str(again)).length - track.length) < 1.0
    _no_files_but(tmp_path, "mini.csv", "mini.track", "mini.npy", "again.track")


def test_cli_prints_a_summary(mini: VirtualTM2020, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["game", "tm2020", "record-reward", "--out", str(tmp_path / "r.npy"), "--port", str(mini.port)]
    assert games_cli([*argv, "--autopilot", "evo-mini", "--input-port", str(mini.input_port)]) == 0
    out, err = capsys.readouterr()
    assert f"saved {tmp_path / 'r.npy'}:" in out and "points every 0.1 m" in out and "(race time)" in out
    assert f"episode.reference={tmp_path / 'r.npy'}" in out
    assert "respawned at the start line" in err and "autopilot" in err


def test_an_unfinished_lap_is_refused_unless_allowed(
    mini: VirtualTM2020, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["game", "tm2020", "record-reward", "--port", str(mini.port), "--input-port", str(mini.input_port)]
    base += ["--autopilot", "evo-mini"]
    out = tmp_path / "part.npy"
    with pytest.raises(GameError, match=r"did not reach the finish line.*--allow-unfinished"):
        games_cli([*base, "--out", str(out), "--max-seconds", "0.5"])
    _no_files_but(tmp_path)
    assert games_cli([*base, "--out", str(out), "--max-seconds", "0.5", "--allow-unfinished", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["finished"] is False and summary["lap_time_s"] is None
    assert 0 < summary["length_m"] < mini.track.length


# --------------------------------------------------------------------------- faults


def test_nothing_listening_is_a_clear_error_and_writes_nothing(tmp_path: Path) -> None:
    port = free_port()
    with TM2020Client(port=port, retry_seconds=0.05) as client:
        with pytest.raises(GameConnectionError, match=r"no telemetry, so no lap was recorded.*nothing listens"):
            rec.record_lap(client, timeout=0.3)
    for action, out in (("record-reward", "r.npy"), ("record-track", "t.track")):
        argv = ["game", "tm2020", action, "--out", str(tmp_path / out), "--port", str(port), "--timeout", "0.3"]
        with pytest.raises(GameConnectionError, match="virtual-game tm2020"):
            games_cli(argv)
    _no_files_but(tmp_path)


def test_the_stream_stopping_mid_lap_is_a_clear_error_and_writes_nothing(tmp_path: Path) -> None:
    game = VirtualTM2020(track="evo-mini", port=0, time_scale=5.0).start()

    def stop_later() -> None:
        deadline = time.monotonic() + WAIT
        while game.race_time_ms < 2000 and time.monotonic() < deadline:
            time.sleep(0.01)
        game.stop()

    stopper = threading.Thread(target=stop_later)
    stopper.start()
    try:
        argv = ["game", "tm2020", "record-track", "--out", str(tmp_path / "t.track"), "--port", str(game.port)]
        argv += ["--input-port", str(game.input_port), "--autopilot", "evo-mini", "--timeout", "0.5"]
        with pytest.raises(GameConnectionError, match=r"stopped mid-lap \(\d+ points"):
            games_cli(argv)
    finally:
        stopper.join()
        game.stop()
    _no_files_but(tmp_path)


def test_files_are_written_atomically(tmp_path: Path) -> None:
    (tmp_path / "a.track").write_text("old")

    def broken(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        rec.write_atomic([(tmp_path / "a.track", lambda tmp: tmp.write_text("new")), (tmp_path / "b.npy", broken)])
    assert (tmp_path / "a.track").read_text() == "old"  # not replaced: the second file failed
    _no_files_but(tmp_path, "a.track")
    rec.write_atomic([(tmp_path / "a.track", lambda tmp: tmp.write_text("new"))])
    assert (tmp_path / "a.track").read_text() == "new"
    _no_files_but(tmp_path, "a.track")


def test_outputs_are_checked_before_driving(tmp_path: Path) -> None:
    with pytest.raises(EvoError, match=r"must end in \.npy or \.csv"):
        games_cli(["game", "tm2020", "record-reward", "--out", str(tmp_path / "r.pkl"), "--port", str(free_port())])
    with pytest.raises(EvoError, match="does not exist"):
        games_cli(["game", "tm2020", "record-track", "--out", str(tmp_path / "no" / "t.track")])
    with pytest.raises(EvoError, match=r"\.track"):
        games_cli(["game", "tm2020", "record-track", "--out", str(tmp_path / "t.npy")])
    with pytest.raises(EvoError, match="positive"):
        games_cli(["game", "tm2020", "record-track", "--out", str(tmp_path / "t.track"), "--width", "-3"])
    with TM2020Client(port=free_port()) as client, pytest.raises(EvoError, match="needs an input backend"):
        rec.record_lap(client, driver=lambda state: (0.0, 0.0, 0.0))
    _no_files_but(tmp_path)


def test_a_track_that_does_not_fit_keeps_the_lap(
    mini: VirtualTM2020, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["game", "tm2020", "record-track", "--out", str(tmp_path / "t.track"), "--port", str(mini.port)]
    argv += ["--input-port", str(mini.input_port), "--autopilot", "evo-mini", "--width", "60"]
    with pytest.raises(TrackError, match=r"--width 60.*tighter than width / 2.*--from-reference"):
        games_cli(argv)
    _no_files_but(tmp_path, "t.npy")  # the drive is kept, the track is not written
    argv = ["game", "tm2020", "record-track", "--out", str(tmp_path / "t.track"), "--from-reference"]
    assert games_cli([*argv, str(tmp_path / "t.npy"), "--width", "18"]) == 0
    _no_files_but(tmp_path, "t.npy", "t.track")


def test_the_autopilot_refuses_another_track(mini: VirtualTM2020) -> None:
    t = mini.track
    elsewhere = Track("elsewhere", t.left + 100.0, t.right + 100.0, t.width, t.start, t.finish, t.checkpoints, t.height)
    with pytest.raises(GameError, match=r"from the centre line of 'elsewhere'.*--track elsewhere"):
        with TM2020Client(port=mini.port) as client, VirtualInput(mini.input_port) as pad:
            rec.record_lap(client, pad, rec.CentrelineDriver(elsewhere), max_seconds=5.0, timeout=WAIT)


# --------------------------------------------------------------------------- the run logic on scripted telemetry


class _Script:
    """A stand-in for TM2020Client that plays a list of records, one per wait_newer."""

    protocol = "evo"

    def __init__(self, records: list[object], protocol: str = "evo") -> None:
        self.protocol = protocol
        self.records = records
        self.i = 0
        self.respawns = 0

    def _telemetry(self) -> Telemetry:
        r = self.records[min(self.i, len(self.records) - 1)]
        return Telemetry(self.i, 1, self.i * 0.01, r)

    def wait_newer(self, than: int = -1, timeout: float = 1.0) -> Telemetry:
        if self.i >= len(self.records):
            raise GameConnectionError("connected to 127.0.0.1:0, but no record came")
        t = self._telemetry()
        self.i += 1
        return t

    def respawn(self, timeout: float = 1.0) -> Telemetry:
        self.respawns += 1
        return self.wait_newer()


def _r(t_ms: int, x: float, cp: int = 0, finished: int = 0) -> object:
    return p.Record(race_time_ms=t_ms, pos_x=x, pos_y=9.0, pos_z=0.0, dir_x=1.0, checkpoints=cp,
                    checkpoints_total=1, finished=finished)  # fmt: skip


def test_countdown_restarts_and_checkpoint_respawns() -> None:
    records = [
        _r(50_000, 300.0, 1, 1),  # before the lap: the last run's finish screen
        _r(-1000, 0.0, 0, 1),  # after the respawn: countdown, finished still shown: neither counts
        _r(0, 0.0),
        _r(100, 10.0),
        _r(200, 20.0),
        _r(0, 0.0),  # the player respawned at the start: recording starts again
        _r(100, 10.0),
        _r(200, 20.0),
        _r(300, 30.0, 1),  # a checkpoint
        _r(400, 40.0, 1),
        _r(500, 50.0, 1),
        _r(600, 60.0, 1),
        _r(700, 30.5, 1),  # respawned at the checkpoint (a jump back): the path is cut back to where it reappeared
        _r(800, 130.5, 1),  # a jump forwards no car makes in 0.1 s: nothing to cut back, kept
        _r(900, 131.5, 1, 1),  # the finish
    ]
    script = _Script(records)
    lap = rec.record_lap(script, timeout=0.1)  # type: ignore[arg-type]
    assert script.respawns == 1 and lap.restarts == 1 and lap.rewinds == 1
    assert lap.finished and lap.lap_time == 0.9 and lap.records == len(records) - 1
    assert lap.positions[:, 0].tolist() == [0.0, 10.0, 20.0, 30.0, 30.5, 130.5, 131.5]
    assert lap.times_ms.tolist() == [0, 100, 200, 300, 700, 800, 900]
    assert lap.checkpoint_points()[:, 0].tolist() == [30.0]


def test_the_stream_ending_in_scripted_telemetry() -> None:
    script = _Script([_r(0, 0.0), _r(0, 0.0), _r(100, 1.0)])
    with pytest.raises(GameConnectionError, match=r"stopped mid-lap \(2 points, 0.1 s into the run\)"):
        rec.record_lap(script, timeout=0.1)  # type: ignore[arg-type]


def test_tmrl_waits_for_the_restart() -> None:
    def r(distance: float, x: float, finished: float = 0.0) -> object:
        return p.TmrlRecord(distance=distance, x=x, y=9.0, z=0.0, finished=finished)

    script = _Script([r(500.0, 300.0, 1.0), r(500.0, 300.0, 1.0), r(0.0, 0.0), r(1.0, 1.0), r(2.0, 2.0, 1.0)], "tmrl")
    messages: list[str] = []
    lap = rec.record_lap(script, timeout=0.1, say=messages.append)  # type: ignore[arg-type]
    assert script.respawns == 0 and any("press the game's respawn key" in m for m in messages)
    assert lap.finished and lap.positions[:, 0].tolist() == [0.0, 1.0, 2.0] and lap.time_source == "clock"
    assert lap.lap_time == pytest.approx(0.02)


def test_track_from_lap_needs_a_lap() -> None:
    with pytest.raises(TrackError, match="never moved"):
        rec.track_from_lap(np.zeros((5, 3)))
    with pytest.raises(GameError, match="no length"):
        rec.reference_points(np.zeros((5, 3)))
    with pytest.raises(TrackError, match="centreline is"):
        rec.track_from_lap(np.array([[0.0, 9.0, 0.0], [1.0, 9.0, 0.0]]))
    straight = np.stack([np.arange(0.0, 200.0), np.full(200, 9.0), np.zeros(200)], axis=1)
    track = rec.track_from_lap(straight, 12.0, "straight", n_checkpoints=3)
    assert len(track.checkpoints) == 3 and track.width == 12.0
    # start and finish lines fall on the nearest cross-section: within half the spacing of the lap's ends
    assert abs(track.length - (199.0 + START_AHEAD)) <= rec.TRACK_SPACING + 0.5


def test_backwards_stretches_are_cut_from_the_path() -> None:
    # forwards to x = 50, a crash: backwards to x = 30 (with a wobble), forwards again to x = 200
    x = np.concatenate([np.arange(0.0, 50.0, 0.3), np.arange(50.0, 30.0, -0.2), np.arange(30.0, 200.0, 0.3)])
    y = np.where((x > 30) & (x < 50), 0.3 * np.sin(x), 0.0)
    lap = np.stack([x, np.full(len(x), 9.0), y], axis=1)
    fwd = rec.forward_path(lap)
    assert np.all(np.diff(fwd[:, 0]) > 0) and fwd[0, 0] == 0.0 and fwd[-1, 0] == lap[-1, 0]
    assert np.array_equal(rec.forward_path(fwd), fwd)  # a forward path stays as it is
    track = rec.track_from_lap(lap, 12.0)  # the cusp would fold the walls
    assert abs(track.length - (lap[-1, 0] + START_AHEAD)) <= rec.TRACK_SPACING + 0.5
    points = rec.reference_points(lap, 1.0)
    assert np.all(np.diff(points[:, 0]) > 0)
    # standing still (repeated positions) and jitter on the spot leave one point
    still = np.array([[5.0, 9.0, 0.0]] * 10 + [[5.0 + 1e-4 * (-1) ** i, 9.0, 0.0] for i in range(10)])
    assert len(rec.forward_path(still)) <= 2
