"""``evo-rl game tm2020 check``: what works and what is missing to drive TrackMania 2020, step by step.

:func:`run_checks` returns one :class:`Check` per step, in the order a user sets things up:

1. the ``game`` extra's packages (vgamepad on Windows, mss and rtgym everywhere) import;
2. the plugin is installed: ``EvoRL.op`` (protocol evo, the same protocol version as this EVO RL) or
   TMRL's ``TMRL_GrabData`` (protocol tmrl) in OpenPlanet's ``Plugins`` folder
   (:func:`~evo_rl.games.tm2020.install.find_plugin_dirs`, or ``--dir``);
3. the game window, a window titled ``Trackmania`` (Windows only, through :mod:`evo_rl.games.window`'s
   user32 calls; skipped elsewhere);
4. telemetry flows: records arrive on 127.0.0.1 within a few seconds, and at what rate;
5. the plugin answers commands (protocol evo: a ping is acknowledged);
6. the gamepad driver: vgamepad creates a virtual Xbox 360 pad (Windows; elsewhere only if vgamepad is there).

Every check is ``ok``, ``missing`` (something to install or start), ``failed`` (there but not working)
or ``skipped`` (does not apply here), with what to do. :func:`exit_status` is 0 when every *required*
check is ok. The plugin check is required only while no telemetry flows: records arriving prove a
plugin is loaded, wherever it was installed. Nothing here raises for a missing piece; every wait is
bounded and every connection is to 127.0.0.1.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import platform
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Literal

from evo_rl.games.errors import GAME_EXTRA, GameError, MissingExtraError
from evo_rl.games.tm2020 import install
from evo_rl.games.tm2020 import protocol as p
from evo_rl.games.tm2020.client import ProtocolName, TM2020Client

Status = Literal["ok", "missing", "failed", "skipped"]
WINDOW_TITLE = "Trackmania"  # the title of TrackMania 2020's window
TMRL_PLUGIN = "TMRL_GrabData"  # TMRL's plugin, a .op file or a folder in Plugins
MIN_RATE = 10.0  # records/s below which the telemetry counts as failing (the game writes one per frame)
RATE_SECONDS = 1.0  # s over which the record rate is measured


@dataclass(frozen=True)
class GamePackage:
    """One package of the ``game`` extra (pyproject.toml) and the module that shows it is installed."""

    distribution: str
    module: str
    windows_only: bool  # the extra installs it only on Windows (its environment marker)
    use: str


GAME_PACKAGES: tuple[GamePackage, ...] = (
    GamePackage("vgamepad", "vgamepad", True, "the virtual gamepad that drives the car"),
    GamePackage("mss", "mss", False, "screenshots of the game window"),
    GamePackage("rtgym", "rtgym", False, "the real-time environment"),
)


@dataclass(frozen=True)
class Check:
    """One step of the check: its status, what was seen, and what to do when it is not ok."""

    name: str
    status: Status
    detail: str
    fix: str = ""
    required: bool = True  # counts for the exit status

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "skipped") or not self.required


@dataclass(frozen=True)
class Window:
    """A game window: its title and its client area (the picture) on the screen, pixels."""

    title: str
    left: int
    top: int
    width: int
    height: int


def run_checks(
    port: int | None = None,
    protocol: ProtocolName = "evo",
    plugins_dir: Path | None = None,
    seconds: float = 2.0,
    system: str | None = None,
    importer: Callable[[str], ModuleType] = importlib.import_module,
    find_window: Callable[[], Window | None] | None = None,
    make_gamepad: Callable[[], object] | None = None,
) -> list[Check]:
    """Every check, in order. ``system`` (``platform.system()``), ``importer``, ``find_window`` and
    ``make_gamepad`` default to this machine's; tests replace them."""
    system = platform.system() if system is None else system
    windows = system == "Windows"
    checks = [_package(pkg, windows, importer) for pkg in GAME_PACKAGES]
    plugin = _plugin(protocol, plugins_dir)
    window = _window(windows, find_window)
    telemetry, commands = _telemetry(port, protocol, seconds)
    if telemetry.status == "ok" and plugin.status != "ok":
        plugin = Check(plugin.name, plugin.status, plugin.detail + "; telemetry flows, so a plugin is loaded anyway",
                       required=False)  # fmt: skip
    gamepad = _gamepad(windows, importer, make_gamepad)
    return [*checks, plugin, window, telemetry, commands, gamepad]


def exit_status(checks: Sequence[Check]) -> int:
    """0 when every required check is ok (or skipped), else 1."""
    return 0 if all(c.ok for c in checks) else 1


