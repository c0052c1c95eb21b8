"""``evo-rl game tmnf check``: what works and what is missing, step by step.

1. the plugin is in TMInterface's Plugins folder and carries this EVO RL's protocol code;
2. each instance on ``ports`` answers a ping in lock-step (its state: race time, checkpoints);
3. it steps: one ``STEP`` advances the race by one control step of game time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from evo_rl.games.errors import GameError
from evo_rl.games.tmnf import protocol as p
from evo_rl.games.tmnf.client import TMNFClient
from evo_rl.games.tmnf.install import PLUGIN_NAME, find_plugin_dirs, plugin_text


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | missing | failed
    detail: str


def check_plugin(plugins_dir: Path | None) -> Check:
    dirs = [plugins_dir] if plugins_dir is not None else find_plugin_dirs()
    if not dirs:
        return Check("plugin", "missing", "TMInterface's Plugins folder was not found; give --dir, or install "
                     "TMInterface 2 and start the game once")  # fmt: skip
    path = dirs[0] / PLUGIN_NAME
    if not path.is_file():
        return Check("plugin", "missing", f"{path} is missing: run `evo-rl game tmnf install-plugin`")
    if path.read_text(encoding="utf-8", errors="replace") != plugin_text():
        return Check("plugin", "failed", f"{path} is another version: run `evo-rl game tmnf install-plugin` again")
    return Check("plugin", "ok", str(path))


def check_instance(port: int, timeout: float = 2.0) -> list[Check]:
    where = f"instance on 127.0.0.1:{port}"
    try:
        with TMNFClient(port, timeout=timeout, connect_timeout=timeout) as client:
            state, _ = client.request(p.Request.PING)
            after, _ = client.request(p.Request.STEP)
    except GameError as e:
        return [Check(where, "missing", str(e))]
    ok = after.race_time_ms > state.race_time_ms or after.step == state.step + 1
    return [
        Check(
            where,
            "ok",
            f"answers in lock-step: race time {state.race_time_ms} ms, checkpoints "
            f"{state.checkpoints}/{state.checkpoints_total}",
        ),  # fmt: skip
        Check(
            f"{where} steps",
            "ok" if ok else "failed",
            "one step advanced the race" if ok else "a step did not advance the race: is a race running?",
        ),  # fmt: skip
    ]


def run_checks(ports: list[int], plugins_dir: Path | None = None, timeout: float = 2.0) -> list[Check]:
    checks = [check_plugin(plugins_dir)]
    for port in ports:
        checks += check_instance(port, timeout)
    return checks


def format_checks(checks: list[Check]) -> str:
    return "\n".join(f"{c.status:<8} {c.name}: {c.detail}" for c in checks)
