"""TrackMania 2020 live layers: the record protocols, the plugin sources and installer, the client
against the virtual TrackMania 2020 on loopback, the input and screen backends, the CLI."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import socket
import struct
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import free_port

from evo_rl.envs.source import CarState, require
from evo_rl.errors import EvoError
from evo_rl.games import virtual_link as link
from evo_rl.games.capture import MssScreen, ScreenBackend, VirtualScreen
from evo_rl.games.cli import register
from evo_rl.games.control import GamepadInput, InputBackend, VirtualInput, action_to_inputs
from evo_rl.games.errors import GameConnectionError, GameError, MissingExtraError, ProtocolError
from evo_rl.games.tm2020 import install
from evo_rl.games.tm2020 import protocol as p
from evo_rl.games.tm2020.client import TM2020Client
from evo_rl.games.tm2020.virtual import VirtualTM2020

PLUGIN = Path(__file__).resolve().parent.parent / "evo_rl" / "games" / "tm2020" / "plugin"
WAIT = 10.0  # s to wait for something that must happen (returns as soon as it does)


def _until(condition, seconds: float = WAIT) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def _full_record():
    """A record where every field holds a distinct value that float32 represents exactly."""
    values = {}
    for i, f in enumerate(f for f in p.RECORD_FIELDS if f.const is None):
        if f.code == "f":
            values[f.name] = (i + 1) * 1.25 * (-1) ** i
        elif f.name in ("finished", "wheel_fl", "wheel_rl"):
            values[f.name] = 1
        elif f.name in ("wheel_fr", "wheel_rr"):
            values[f.name] = 0
        elif f.name == "wall_contact":
            values[f.name] = p.WALL_UNKNOWN
        elif f.code == "i":
            values[f.name] = -1500
        else:
            values[f.name] = 40 + i
    return p.Record(**values)


# --------------------------------------------------------------------------- the EVO RL protocol


def test_record_round_trip_keeps_every_field() -> None:
    rec = _full_record()
    data = p.encode_record(rec)
    assert len(data) == p.RECORD_SIZE == 87
    assert p.decode_record(data) == rec
    assert p.decode_record(memoryview(data)) == rec
    # the wire format: header, then the table's fields in order, little-endian
    assert data[:4] == b"EVRL"
    assert struct.unpack_from("<HHIi", data, 4) == (p.PROTOCOL_VERSION, p.RECORD_SIZE, rec.frame, rec.race_time_ms)
    assert struct.unpack_from("<3f", data, 16) == (rec.pos_x, rec.pos_y, rec.pos_z)
    assert struct.unpack_from("<I", data, p.RECORD_SIZE - 4) == (rec.command_ack,)


def test_record_car_state() -> None:
    rec = p.Record(
        race_time_ms=1234, pos_x=1.0, pos_y=9.0, pos_z=2.0, dir_x=0.0, dir_z=1.0, vel_x=3.0, vel_z=4.0,
        speed_kmh=18.0, gear=3, rpm=7000.0, gas=1.0, brake=0.0, steer=-0.5, checkpoints=2, checkpoints_total=5,
        finished=1, wall_contact=1, wheel_fl=1, wheel_fr=0, wheel_rl=1, wheel_rr=1,
    )  # fmt: skip
    s = p.record_to_car_state(rec)
    assert s == CarState(
        position=(1.0, 9.0, 2.0), heading=math.pi / 2, velocity=(3.0, 0.0, 4.0), speed_kmh=18.0, gear=3,
        rpm=7000.0, race_time_ms=1234, checkpoints=2, checkpoints_total=5, finished=True, wall_contact=True,
        wheel_contact=(True, False, True, True), inputs=(1.0, 0.0, -0.5),
    )  # fmt: skip
    assert p.record_to_car_state(dataclasses.replace(rec, wall_contact=p.WALL_UNKNOWN)).wall_contact is False


def test_command_round_trip() -> None:
    for command in p.Command:
        data = p.encode_command(command, 77)
        assert len(data) == p.COMMAND_SIZE == 12 and data[:4] == b"EVRC"
        assert p.decode_command(data) == (command, 77)
    with pytest.raises(ProtocolError, match="sequence"):
        p.encode_command(p.Command.PING, 0)


def test_truncated_and_overlong_records() -> None:
    data = p.encode_record(_full_record())
    for n in (0, 5, 8, p.RECORD_SIZE - 1):
        with pytest.raises(ProtocolError, match="truncated"):
            p.decode_record(data[:n])
    with pytest.raises(ProtocolError, match="overlong"):
        p.decode_record(data + b"\0")


def test_garbage_and_bad_magic() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        junk = rng.integers(0, 256, p.RECORD_SIZE, dtype=np.uint8).tobytes()
        with pytest.raises(ProtocolError, match="magic"):
            p.decode_record(junk)
    tmrl_like = struct.pack("<11f", *range(11)) + bytes(p.RECORD_SIZE - 44)
    with pytest.raises(ProtocolError, match="game.protocol: tmrl"):
        p.decode_record(tmrl_like)


def test_wrong_version_and_size() -> None:
    data = bytearray(p.encode_record(_full_record()))
    data[4:6] = struct.pack("<H", p.PROTOCOL_VERSION + 1)
    with pytest.raises(ProtocolError, match=r"version 2.*install-plugin"):
        p.decode_record(bytes(data))
    data = bytearray(p.encode_record(_full_record()))
    data[6:8] = struct.pack("<H", p.RECORD_SIZE + 4)
    with pytest.raises(ProtocolError, match="size"):
        p.decode_record(bytes(data))


def test_garbled_values() -> None:
    rec = _full_record()
    for bad in ({"pos_x": math.nan}, {"rpm": math.inf}, {"finished": 7}, {"wheel_rr": 2}, {"wall_contact": 3}):
        with pytest.raises(ProtocolError, match="garbled"):
            p.decode_record(p.encode_record(dataclasses.replace(rec, **bad)))
    with pytest.raises(ProtocolError, match="cannot encode"):
        p.encode_record(dataclasses.replace(rec, gear=300))


def test_bad_commands() -> None:
    good = p.encode_command(p.Command.RESPAWN, 5)
    with pytest.raises(ProtocolError, match="truncated"):
        p.decode_command(good[:-1])
    with pytest.raises(ProtocolError, match="magic"):
        p.decode_command(b"XXXX" + good[4:])
    with pytest.raises(ProtocolError, match="version"):
        p.decode_command(good[:4] + struct.pack("<H", 9) + good[6:])
    with pytest.raises(ProtocolError, match="unknown command 99"):
        p.decode_command(good[:6] + struct.pack("<H", 99) + good[8:])


# --------------------------------------------------------------------------- the TMRL protocol


def test_tmrl_round_trip_and_documented_layout() -> None:
    names = ["speed", "distance", "x", "y", "z", "steer", "gas", "brake", "finished", "gear", "rpm"]
    assert [f.name for f in p.TMRL_FIELDS] == names
    values = [55.5, 1234.25, 10.5, 9.0, -20.75, -0.5, 1.0, 1.0, 0.0, 3.0, 8000.0]
    # TMRL_GrabData writes 11 little-endian float32 in this order
    rec = p.decode_tmrl(struct.pack("<11f", *values))
    assert dataclasses.asdict(rec) == dict(zip(names, values, strict=True))
    assert p.encode_tmrl(rec) == struct.pack("<11f", *values)
    s = p.tmrl_to_car_state(rec)
    assert s.position == (10.5, 9.0, -20.75) and s.gear == 3 and s.rpm == 8000.0 and s.finished is False
    assert s.speed_kmh == pytest.approx(55.5 * 3.6) and s.inputs == (1.0, 1.0, -0.5)


def test_tmrl_truncated_and_garbled() -> None:
    good = struct.pack("<11f", *([1.0] * 8 + [0.0, 2.0, 5000.0]))
    for n in (0, 10, 43):
        with pytest.raises(ProtocolError, match="truncated TMRL"):
            p.decode_tmrl(good[:n])
    for i, v in ((0, math.nan), (8, 0.5), (7, 2.0), (9, -1.0)):
        values = list(struct.unpack("<11f", good))
        values[i] = v
        with pytest.raises(ProtocolError, match="garbled TMRL"):
            p.decode_tmrl(struct.pack("<11f", *values))


# --------------------------------------------------------------------------- the plugin sources


def test_record_as_is_generated_from_the_table() -> None:
    committed = (PLUGIN / p.RECORD_AS).read_text(encoding="utf-8")
    assert committed == p.angelscript_source(), (
        "evo_rl/games/tm2020/plugin/Record.as differs from the table: run `python -m evo_rl.games.tm2020.protocol --write`"
    )


def test_record_as_writes_the_table_in_order_with_its_types() -> None:
    """Read back from the AngelScript: the Values members, the write order and the command reader."""
    text = (PLUGIN / p.RECORD_AS).read_text(encoding="utf-8")
    record_ns = text.split("namespace EvoCommand")[0]
    as_type = {code: spec[1] for code, spec in p.STRUCT_TYPES.items()}
    members = re.findall(r"^\s+(\w+) (\w+);", record_ns.split("class Values")[1].split("}")[0], re.M)
    body = [f for f in p.RECORD_FIELDS if f.const is None]
    assert members == [(as_type[f.code], f.name) for f in body]
    writes = re.findall(r"buf\.Write\((?:v\.)?(\w+)\);", record_ns)
    assert writes == ["MAGIC", "VERSION", "SIZE", *(f.name for f in body)]
    assert f"const uint16 SIZE = {p.RECORD_SIZE};" in record_ns
    assert f"const uint MAGIC = 0x{p.RECORD_MAGIC:08X};" in record_ns
    reads = re.findall(r"(\w+) = sock\.(\w+)\(\);", text)
    readers = {code: spec[2] for code, spec in p.STRUCT_TYPES.items()}
    assert reads == [(f.name, readers[f.code]) for f in p.COMMAND_FIELDS]


def test_plugin_sets_every_record_field() -> None:
    code = "\n".join(path.read_text(encoding="utf-8") for path in PLUGIN.glob("*.as") if path.name != p.RECORD_AS)
    assigned = set(re.findall(r"\b(?:v|values)\.(\w+)\s*=", code))
    assert assigned == {f.name for f in p.RECORD_FIELDS if f.const is None}
    info = (PLUGIN / "info.toml").read_text(encoding="utf-8")
    assert "[meta]" in info and '"VehicleState"' in info


def test_docs_show_the_tables() -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "games.md").read_text(encoding="utf-8")
    for fields in (p.RECORD_FIELDS, p.COMMAND_FIELDS, p.TMRL_FIELDS):
        assert p.markdown_table(fields) in doc, "docs/games.md: paste protocol.markdown_table(...) again"
    assert "Developer mode" in doc and "TMRL_GrabData" in doc


# --------------------------------------------------------------------------- installing the plugin


def test_install_plugin_into_a_folder(tmp_path: Path) -> None:
    written = install.install_plugin(tmp_path)
    assert written == [tmp_path / install.ARCHIVE_NAME]
    with zipfile.ZipFile(written[0]) as z:
        assert sorted(z.namelist()) == ["Main.as", "Record.as", "Telemetry.as", "info.toml"]
        assert z.read("Record.as").decode() == p.angelscript_source()
        assert z.read("info.toml") == (PLUGIN / "info.toml").read_bytes()
        assert z.read("Main.as") == (PLUGIN / "Main.as").read_bytes()
    with pytest.raises(GameError, match="no such folder"):
        install.install_plugin(tmp_path / "missing")
    with pytest.raises(GameError, match="info.toml"):
        install.install_plugin(tmp_path, source=tmp_path)


def test_find_plugin_dirs_under_proton_wine_and_windows(tmp_path: Path) -> None:
    proton = tmp_path / ".steam/steam/steamapps/compatdata/2225070/pfx/drive_c/users/steamuser/OpenplanetNext"
    wine = tmp_path / ".wine/drive_c/users/ana/OpenplanetNext"
    for d in (proton, wine):
        d.mkdir(parents=True)
    found = install.find_plugin_dirs(home=tmp_path, env={"USER": "ana"}, system="Linux")
    assert found == [proton / "Plugins", wine / "Plugins"]
    assert install.find_plugin_dirs(home=tmp_path, env={"USER": "bob"}, system="Linux") == [proton / "Plugins"]
    profile = tmp_path / "Users" / "ana"
    (profile / "OpenplanetNext").mkdir(parents=True)
    found = install.find_plugin_dirs(home=tmp_path, env={"USERPROFILE": str(profile)}, system="Windows")
    assert found == [profile / "OpenplanetNext" / "Plugins"]
    assert install.find_plugin_dirs(home=tmp_path / "nobody", env={}, system="Linux") == []


def test_install_plugin_says_where_it_looked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(install, "find_plugin_dirs", lambda: [])
    with pytest.raises(GameError, match=r"OpenplanetNext.*--dir"):
        install.install_plugin()


# --------------------------------------------------------------------------- the CLI


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="evo-rl")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_install_plugin(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli(["game", "tm2020", "install-plugin", "--dir", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"installed": [str(tmp_path / install.ARCHIVE_NAME)]}


# --------------------------------------------------------------------------- against the virtual game


@pytest.fixture
def game() -> Iterator[VirtualTM2020]:
    with VirtualTM2020(track="evo-mini", port=0, time_scale=5.0) as g:
        yield g


def test_records_flow_and_frames_increase(game: VirtualTM2020) -> None:
    with TM2020Client(port=game.port) as client:
        client.wait_connected(WAIT)
        first = client.wait_newer(-1, WAIT)
        later = client.wait_newer(first.seq + 5, WAIT)
    assert later.seq > first.seq + 5 and later.connection == first.connection == 1
    assert later.record.frame > first.record.frame
    assert later.record.race_time_ms > first.record.race_time_ms >= 0
    assert later.record.race_time_ms % game.frame_ms == 0
    s = later.car_state()
    assert s.checkpoints_total == len(game.track.checkpoints) and s.position[1] == game.track.height
    assert s.wheel_contact == (True, True, True, True) and s.gear >= 0


def test_input_drives_the_car_and_respawn_resets_the_run(game: VirtualTM2020) -> None:
    with TM2020Client(port=game.port) as client, VirtualInput(game.input_port, timeout=WAIT) as pad:
        assert isinstance(pad, InputBackend)
        pad.apply(1.0, 0.0, 0.25)
        moving = client.wait_newer(-1, WAIT)
        assert _until(lambda: client.wait_newer(-1, WAIT).record.race_time_ms > 1000)
        moving = client.wait_newer(client.seq, WAIT)
        assert moving.record.gas == 1.0 and moving.record.steer == 0.25 and moving.record.speed_kmh > 10
        after = client.respawn(timeout=WAIT)
        assert after.record.command_ack == 1
        assert after.record.race_time_ms <= 2 * game.frame_ms < moving.record.race_time_ms
        assert after.car_state().speed_kmh < 5
        assert client.ping(timeout=WAIT).record.command_ack == 2
        assert client.restart_map(timeout=WAIT).record.race_time_ms < moving.record.race_time_ms
        pad.release()
        assert _until(lambda: client.wait_newer(-1, WAIT).record.gas == 0.0)
        pad.respawn()  # the respawn button, as the control layer presses it
        assert _until(lambda: client.wait_newer(-1, WAIT).record.race_time_ms < 200)


def test_virtual_screen_shows_the_cockpit_view(game: VirtualTM2020) -> None:
    from evo_rl.sim.cockpit import cockpit_view

    with VirtualScreen(game.input_port, timeout=WAIT) as screen:
        assert isinstance(screen, ScreenBackend)
        img = screen.grab()
        # the game window at TMRL's size: the cockpit view of the car at that frame
        assert img.shape == (488, 958, 3) and img.dtype == np.uint8 and img.std() > 0
        assert screen.frame >= 0
    game.stop()  # no inputs came: the car is still at rest on the start line, as in the picture
    np.testing.assert_array_equal(img, cockpit_view(game.world)[0])


def test_virtual_screen_can_show_the_simulators_camera() -> None:
    with VirtualTM2020("evo-mini", port=0, time_scale=5.0, screen="camera") as game:
        with VirtualScreen(game.input_port, timeout=WAIT) as screen:
            img = screen.grab()
        cam = game.world.camera_cfg
        assert img.shape == (cam.height, cam.width, 3) and img.dtype == np.uint8
        assert (img[..., 0] == img[..., 2]).all() and img.std() > 0  # grey, and not blank
    with pytest.raises(EvoError, match="screen must be"):
        VirtualTM2020("evo-mini", port=0, screen="tv")


def test_reconnects_after_the_virtual_game_restarts() -> None:
    port = free_port()
    first = VirtualTM2020(track="evo-mini", port=port, input_port=0, time_scale=5.0).start()
    with TM2020Client(port=port) as client:
        try:
            before = client.wait_newer(-1, WAIT)
            assert _until(lambda: client.wait_newer(-1, WAIT).record.frame > 50)
        finally:
            first.stop()
        assert _until(lambda: not client.connected)
        seq = client.seq
        with VirtualTM2020(track="evo-test", port=port, input_port=0, time_scale=5.0):  # another map
            after = client.wait_newer(seq, WAIT)
    assert after.connection == 2 and before.connection == 1 and client.connections == 2
    assert after.seq > seq  # sequence numbers go on across reconnects
    assert (before.record.checkpoints_total, after.record.checkpoints_total) == (2, 5)  # the records of the new game


def test_one_client_at_a_time(game: VirtualTM2020) -> None:
    with TM2020Client(port=game.port) as first:
        first.wait_newer(-1, WAIT)
        with TM2020Client(port=game.port) as second:
            assert _until(lambda: second.connections >= 1)
            time.sleep(0.3)
            assert second.seq == -1  # refused while the first is connected
            first.close()
            second.wait_newer(-1, WAIT)


def test_tmrl_protocol_against_the_virtual_game() -> None:
    with VirtualTM2020(track="evo-mini", port=0, protocol="tmrl", time_scale=5.0) as game:
        with (
            TM2020Client(port=game.port, protocol="tmrl") as client,
            VirtualInput(game.input_port, timeout=WAIT) as pad,
        ):
            assert client.provides == p.TMRL_PROVIDES
            pad.apply(1.0, 0.0, 0.0)
            assert _until(lambda: client.wait_newer(-1, WAIT).record.distance > 5)
            t = client.wait_newer(client.seq, WAIT)
            assert isinstance(t.record, p.TmrlRecord) and t.record.gas == 1.0 and t.record.brake == 0.0
            assert t.car_state().speed_kmh == pytest.approx(t.record.speed * 3.6)
            with pytest.raises(ProtocolError, match="no commands"):
                client.respawn()
            pad.respawn()
            assert _until(lambda: client.wait_newer(-1, WAIT).record.distance < 5)


def test_port_in_use_is_a_clear_error(game: VirtualTM2020) -> None:
    with pytest.raises(GameError, match=f"cannot listen on 127.0.0.1:{game.port}"):
        VirtualTM2020(track="evo-mini", port=game.port, input_port=0)


# --------------------------------------------------------------------------- faults


def test_nothing_listens_gives_a_clear_message() -> None:
    port = free_port()
    with TM2020Client(port=port, retry_seconds=0.05) as client:
        with pytest.raises(GameConnectionError) as e:
            client.wait_newer(-1, timeout=0.3)
        with pytest.raises(GameConnectionError):
            client.ping()
    msg = str(e.value)
    assert f"127.0.0.1:{port}" in msg and "nothing listens" in msg and "Developer mode" in msg
    assert "install-plugin" in msg and "in a race" in msg and "virtual-game" in msg


class _RawServer:
    """A loopback server that sends ``payload`` once to each client, then keeps the connection open."""

    def __init__(self, payload: bytes) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.payload = payload
        self.conns: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            conn.sendall(self.payload)
            self.conns.append(conn)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=2)
        for c in [*self.conns, self.sock]:
            c.close()


def test_data_stops_gives_a_clear_message() -> None:
    server = _RawServer(p.encode_record(_full_record()))  # one record, then silence
    try:
        with TM2020Client(port=server.port) as client:
            t = client.wait_newer(-1, WAIT)
            with pytest.raises(GameConnectionError) as e:
                client.wait_newer(t.seq, timeout=0.3)
    finally:
        server.close()
    assert "connected to" in str(e.value) and "no record came within 0.3 s" in str(e.value)
    assert "in a race" in str(e.value)


def test_garbage_and_wrong_version_streams_are_reported_and_retried() -> None:
    wrong = bytearray(p.encode_record(_full_record()))
    wrong[4:6] = struct.pack("<H", 2)
    for payload, expected in ((b"\x13" * 200, "bad magic"), (bytes(wrong), "protocol version 2")):
        server = _RawServer(payload)
        try:
            with TM2020Client(port=server.port, retry_seconds=0.05) as client:
                assert _until(lambda: client.connections >= 2)  # closed the bad stream and connected again
                assert expected in (client.last_error or "")
                with pytest.raises(GameConnectionError, match=expected):
                    client.wait_newer(-1, timeout=0.2)
                assert client.seq == -1
        finally:
            server.close()


def test_a_truncated_stream_yields_no_record() -> None:
    server = _RawServer(p.encode_record(_full_record())[:-10])
    try:
        with TM2020Client(port=server.port) as client:
            with pytest.raises(GameConnectionError):
                client.wait_newer(-1, timeout=0.3)
    finally:
        server.close()


# --------------------------------------------------------------------------- backends and helpers


def test_missing_game_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vgamepad", None)
    monkeypatch.setitem(sys.modules, "mss", None)
    with pytest.raises(MissingExtraError, match=r"vgamepad.*evo-rl\[game\]"):
        GamepadInput()
    with pytest.raises(MissingExtraError, match=r"mss.*evo-rl\[game\]"):
        MssScreen()


def test_virtual_backends_without_a_game() -> None:
    port = free_port()
    for backend in (VirtualInput, VirtualScreen):
        with pytest.raises(GameConnectionError, match="virtual-game tm2020"):
            backend(port, timeout=0.5)


def test_virtual_input_refuses_bad_inputs(game: VirtualTM2020) -> None:
    with VirtualInput(game.input_port, timeout=WAIT) as pad:
        with pytest.raises(EvoError, match="finite"):
            pad.apply(math.nan, 0.0, 0.0)
        pad.apply(5.0, -3.0, -9.0)  # clipped
        assert _until(lambda: game.inputs == (1.0, 0.0, -1.0))


def test_link_frames() -> None:
    frame = link.encode_request(link.Request.INPUT, 0.5, 0.25, -1.0)
    assert link.decode_request(frame) == (link.Request.INPUT, 0.5, 0.25, -1.0)
    with pytest.raises(ProtocolError):
        link.decode_request(b"x" * link.REQUEST_SIZE)
    header = link.encode_screen_header(9, 48, 64, 1)
    assert link.decode_screen_header(header) == (9, 48, 64, 1)
    with pytest.raises(ProtocolError, match="implausible"):
        link.decode_screen_header(link.encode_screen_header(1, 48, 64, 2))


def test_action_to_inputs() -> None:
    assert action_to_inputs(np.array([0.3, -0.2, 0.5])) == (1.0, 0.0, 0.5)
    assert action_to_inputs(np.array([0.3, 0.7, -2.0]), "analog") == pytest.approx((0.3, 0.7, -1.0))
    with pytest.raises(EvoError):
        action_to_inputs(np.array([math.nan, 0.0, 0.0]))
    with pytest.raises(EvoError):
        action_to_inputs(np.array([0.0, 0.0]))


def test_require_names_the_consumer_and_the_source() -> None:
    require("tm2020", p.EVO_PROVIDES, ["race_time", "checkpoints"], "reward term checkpoint")
    with pytest.raises(EvoError, match=r"reward term checkpoint needs checkpoints, race_time.*'tm2020-tmrl'"):
        require("tm2020-tmrl", p.TMRL_PROVIDES, ["race_time", "checkpoints"], "reward term checkpoint")
    with pytest.raises(EvoError, match="unknown"):
        require("sim", [], ["nonsense"], "a rule")


def test_cli_virtual_game_and_watch(capsys: pytest.CaptureFixture[str]) -> None:
    with VirtualTM2020(track="evo-mini", port=0, time_scale=5.0) as game:
        assert _cli(["game", "tm2020", "watch", "--port", str(game.port), "--records", "3"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 3 and lines[0]["seq"] < lines[1]["seq"] < lines[2]["seq"]
    assert set(lines[0]) == {"seq", *(f.name for f in p.RECORD_FIELDS if f.const is None)}
    port = free_port()
    assert _cli(["virtual-game", "tm2020", "--track", "evo-mini", "--port", str(port), "--seconds", "0.2"]) == 0
    assert f"127.0.0.1:{port}" in capsys.readouterr().err