def format_checks(checks: Sequence[Check]) -> str:
    """One line per check (status, name, what was seen, what to do), then a verdict."""
    lines = []
    for c in checks:
        note = "" if c.required or c.status in ("ok", "skipped") else " (not needed)"
        fix = f"; {c.fix}" if c.fix and c.status not in ("ok", "skipped") else ""
        lines.append(f"{c.status:<8} {c.name}: {c.detail}{fix}{note}")
    bad = [c.name for c in checks if not c.ok]
    lines.append("everything needed works" if not bad else f"not ready: {', '.join(bad)}")
    return "\n".join(lines) + "\n"


def as_json(checks: Sequence[Check], port: int, protocol: str) -> dict[str, object]:
    """The checks as one JSON-ready object."""
    return {"ok": exit_status(checks) == 0, "port": port, "protocol": protocol, "checks": [asdict(c) for c in checks]}


# --------------------------------------------------------------------------- the steps


def _package(pkg: GamePackage, windows: bool, importer: Callable[[str], ModuleType]) -> Check:
    name = f"package {pkg.distribution}"
    try:
        importer(pkg.module)
    except ImportError as e:
        if pkg.windows_only and not windows:
            return Check(name, "skipped", f"not Windows: the game extra installs it only on Windows ({pkg.use})")
        return Check(name, "missing", f"not installed ({pkg.use}; {e})", f"install the game extra: {GAME_EXTRA}")
    except Exception as e:  # a package that is there but fails to import (a missing DLL, a driver)
        return Check(name, "failed", f"installed, but importing {pkg.module} failed: {e}",
                     f"reinstall it: pip install --force-reinstall {pkg.distribution}",
                     required=windows or not pkg.windows_only)  # fmt: skip
    try:
        version = importlib.metadata.version(pkg.distribution)
    except importlib.metadata.PackageNotFoundError:
        version = "version unknown"
    return Check(name, "ok", f"importable ({version})", required=windows or not pkg.windows_only)


def _plugin(protocol: ProtocolName, plugins_dir: Path | None) -> Check:
    name = "plugin"
    install_fix = (
        "run `evo-rl game tm2020 install-plugin` (or with --dir DIR), then load it in OpenPlanet in Developer mode"
        if protocol == "evo"
        else "install TMRL (pip install tmrl; python -m tmrl --install) or copy TMRL_GrabData into Plugins"
    )
    if plugins_dir is not None:
        dirs = [Path(plugins_dir).expanduser()]
        if not dirs[0].is_dir():
            return Check(name, "missing", f"--dir {plugins_dir}: no such folder", "give OpenPlanet's Plugins folder")
    else:
        dirs = install.find_plugin_dirs()
        if not dirs:
            return Check(
                name,
                "missing",
                "OpenPlanet's folder was not found (looked for OpenplanetNext in the Windows user profile and in "
                "Proton/Wine prefixes)",
                "if the game runs elsewhere, check with --dir DIR (its OpenplanetNext/Plugins folder)",
            )
    if protocol == "tmrl":
        found = [f for d in dirs if d.is_dir() for f in sorted(d.glob(f"{TMRL_PLUGIN}*"))]
        if found:
            return Check(name, "ok", f"TMRL's plugin {found[0]}")
        return Check(name, "missing", f"no {TMRL_PLUGIN} in {', '.join(map(str, dirs))}", install_fix)
    for d in dirs:
        op = d / install.ARCHIVE_NAME
        if op.is_file():
            return _plugin_version(op)
    return Check(name, "missing", f"no {install.ARCHIVE_NAME} in {', '.join(map(str, dirs))}", install_fix)


def _plugin_version(op: Path) -> Check:
    """Whether the installed archive speaks this EVO RL's protocol (its Record.as is the generated one)."""
    fix = "reinstall it with `evo-rl game tm2020 install-plugin`, then reload it in OpenPlanet"
    try:
        with zipfile.ZipFile(op) as z:
            record_as = z.read(p.RECORD_AS).decode("utf-8")
    except (OSError, KeyError, zipfile.BadZipFile, UnicodeDecodeError) as e:
        return Check("plugin", "failed", f"{op} is not a readable plugin archive ({e})", fix)
    if record_as != p.angelscript_source():
        return Check("plugin", "failed", f"{op} is from another EVO RL (its Record.as differs from this one's)", fix)
    return Check("plugin", "ok", f"{op} (protocol version {p.PROTOCOL_VERSION})")


