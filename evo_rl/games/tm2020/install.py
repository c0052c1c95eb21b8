"""Build the plugin's ``.op`` archive and install it into OpenPlanet's ``Plugins`` folder.

An ``.op`` file is a zip archive with ``info.toml`` and the AngelScript sources at its root.
``Record.as`` is written from the protocol tables (:func:`~evo_rl.games.tm2020.protocol.angelscript_source`),
so the installed plugin always speaks this EVO RL's protocol version.

OpenPlanet keeps its user folder in ``OpenplanetNext`` under the Windows user profile; under
Linux the game runs in a Proton or Wine prefix, where the same folder lives in the prefix's
``drive_c/users/<user>``. :func:`find_plugin_dirs` looks in those places; ``--dir`` names the
``Plugins`` folder otherwise.
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path

from evo_rl.games.errors import GameError
from evo_rl.games.tm2020 import protocol as p

ARCHIVE_NAME = "EvoRL.op"
OPENPLANET_DIR = "OpenplanetNext"


def plugin_sources(source: Path | None = None) -> dict[str, bytes]:
    """Archive member name -> content: ``info.toml`` and every ``.as`` file, ``Record.as`` freshly generated."""
    src = Path(source) if source is not None else p.plugin_source_dir()
    info = src / "info.toml"
    if not info.is_file():
        raise GameError(
            f"the plugin sources are not in {src} (no info.toml); run from an EVO RL source checkout "
            "or give the folder that holds evo_rl/games/tm2020/plugin"
        )
    files = {"info.toml": info.read_bytes()}
    for path in sorted(src.glob("*.as")):
        files[path.name] = path.read_bytes()
    files[p.RECORD_AS] = p.angelscript_source().encode("utf-8")
    return files


def build_archive(out: Path, source: Path | None = None) -> Path:
    """Write the ``.op`` archive to ``out``; return ``out``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, content in plugin_sources(source).items():
            z.writestr(name, content)
    return out


def find_plugin_dirs(
    home: Path | None = None, env: Mapping[str, str] | None = None, system: str | None = None
) -> list[Path]:
    """The ``OpenplanetNext/Plugins`` folders of every ``OpenplanetNext`` found, most likely first."""
    home = Path.home() if home is None else Path(home)
    env = os.environ if env is None else env
    system = platform.system() if system is None else system
    candidates: list[Path] = []
    if system == "Windows":
        profile = env.get("USERPROFILE")
        candidates.append(Path(profile) / OPENPLANET_DIR if profile else home / OPENPLANET_DIR)
    else:
        steam_roots = [
            home / ".steam" / "steam",
            home / ".local" / "share" / "Steam",
            home / ".var" / "app" / "com.valvesoftware.Steam" / ".local" / "share" / "Steam",  # flatpak
        ]
        for root in steam_roots:
            pattern = f"steamapps/compatdata/*/pfx/drive_c/users/steamuser/{OPENPLANET_DIR}"
            candidates += sorted(root.glob(pattern))
        user = env.get("USER", "*")
        prefixes = [Path(env["WINEPREFIX"])] if env.get("WINEPREFIX") else []
        prefixes += [home / ".wine", *sorted(home.glob("Games/*"))]  # Wine's default, Lutris' default
        for prefix in prefixes:
            candidates += sorted(prefix.glob(f"drive_c/users/{user}/{OPENPLANET_DIR}"))
    found: list[Path] = []
    for c in candidates:
        plugins = c / "Plugins"
        if c.is_dir() and plugins.resolve() not in [f.resolve() for f in found]:
            found.append(plugins)
    return found


def install_plugin(plugins_dir: Path | None = None, source: Path | None = None) -> list[Path]:
    """Copy the archive into ``plugins_dir`` (a ``Plugins`` folder) or every one found; return the files written."""
    if plugins_dir is not None:
        targets = [Path(plugins_dir).expanduser()]
        if not targets[0].is_dir():
            raise GameError(f"--dir {plugins_dir}: no such folder; give OpenPlanet's Plugins folder")
    else:
        targets = find_plugin_dirs()
        if not targets:
            raise GameError(
                "OpenPlanet's folder was not found: looked for OpenplanetNext in the user profile (Windows) and in "
                "Proton/Wine prefixes (~/.steam/steam/steamapps/compatdata/*/pfx/drive_c/users/steamuser, "
                "~/.wine/drive_c/users/$USER, $WINEPREFIX). Install OpenPlanet and start the game once, "
                "or give the Plugins folder with --dir DIR"
            )
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        archive = build_archive(Path(tmp) / ARCHIVE_NAME, source)
        for target in targets:
            target.mkdir(parents=True, exist_ok=True)
            dest = target / ARCHIVE_NAME
            shutil.copyfile(archive, dest)
            written.append(dest)
    return written
