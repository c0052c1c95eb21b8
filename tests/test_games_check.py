"""`evo-rl game tm2020 check` (evo_rl.games.check): against a virtual game, with nothing listening, and with the
packages, the plugin folder, the window and the gamepad replaced, so no test needs the game or Windows."""

from __future__ import annotations

import json
import re
import sys
import types
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port, games_cli

from evo_rl.games import check as chk
from evo_rl.games.errors import GameConnectionError, GameError, MissingExtraError
from evo_rl.games.tm2020 import install
from evo_rl.games.tm2020.virtual import VirtualTM2020

ROOT = Path(__file__).resolve().parent.parent


def _importer(missing: frozenset[str] | set[str] = frozenset()):  # noqa: B006
    """An import function that finds every module but ``missing``."""

    def imp(name: str) -> types.ModuleType:
        if name in missing:
            raise ImportError(f"No module named {name!r}")
        return types.ModuleType(name)

    return imp


class _Pad:
    closed = False

    def close(self) -> None:
        self.closed = True


def _by_name(checks: list[chk.Check]) -> dict[str, chk.Check]:
    return {c.name: c for c in checks}


@pytest.fixture
def game() -> Iterator[VirtualTM2020]:
    with VirtualTM2020(track="evo-mini", port=0, time_scale=5.0) as g:
        yield g


@pytest.fixture
def plugins(tmp_path: Path) -> Path:
    install.install_plugin(tmp_path)
    return tmp_path


def test_everything_works_against_a_virtual_game(game: VirtualTM2020, plugins: Path) -> None:
    pads: list[_Pad] = []
    checks = chk.run_checks(
        game.port, "evo", plugins, seconds=5.0, system="Linux", importer=_importer(),
        make_gamepad=lambda: pads.append(_Pad()) or pads[-1],
    )  # fmt: skip
    by = _by_name(checks)
    assert [c.name for c in checks] == [
        "package vgamepad", "package mss", "package rtgym", "plugin", "game window",
        "telemetry", "commands", "gamepad",
    ]  # fmt: skip
    assert all(c.status in ("ok", "skipped") for c in checks), chk.format_checks(checks)
    assert chk.exit_status(checks) == 0
    assert by["plugin"].status == "ok" and str(plugins / install.ARCHIVE_NAME) in by["plugin"].detail
    assert by["game window"].status == "skipped" and "not Windows" in by["game window"].detail
    rate = float(re.search(r"(\d+) records/s", by["telemetry"].detail).group(1))  # type: ignore[union-attr]
    assert 300 < rate < 700  # 100 frames per game second, 5 game seconds per second
    assert f"127.0.0.1:{game.port}" in by["telemetry"].detail and "a virtual game" in by["telemetry"].detail
    assert by["commands"].status == "ok" and "acknowledged" in by["commands"].detail
    assert by["gamepad"].status == "ok" and pads and pads[0].closed  # vgamepad importable here: it is tried
    text = chk.format_checks(checks)
    assert text.splitlines()[-1] == "everything needed works"
    assert re.search(r"^ok +telemetry: \d+ records/s", text, re.M)


def test_nothing_listening_says_what_to_check(plugins: Path) -> None:
    port = free_port()
    checks = chk.run_checks(port, "evo", plugins, seconds=0.3, system="Linux", importer=_importer())
    by = _by_name(checks)
    t = by["telemetry"]
    assert t.status == "missing" and t.required and chk.exit_status(checks) == 1
    assert t.detail.startswith(f"no telemetry on 127.0.0.1:{port}")
    for what in ("nothing listens", "install-plugin", "Developer mode", "in a race", "virtual-game tm2020"):
        assert what in t.detail
    assert by["commands"].status == "skipped" and not by["commands"].required
    text = chk.format_checks(checks)
    assert re.search(r"^missing +telemetry: no telemetry on", text, re.M)
    assert text.splitlines()[-1] == "not ready: telemetry"


def test_tmrl_protocol(plugins: Path) -> None:
    (plugins / "TMRL_GrabData.op").write_bytes(b"")
    with VirtualTM2020(track="evo-mini", port=0, protocol="tmrl", time_scale=5.0) as game:
        checks = chk.run_checks(
            game.port, "tmrl", plugins, seconds=5.0, system="Linux", importer=_importer({"vgamepad"})
        )
    by = _by_name(checks)
    assert by["plugin"].status == "ok" and "TMRL_GrabData" in by["plugin"].detail
    assert by["telemetry"].status == "ok" and "tmrl protocol" in by["telemetry"].detail
    assert by["commands"].status == "skipped" and "takes no commands" in by["commands"].detail
    assert by["gamepad"].status == "skipped" and chk.exit_status(checks) == 0


def test_missing_packages_name_the_extra() -> None:
    checks = [chk._package(pkg, False, _importer({"mss", "vgamepad"})) for pkg in chk.GAME_PACKAGES]
    by = _by_name(checks)
    assert by["package mss"].status == "missing" and 'pip install "evo-rl[game]"' in by["package mss"].fix
    assert by["package vgamepad"].status == "skipped" and "only on Windows" in by["package vgamepad"].detail
    assert by["package rtgym"].status == "ok"
    on_windows = chk._package(chk.GAME_PACKAGES[0], True, _importer({"vgamepad"}))
    assert on_windows.status == "missing" and on_windows.required


