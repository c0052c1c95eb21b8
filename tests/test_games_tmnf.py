"""TrackMania Nations Forever through our own lock-step protocol, against virtual TMNF instances."""

from __future__ import annotations

import dataclasses
import socket

import numpy as np
import pytest
from conftest import free_port, tiny_config

from evo_rl.config import EvoConfig
from evo_rl.envs import VecTrackEnv
from evo_rl.games.errors import GameConnectionError, ProtocolError
from evo_rl.games.tmnf import protocol as p
from evo_rl.games.tmnf.client import TMNFClient
from evo_rl.games.tmnf.source import open_source
from evo_rl.games.tmnf.virtual import VirtualTMNF
from evo_rl.train.loop import Trainer
from evo_rl.train.policy import PRETRAINED, load_policy
from evo_rl.train.run import create_run


def test_protocol_round_trips_every_field() -> None:
    req = p.RequestFrame(request=1, seq=7, flags=1, frame_height=8, frame_width=10, a=1.0, b=0.5, c=-0.25)
    assert p.decode_request(p.encode_request(req)) == req
    names = [f.name for f in p.STATE_FIELDS if f.const is None]
    state = p.State(**{n: (i + 1) % 2 if n in ("finished", "wall_contact") else i + 1 for i, n in enumerate(names)})
    assert p.decode_state(p.encode_state(state)) == state
    assert p.STATE_SIZE == 69 and p.REQUEST_SIZE == 32