def _window(windows: bool, find_window: Callable[[], Window | None] | None) -> Check:
    name = "game window"
    if not windows:
        return Check(name, "skipped", "not Windows (the window is looked for through Windows' user32)")
    finder = find_window if find_window is not None else find_game_window
    try:
        w = finder()
    except (OSError, GameError) as e:
        return Check(name, "failed", f"cannot look at the windows: {e}", "close all but one game window")
    if w is None:
        return Check(name, "missing", f"no window titled {WINDOW_TITLE!r}",
                     "start TrackMania 2020 (windowed or borderless, so screenshots see it)")  # fmt: skip
    return Check(name, "ok", f"{w.title!r}: client area {w.width}x{w.height} pixels at left {w.left}, top {w.top}")


def find_game_window(title: str = WINDOW_TITLE) -> Window | None:
    """TrackMania's window and its client area through :mod:`evo_rl.games.window` (user32); None when absent.

    :class:`GameError` off Windows, or when several windows carry the title.
    """
    from evo_rl.games.window import Win32Windows, pick_window

    system = Win32Windows()
    exact = [w for w in system.find(title) if w.title.strip().casefold() == title.casefold()]
    if not exact:
        return None
    window = pick_window(exact, title)
    rect = system.client_rect(window)
    return Window(window.title, rect.left, rect.top, rect.width, rect.height)


def _telemetry(port: int | None, protocol: ProtocolName, seconds: float) -> tuple[Check, Check]:
    with TM2020Client(port=port, protocol=protocol, retry_seconds=0.1) as client:
        where = f"127.0.0.1:{client.port} ({protocol} protocol)"
        try:
            first = client.wait_newer(-1, seconds)
        except GameError as e:
            telemetry = Check("telemetry", "missing", f"no telemetry on {where}: {e}")  # e says what to check
            return telemetry, Check("commands", "skipped", "no telemetry to answer them", required=False)
        time.sleep(RATE_SECONDS)
        last = client.latest or first
        elapsed = max(last.received_at - first.received_at, 1e-6)
        rate = (last.seq - first.seq) / elapsed if last.seq > first.seq else 0.0
        state = last.car_state()
        seen = f"{rate:.0f} records/s on {where}; car at ({', '.join(f'{v:.0f}' for v in state.position)}) m"
        if protocol == "evo":
            seen += f", race time {state.race_time_ms / 1000:.1f} s, checkpoints {state.checkpoints}/"
            seen += f"{state.checkpoints_total}"
            if last.record.wall_contact != p.WALL_UNKNOWN:
                seen += " (it reports wall contact: a virtual game)"
        if rate < MIN_RATE:
            telemetry = Check("telemetry", "failed", f"only {seen}",
                              "the game writes a record per frame while racing: leave the menu, unpause, "
                              "keep the game window in front")  # fmt: skip
        else:
            telemetry = Check("telemetry", "ok", seen)
        if protocol != "evo":
            return telemetry, Check("commands", "skipped",
                                    "TMRL's plugin takes no commands; respawns go through the gamepad",
                                    required=False)  # fmt: skip
        start = time.monotonic()
        try:
            client.ping(timeout=seconds)
        except GameError as e:
            return telemetry, Check("commands", "failed", f"a ping was not acknowledged: {e}",
                                    "reinstall and reload the EVO RL plugin (install-plugin)")  # fmt: skip
        ms = (time.monotonic() - start) * 1000.0
        return telemetry, Check("commands", "ok", f"a ping was acknowledged in {ms:.0f} ms")


def _gamepad(windows: bool, importer: Callable[[str], ModuleType], make: Callable[[], object] | None) -> Check:
    name = "gamepad"
    if not windows:
        try:
            importer("vgamepad")
        except ImportError:
            return Check(name, "skipped", "not Windows, and vgamepad is not installed")
        except Exception:
            pass  # let the attempt below say what fails
    if make is None:
        from evo_rl.games.control import GamepadInput

        make = GamepadInput
    try:
        pad = make()
    except MissingExtraError as e:
        return Check(name, "missing", str(e), f"install the game extra: {GAME_EXTRA}", required=windows)
    except GameError as e:
        return Check(name, "failed", str(e), "install the ViGEmBus driver (the vgamepad installer offers it)",
                     required=windows)  # fmt: skip
    close = getattr(pad, "close", None)
    if callable(close):
        try:
            close()
        except Exception:
            pass  # created is what counts
    return Check(name, "ok", "vgamepad created a virtual Xbox 360 pad", required=windows)