def test_game_packages_are_the_game_extra() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["game"]
    declared = {}
    for req in extra:
        name = re.match(r"[A-Za-z0-9_.-]+", req).group(0)  # type: ignore[union-attr]
        declared[name] = "platform_system == 'Windows'" in req
    assert declared == {pkg.distribution: pkg.windows_only for pkg in chk.GAME_PACKAGES}


def test_plugin_states(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(install, "find_plugin_dirs", lambda: [])
    c = chk._plugin("evo", None)
    assert c.status == "missing" and "not found" in c.detail and "--dir" in c.fix
    c = chk._plugin("evo", tmp_path / "nope")
    assert c.status == "missing" and "no such folder" in c.detail
    c = chk._plugin("evo", tmp_path)
    assert c.status == "missing" and "EvoRL.op" in c.detail and "install-plugin" in c.fix
    with zipfile.ZipFile(tmp_path / install.ARCHIVE_NAME, "w") as z:
        z.writestr("Record.as", "// another protocol")
    c = chk._plugin("evo", tmp_path)
    assert c.status == "failed" and "another EVO RL" in c.detail and "install-plugin" in c.fix
    (tmp_path / install.ARCHIVE_NAME).write_bytes(b"not a zip")
    assert chk._plugin("evo", tmp_path).status == "failed"
    install.install_plugin(tmp_path)
    assert chk._plugin("evo", tmp_path).status == "ok"
    monkeypatch.setattr(install, "find_plugin_dirs", lambda: [tmp_path])
    assert chk._plugin("evo", None).status == "ok"
    assert chk._plugin("tmrl", None).status == "missing"


def test_a_plugin_not_found_is_not_needed_while_telemetry_flows(
    game: VirtualTM2020, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(install, "find_plugin_dirs", lambda: [])  # Linux without a Proton or Wine prefix
    checks = chk.run_checks(game.port, "evo", None, seconds=5.0, system="Linux", importer=_importer({"vgamepad"}))
    plugin = _by_name(checks)["plugin"]
    assert plugin.status == "missing" and not plugin.required and "a plugin is loaded anyway" in plugin.detail
    assert chk.exit_status(checks) == 0
    assert "(not needed)" in chk.format_checks(checks)


def test_windows_window_and_gamepad() -> None:
    window = chk._window(True, lambda: None)
    assert window.status == "missing" and "Trackmania" in window.detail and window.required
    window = chk._window(True, lambda: chk.Window("Trackmania", 0, 0, 1920, 1080))
    assert window.status == "ok" and "1920x1080" in window.detail

    def two() -> chk.Window:
        raise GameError("2 windows are titled 'Trackmania' (handles 1, 2); close all but one")

    window = chk._window(True, two)
    assert window.status == "failed" and "2 windows" in window.detail

    def broken() -> object:
        raise GameConnectionError("cannot create a virtual gamepad (no ViGEmBus)")

    def absent() -> object:
        raise MissingExtraError("the gamepad input needs vgamepad")

    pad = chk._gamepad(True, _importer(), broken)
    assert pad.status == "failed" and pad.required and "ViGEmBus" in pad.fix
    assert chk._gamepad(True, _importer(), absent).status == "missing"
    assert chk._gamepad(True, _importer(), _Pad).status == "ok"
    off = chk._gamepad(False, _importer(), broken)
    assert off.status == "failed" and not off.required  # off Windows a pad is a bonus
    assert chk._gamepad(False, _importer({"vgamepad"}), broken).status == "skipped"


@pytest.mark.skipif(sys.platform == "win32", reason="off Windows only")
def test_find_game_window_needs_windows() -> None:
    with pytest.raises(GameError, match="Windows only"):
        chk.find_game_window()
    assert chk._window(True, None).status == "failed"  # as if the platform said Windows: user32 is not there


def test_cli_check(game: VirtualTM2020, plugins: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = games_cli(["game", "tm2020", "check", "--port", str(game.port), "--dir", str(plugins), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert out["port"] == game.port and out["protocol"] == "evo" and rc == (0 if out["ok"] else 1)
    by = {c["name"]: c for c in out["checks"]}
    assert by["telemetry"]["status"] == "ok" and by["plugin"]["status"] == "ok"
    assert set(by["telemetry"]) == {"name", "status", "detail", "fix", "required"}

    port = free_port()
    assert games_cli(["game", "tm2020", "check", "--port", str(port), "--seconds", "0.3", "--dir", str(plugins)]) == 1
    text = capsys.readouterr().out
    assert text.startswith(f"checking TrackMania 2020 (evo protocol, telemetry on 127.0.0.1:{port})")
    assert re.search(r"^missing +telemetry: no telemetry on 127\.0\.0\.1", text, re.M)
    assert re.search(r"^skipped +commands", text, re.M)
