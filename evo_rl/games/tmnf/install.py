"""Install the TMInterface 2 plugin: ``EvoRL.as`` with this EVO RL's protocol code, into ``TMInterface/Plugins``.

TMInterface keeps plugins in ``Documents/TMInterface/Plugins`` of the Windows user; under Linux the
game runs in a Wine prefix, where the same folder lives in ``drive_c/users/<user>/Documents``.
"""

from __future__ import annotations

import os
from pathlib import Path

from evo_rl.games.errors import GameError
from evo_rl.games.tmnf import protocol as p

PLUGIN_NAME = "EvoRL.as"
SOURCE = Path(__file__).resolve().parent / "plugin" / PLUGIN_NAME


def plugin_text() -> str:
    """The plugin's source with the generated protocol code at its mark."""
    text = SOURCE.read_text(encoding="utf-8")
    if p.GENERATED_MARK not in text:
        raise GameError(f"{SOURCE} has no {p.GENERATED_MARK} line for the protocol code")
    return text.replace(p.GENERATED_MARK, p.angelscript_source().rstrip("\n"), 1)


def find_plugin_dirs(home: Path | None = None, env: dict[str, str] | None = None) -> list[Path]:
    """Existing ``TMInterface/Plugins`` folders: the Windows user's, then those of Wine prefixes under ``home``."""
    env = dict(os.environ) if env is None else env
    home = Path.home() if home is None else home
    candidates = []
    if env.get("USERPROFILE"):
        candidates.append(Path(env["USERPROFILE"]) / "Documents" / "TMInterface" / "Plugins")
    for users in (home / ".wine" / "drive_c" / "users",):
        if users.is_dir():
            for user in sorted(users.iterdir()):
                for docs in ("Documents", "My Documents"):
                    candidates.append(user / docs / "TMInterface" / "Plugins")
    return [c for c in candidates if c.is_dir()]


def install_plugin(plugins_dir: Path | None = None) -> Path:
    """Write the plugin into ``plugins_dir`` (found when None); returns the file written."""
    if plugins_dir is None:
        found = find_plugin_dirs()
        if not found:
            raise GameError(
                "TMInterface's Plugins folder was not found (Documents/TMInterface/Plugins of the Windows user or "
                "of a Wine prefix); install TMInterface 2 and start the game once, or give --dir"
            )
        plugins_dir = found[0]
    if not plugins_dir.is_dir():
        raise GameError(f"--dir {plugins_dir}: no such folder")
    target = plugins_dir / PLUGIN_NAME
    tmp = target.with_name(f".{PLUGIN_NAME}.tmp")
    tmp.write_text(plugin_text(), encoding="utf-8")
    os.replace(tmp, target)
    return target