@pytest.mark.parametrize(
    "data, match",
    [
        (b"\x00" * p.STATE_SIZE, "bad state magic"),
        (b"abc", "state of 3 bytes"),
    ],
)
def test_garbage_states_are_refused(data: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        p.decode_state(data)


def test_wrong_version_and_garbled_values() -> None:
    good = p.encode_state(p.State(seq=1))
    bad_version = good[:4] + (2).to_bytes(2, "little") + good[6:]
    with pytest.raises(ProtocolError, match="protocol version 2"):
        p.decode_state(bad_version)
    with pytest.raises(ProtocolError, match="garbled"):
        p.decode_state(p.encode_state(p.State(seq=1, pos_x=float("nan"))))
    with pytest.raises(ProtocolError, match="unknown request"):
        p.decode_request(p.encode_request(p.RequestFrame(request=99)))
    with pytest.raises(ProtocolError, match="frame"):
        p.decode_request(p.encode_request(p.RequestFrame(request=1, flags=1, frame_height=0, frame_width=5)))


def test_lock_step_restart_by_rewind_and_determinism() -> None:
    with VirtualTMNF("evo-test", port=0, speed=100) as game, TMNFClient(game.port) as client:
        start, _ = client.request(p.Request.RESTART)
        assert start.step == 0 and start.race_time_ms == 0
        rng = np.random.default_rng(0)
        actions = rng.uniform(0, 1, (60, 3)) * [1, 0, 2] - [0, 0, 1]
        runs = []
        for _ in range(2):
            client.request(p.Request.RESTART)
            runs.append([client.request(p.Request.STEP, *a)[0] for a in actions])
        same = [dataclasses.replace(b, seq=a.seq) == a for a, b in zip(*runs, strict=True)]
        assert all(same)  # same map, same actions: the same trajectory (only the request numbers differ)
        last = runs[0][-1]
        assert last.step == 60 and last.race_time_ms == 60 * 50  # exactly one control step of game time each
        state, frame = client.request(p.Request.PING, frame=(16, 24))
        assert (
            frame is not None
            and frame.shape == (16, 24)
            and state == dataclasses.replace(last, seq=state.seq, frame_height=16, frame_width=24)
        )


def test_load_map_switches_the_track_and_an_unknown_map_is_a_clear_error() -> None:
    from evo_rl.sim.catalog import get_track

    with VirtualTMNF("evo-test", port=0, speed=100) as game:
        with TMNFClient(game.port) as client:
            client.request(p.Request.STEP, 1.0, 0.0, 0.0)
            start = client.load_map("evo-hairpins")
            assert start.step == 0 and start.race_time_ms == 0 and start.frame_height == 0
            assert start.checkpoints_total == len(get_track("evo-hairpins").checkpoints)
            with VirtualTMNF("evo-hairpins", port=0) as other:
                fresh = other.state()
            assert (start.pos_x, start.pos_z, start.yaw) == pytest.approx((fresh.pos_x, fresh.pos_z, fresh.yaw))
            assert client.request(p.Request.STEP, 1.0, 0.0, 0.0)[0].step == 1  # it drives the new map
            with pytest.raises(GameConnectionError, match="did not start a race on map 'no-such-map'"):
                client.load_map("no-such-map", timeout=5.0)
        with TMNFClient(game.port) as client:  # the game is still up, on the map it had
            state, _ = client.request(p.Request.RESTART)
            assert state.checkpoints_total == len(get_track("evo-hairpins").checkpoints)
    with VirtualTMNF("evo-test", port=0, speed=100) as game:  # game.map: every instance loads it at the start
        source = open_source(tiny_config("env.track=evo-hairpins", "game.map=evo-hairpins"), [game.port], virtual=True)
        source.close()
        assert game.track.name == "evo-hairpins"
    with pytest.raises(ProtocolError, match="map name"):
        p.encode_map_name("x" * 300)
    bad = p.RequestFrame(request=int(p.Request.LOAD_MAP), seq=1, flags=0, frame_height=0, frame_width=0, a=0, b=0, c=0)
    with pytest.raises(ProtocolError, match="announces 0"):
        p.decode_request(p.encode_request(bad))


def test_a_stalled_client_frees_the_game_and_a_silent_game_is_a_clear_error() -> None:
    with VirtualTMNF("evo-test", port=0, speed=100) as game:
        with TMNFClient(game.port) as first:
            first.request(p.Request.SET_TIMEOUT, 0.3)
            # first stalls: after 0.3 s the game listens again and serves another client
            with TMNFClient(game.port) as second:
                state, _ = second.request(p.Request.PING)
                assert state.seq == 1
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    with TMNFClient(port, timeout=0.3) as client:  # a "game" that accepts and never answers
        with pytest.raises(GameConnectionError, match="did not answer within 0.3 s"):
            client.request(p.Request.PING)
    server.close()
    with pytest.raises(GameConnectionError, match="no TMNF instance"):
        TMNFClient(port, connect_timeout=0.2)


def test_the_shipped_policy_finishes_in_several_instances_at_once() -> None:
    policy = load_policy(PRETRAINED)
    games = [VirtualTMNF("evo-test", port=0, speed=100).start() for _ in range(3)]
    try:
        source = open_source(policy.cfg, [g.port for g in games], virtual=True)
        env = VecTrackEnv(policy.cfg, n_envs=3, source=source, autoreset=False)
        obs, _ = env.reset(seed=0)
        assert env.single_observation_space.contains(tuple(part[0] for part in obs))
        done = np.zeros(3, bool)
        for _ in range(env.max_steps):
            obs, _, terminated, truncated, info = env.step(policy.actor.act(obs, test=True))
            done |= terminated | truncated
            if done.all():
                break
        assert info["finished"].all() and (np.abs(info["race_time"] - 47.5) < 1.0).all()
        env.close()
    finally:
        for g in games:
            g.stop()


def test_eval_drives_the_shipped_policy_in_a_tmnf_instance(capsys) -> None:
    import json

    from evo_rl.cli import main

    with VirtualTMNF("evo-test", port=0, speed=100) as game:
        argv = ["eval", "pretrained", "--source", "tmnf", "-e", "2", "--json", f"game.ports=[{game.port}]"]
        assert main([*argv, "game.speed=100", "game.input=virtual"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["source"] == "tmnf" and out["episodes"] == 2
    assert out["finish_rate"] == 1.0 and all(abs(t - 47.5) < 1.0 for t in out["lap_times"])  # as in the simulator


def test_trainer_drives_tmnf_instances(tmp_path) -> None:
    games = [VirtualTMNF("evo-test", port=0, speed=100).start() for _ in range(2)]
    try:
        ports = ",".join(str(g.port) for g in games)
        cfg = tiny_config(
            f"train.runs_dir={tmp_path}", "train.minutes=0.05", "env.source=tmnf", f"game.ports=[{ports}]",
            "game.speed=100", "game.input=virtual",
        )  # fmt: skip
        trainer = Trainer(cfg, create_run(tmp_path, "tmnf", cfg))
        assert trainer.n_envs == 2 and trainer.env.world.name == "tmnf"
        c = trainer.train()
        assert c.env_steps > 100 and c.updates > 0 and trainer.checkpoints.saved()
    finally:
        for g in games:
            g.stop()


def test_bench_tmnf_reports_its_figures() -> None:
    from evo_rl.bench.tmnf import run

    out = run(instances=2, steps=50, processes=False)
    assert out["instances"] == 2 and out["steps_per_s_total"] > 0 and out["ms_per_step"] > 0
    assert out["pace_floor_ms"] == pytest.approx(0.5)  # 50 ms steps at 100x
    u = out["unpaced"]
    assert u["steps_per_s_total"] == pytest.approx(2 * u["steps_per_s_per_instance"], rel=1e-3) and u["ms_per_step"] > 0
    out = run(instances=1, steps=50)  # the instance in its own process, as a real game
    assert out["processes"] and out["steps_per_s_total"] > 0


def test_tmrl_lidar_is_refused_for_tmnf() -> None:
    cfg = EvoConfig()
    cfg.lidar.kind = "tmrl"
    with VirtualTMNF("evo-test", port=0, speed=100) as game:
        with pytest.raises(Exception, match="TrackMania 2020 screen LIDAR"):
            open_source(cfg, [game.port])


def test_plugin_carries_the_generated_protocol_and_sets_every_state_field(tmp_path) -> None:
    import re

    from evo_rl.cli import main
    from evo_rl.games.tmnf.install import install_plugin, plugin_text

    text = plugin_text()
    generated = p.angelscript_source()
    assert generated.rstrip("\n") in text and p.GENERATED_MARK not in text
    # the writer writes the state table's fields in order, the reader reads the request table's
    writes = re.findall(r"sock\.Write\w+\((?:s\.)?(\w+)\)", generated)
    assert writes == [str(f.const) if f.const is not None else f.name for f in p.STATE_FIELDS]
    reads = re.findall(
        r"(?:r\.(\w+) = sock\.Read\w+\(\)|sock\.Read\w+\(\) != \d+\) return false;  // (\w+))", generated
    )
    assert [a or b for a, b in reads] == [f.name for f in p.REQUEST_FIELDS]
    # the hand-written part handles every request and fills every field of the state
    for r in p.Request:
        assert r is p.Request.PING or f"Evo::{r.name}" in text, r.name
    for f in p.STATE_FIELDS:
        if f.const is None:
            assert f"g_state.{f.name} =" in text, f.name
    assert install_plugin(tmp_path).read_text(encoding="utf-8") == text
    assert main(["game", "tmnf", "install-plugin", "--dir", str(tmp_path)]) == 0
    with pytest.raises(Exception, match="no such folder"):
        install_plugin(tmp_path / "missing")


def test_a_crashed_instance_ends_only_its_episode_and_comes_back() -> None:
    cfg = EvoConfig()
    cfg.game.record_timeout = 1.0
    cfg.game.reconnect_timeout = 5.0
    games = [VirtualTMNF("evo-test", port=0, speed=100).start() for _ in range(3)]
    try:
        source = open_source(cfg, [g.port for g in games], virtual=True)
        env = VecTrackEnv(cfg, n_envs=3, source=source)
        env.reset(seed=0)
        gas = np.tile(np.array([[1.0, -1.0, 0.0]], np.float32), (3, 1))
        for _ in range(20):
            env.step(gas)
        port = games[1].port
        games[1].stop()  # instance 1 crashes mid-episode ...
        games[1] = VirtualTMNF("evo-test", port=port, speed=100).start()  # ... and its launcher restarts it
        _, _, terminated, truncated, infos = env.step(gas)
        assert truncated.tolist() == [False, True, False] and not terminated.any()
        final = infos["final_info"]
        assert infos["end_reason"].tolist() == ["", "game_lost", ""] and not final["finished"][1]
        assert final["episode_steps"][1] == 21  # the cut episode is reported, not written as a lap
        assert infos["episode_steps"].tolist() == [21, 0, 21]  # the others drive on; car 1 restarted
        assert not source.lost.any() and infos["race_time_ms"][1] == 0
        _, _, terminated, truncated, infos = env.step(gas)
        assert not (terminated | truncated).any() and infos["episode_steps"].tolist() == [22, 1, 22]
        env.close()
    finally:
        for g in games:
            g.stop()


def test_launcher_restarts_a_killed_or_hung_instance_and_the_source_reconnects(tmp_path) -> None:
    import signal
    import sys
    import time

    from evo_rl.games.tmnf.launch import Launcher, command_for

    with pytest.raises(Exception, match="no {port}"):
        command_for("game.exe", 1)
    ports = [free_port(), free_port()]
    cli = "import sys; from evo_rl.cli import main; sys.exit(main())"
    command = [sys.executable, "-c", cli, "virtual-game", "tmnf", "--port", "{port}", "--speed", "100"]
    cfg = EvoConfig()
    cfg.game.reconnect_timeout = 60.0  # a fresh interpreter imports the simulator first
    cfg.game.launcher_dir = str(tmp_path)
    with Launcher(command, ports, str(tmp_path)) as launcher:
        source = open_source(cfg, ports, virtual=True)
        env = VecTrackEnv(cfg, n_envs=2, source=source)
        env.reset(seed=0)
        gas = np.tile(np.array([[1.0, -1.0, 0.0]], np.float32), (2, 1))
        env.step(gas)
        first = launcher.procs[0]
        assert first is not None
        first.send_signal(signal.SIGKILL)  # the game crashes
        first.wait()
        deadline = time.monotonic() + 30
        while launcher.restarts[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert launcher.restarts == [1, 0]
        _, _, _, truncated, infos = env.step(gas)
        assert truncated.tolist() == [True, False] and infos["end_reason"].tolist() == ["game_lost", ""]
        assert infos["episode_steps"].tolist() == [0, 2]  # car 0 reconnected to the restarted instance
        # instance 1 hangs: its client times out, reports it, the launcher kills and restarts it
        hung = launcher.procs[1]
        assert hung is not None
        source.clients[1].set_timeout(0.5)
        hung.send_signal(signal.SIGSTOP)
        _wait_stopped(hung.pid)
        _, _, _, truncated, infos = env.step(gas)
        assert truncated.tolist() == [False, True] and infos["end_reason"].tolist() == ["", "game_lost"], (
            truncated,
            {k: infos[k] for k in ("end_reason", "episode_steps")},
            source.errors,
            launcher.restarts,
        )
        assert launcher.restarts == [1, 1] and hung.poll() is not None  # killed, and a new one answered
        assert infos["episode_steps"].tolist() == [1, 0]
        env.close()
    assert all(p.poll() is not None for p in launcher.procs if p is not None)  # stop() ended them all


def _wait_stopped(pid: int, seconds: float = 10.0) -> None:
    """Until the kernel has stopped every thread of ``pid`` (SIGSTOP takes effect asynchronously)."""
    import time
    from pathlib import Path

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        states = [(t / "stat").read_text().rsplit(")", 1)[1].split()[0] for t in Path(f"/proc/{pid}/task").iterdir()]
        if all(s in "Tt" for s in states):
            return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} did not stop within {seconds:g} s")


def test_gymnasium_ids_drive_tmnf_instances() -> None:
    import gymnasium as gym

    import evo_rl.envs  # noqa: F401 - registers the ids

    games = [VirtualTMNF("evo-test", port=0, speed=100).start() for _ in range(2)]
    try:
        ports = [g.port for g in games]
        env = gym.make("EvoRL-TMNF-Lidar-v0", config=EvoConfig(), **{"game.ports": ports})
        obs, _ = env.reset(seed=0)
        assert env.observation_space.contains(obs)
        obs, reward, terminated, truncated, info = env.step(np.array([1.0, 0.0, 0.0], np.float32))
        assert env.observation_space.contains(obs) and info["race_time_ms"] == 50
        env.close()
        venv = gym.make_vec("EvoRL-TMNF-LidarProgress-v0", num_envs=2, config=EvoConfig(), **{"game.ports": ports})
        obs, _ = venv.reset(seed=0)
        assert obs[1].shape == (2, 1) and venv.num_envs == 2
        venv.close()
        with pytest.raises(Exception, match="3 cars need 3 TMNF instances"):
            gym.make_vec("EvoRL-TMNF-Lidar-v0", num_envs=3, config=EvoConfig(), **{"game.ports": ports})
    finally:
        for g in games:
            g.stop()


def test_check_reports_each_step(tmp_path, capsys) -> None:
    from evo_rl.cli import main
    from evo_rl.games.tmnf.install import install_plugin

    with VirtualTMNF("evo-test", port=0, speed=100) as game:
        assert main(["game", "tmnf", "check", "--ports", str(game.port), "--dir", str(tmp_path)]) == 1
        out = capsys.readouterr().out
        assert (
            "missing  plugin" in out
            and "install-plugin" in out
            and f"ok       instance on 127.0.0.1:{game.port}" in out
        )
        install_plugin(tmp_path)
        assert main(["game", "tmnf", "check", "--ports", str(game.port), "--dir", str(tmp_path)]) == 0
        assert "one step advanced the race" in capsys.readouterr().out
    assert main(["game", "tmnf", "check", "--ports", str(game.port), "--dir", str(tmp_path), "--json"]) == 1
    assert '"status": "missing"' in capsys.readouterr().out


def test_the_game_without_frames_refuses_the_image_flavour():
    from evo_rl.config import load_config
    from evo_rl.envs.core import FLAVOUR_FIX
    from evo_rl.envs.observation import flavour_needs
    from evo_rl.envs.source import require
    from evo_rl.errors import ConfigError
    from evo_rl.games.tmnf.source import provides

    cfg = load_config(None, ["env.flavour=full"])
    assert "frames" in provides(cfg, True, virtual=True)
    with pytest.raises(ConfigError, match="env.flavour: full needs frames"):
        require("tmnf", provides(cfg, True, virtual=False), flavour_needs(cfg), "env.flavour: full", FLAVOUR_FIX)


# --------------------------------------------------------------------------- frames from the instances' windows


class LauncherWindows:
    """A window system where each live process of ``launcher`` has one window titled like TMNF, besides a
    browser tab that was open before; windows have a 8 px border and a 31 px title bar."""

    def __init__(self) -> None:
        self.launcher: object = None
        self.at: dict[int, tuple[int, int]] = {}  # handle -> outer top-left
        self.size: dict[int, tuple[int, int]] = {}  # handle -> client size

    def find(self, title: str) -> list:
        from evo_rl.games.window import Window

        procs = [q for q in getattr(self.launcher, "procs", []) if q is not None and q.poll() is None]
        windows = [
            Window(1, "TrackMania forum - Browser"),
            *(Window(q.pid, "TrackMania Nations Forever") for q in procs),
        ]
        return [w for w in windows if title.casefold() in w.title.casefold()]

    def activate(self, window) -> None:
        pass

    def resize_client(self, window, width: int, height: int) -> None:
        self.size[window.handle] = (width, height)

    def move(self, window, left: int, top: int) -> None:
        self.at[window.handle] = (left, top)

    def client_rect(self, window):
        from evo_rl.games.window import Rect

        left, top = self.at.get(window.handle, (500, 500))
        return Rect(left + 8, top + 31, *self.size.get(window.handle, (640, 480)))


class RegionScreen:
    """A capture of ``region`` whose picture is uniform, its grey level the region's left edge (mod 256)."""

    opened: list[dict] = []

    def __init__(self, region: dict) -> None:
        self.region = region
        RegionScreen.opened.append(region)

    def grab(self) -> np.ndarray:
        return np.full((self.region["height"], self.region["width"], 3), self.region["left"] % 256, np.uint8)

    def close(self) -> None:
        pass


def test_tiling_and_the_windows_file(tmp_path) -> None:
    from evo_rl.errors import ConfigError
    from evo_rl.games.errors import GameError
    from evo_rl.games.tmnf.windows import Tiling, check_apart, read_windows, write_windows
    from evo_rl.games.window import Rect

    tiling = Tiling(320, 200, columns=2, gap=40, left=10)
    assert [tiling.cell(i) for i in range(3)] == [(10, 0), (370, 0), (10, 240)]
    with pytest.raises(ConfigError, match="at least 1 column"):
        Tiling(320, 200, columns=0)
    regions = {9201: Rect(370, 31, 320, 200), 9200: Rect(18, 31, 320, 200)}
    write_windows(tmp_path, regions)
    assert read_windows(tmp_path) == regions
    check_apart(regions)
    with pytest.raises(GameError, match="ports 9200 and 9201 overlap.*larger gap"):
        check_apart({9200: Rect(0, 0, 320, 200), 9201: Rect(319, 199, 320, 200)})
    with pytest.raises(ConfigError, match=r"does not exist: start the games with `evo-rl game tmnf launch --tile"):
        read_windows(tmp_path / "elsewhere")
    path = tmp_path / "windows.json"
    for garbage, match in (
        ("{not json", "is not a windows file"),
        ('{"version": 2, "windows": {}}', "not a version 1 windows file"),
        ('{"version": 1, "windows": {"9200": {"left": 0, "top": 0, "width": -5, "height": 9}}}', "port '9200'"),
        ('{"version": 1, "windows": {"x": {"left": 0, "top": 0, "width": 5, "height": 9}}}', "port 'x'"),
    ):
        path.write_text(garbage)
        with pytest.raises(ConfigError, match=match):
            read_windows(tmp_path)


def test_frames_from_each_instances_window_placed_by_the_launcher(tmp_path, monkeypatch) -> None:
    import signal
    import sys
    import time

    from evo_rl.config import load_config
    from evo_rl.games import capture
    from evo_rl.games.tmnf.launch import Launcher
    from evo_rl.games.tmnf.source import provides
    from evo_rl.games.tmnf.windows import Tiling, read_windows
    from evo_rl.games.window import Rect

    games = [VirtualTMNF("evo-test", port=0, speed=100).start() for _ in range(2)]
    ports = [g.port for g in games]
    # the instances' processes: sleepers standing for the games, whose windows the fake system shows
    sleeper = [sys.executable, "-c", "import time; time.sleep(120)", "{port}"]
    system = LauncherWindows()
    tiling = Tiling(320, 200, columns=2, gap=48)
    launcher = Launcher(sleeper, ports, str(tmp_path), tiling=tiling, windows=system)
    system.launcher = launcher
    monkeypatch.setattr(capture, "MssScreen", RegionScreen)
    RegionScreen.opened = []
    cfg = load_config(None, ["env.flavour=full", "game.screen=window", f"game.launcher_dir={tmp_path}"])
    cfg.game.record_timeout = 1.0
    cfg.game.reconnect_timeout = 5.0
    assert "frames" in provides(cfg, True, virtual=False)  # the game itself, through its windows
    try:
        with launcher:
            cells = {ports[0]: Rect(8, 31, 320, 200), ports[1]: Rect(376, 31, 320, 200)}
            assert launcher.regions == cells and read_windows(tmp_path) == cells  # the browser tab was left alone
            source = open_source(cfg, ports, virtual=True)
            assert source._frame is None  # frames come from the windows, not the protocol
            env = VecTrackEnv(cfg, n_envs=2, source=source)
            obs, _ = env.reset(seed=0)
            assert [int(obs[3][i].mean()) for i in range(2)] == [8, 376 % 256]
            first = launcher.procs[0]
            assert first is not None
            first.send_signal(signal.SIGKILL)  # instance 0 crashes: its new window takes cell 0 again
            first.wait()
            deadline = time.monotonic() + 30
            while launcher.restarts[0] == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            new = launcher.procs[0]
            assert launcher.restarts == [1, 0] and new is not None and system.at[new.pid] == (0, 0)
            assert read_windows(tmp_path) == cells
            games[0].stop()  # ... and its game comes back on the same port: the car reconnects
            games[0] = VirtualTMNF("evo-test", port=ports[0], speed=100).start()
            gas = np.tile(np.array([[1.0, -1.0, 0.0]], np.float32), (2, 1))
            _, _, _, truncated, infos = env.step(gas)
            assert truncated.tolist() == [True, False] and infos["end_reason"][0] == "game_lost"
            assert len(RegionScreen.opened) == 3  # instance 0's window was captured afresh
            obs, *_ = env.step(gas)
            assert [int(obs[3][i].mean()) for i in range(2)] == [8, 376 % 256]
            env.close()
        assert all(q.poll() is not None for q in launcher.procs if q is not None)
    finally:
        for g in games:
            g.stop()
