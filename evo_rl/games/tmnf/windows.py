"""Each TMNF instance's window: tiled on the screen and written down, so frames are captured per instance.

TMInterface gives plugins no pixels, so in the game ``env.flavour: full`` reads screenshots of each
instance's window (``game.screen: window``). Which window is which instance is settled when it
starts: `evo-rl game tmnf launch --tile W H` starts the instances one at a time, and the one new
window titled like TMNF that appears after instance ``i`` started is instance ``i``'s (a launcher such
as TMLoader starts the game as another process, so the launcher's process id names no window).
It gets a ``W`` x ``H`` client area in cell ``i`` of a grid (:class:`Tiling`), and every instance's
client area goes to ``windows.json`` in the launcher folder (``game.launcher_dir``), which the car
source reads (:func:`read_windows`). A restarted instance's new window takes the same cell.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from evo_rl.errors import ConfigError
from evo_rl.games.errors import GameError
from evo_rl.games.window import Rect, Window, WindowSystem, check_size, wait_for_size

TMNF_TITLE = "TrackMania"  # TMNF's window title contains it (case aside), whatever follows
WINDOWS_FILE = "windows.json"
WINDOWS_VERSION = 1
POLL_SECONDS = 0.2  # s between looks for a new window


@dataclass(frozen=True)
class Tiling:
    """A grid of ``width`` x ``height`` client areas, ``columns`` wide, from ``left``, ``top``; cells are
    ``gap`` pixels apart, room for each window's title bar and borders."""

    width: int
    height: int
    columns: int = 2
    gap: int = 48
    left: int = 0
    top: int = 0
    title: str = TMNF_TITLE
    appear_seconds: float = 120.0  # how long a started instance has to show its window

    def __post_init__(self) -> None:
        check_size(self.width, self.height)
        if self.columns < 1 or self.gap < 0:
            raise ConfigError(f"a tiling needs at least 1 column and a gap >= 0, got {self.columns} and {self.gap}")

    def cell(self, i: int) -> tuple[int, int]:
        """Where cell ``i``'s window goes (its top-left corner, borders included)."""
        col, row = i % self.columns, i // self.columns
        return self.left + col * (self.width + self.gap), self.top + row * (self.height + self.gap)


def handles(system: WindowSystem, title: str) -> set[int]:
    """The handles of the visible windows whose title contains ``title``."""
    return {w.handle for w in system.find(title)}


def new_window(system: WindowSystem, title: str, known: set[int], timeout: float, what: str) -> Window:
    """The one window titled like ``title`` that is not in ``known``, once it shows (within ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    while True:
        fresh = [w for w in system.find(title) if w.handle not in known]
        if len(fresh) == 1:
            return fresh[0]
        if len(fresh) > 1:
            names = ", ".join(repr(w.title) for w in fresh)
            raise GameError(
                f"{len(fresh)} new windows titled like {title!r} appeared after {what} started ({names}): "
                "start the games from this launcher only, one at a time"
            )
        if time.monotonic() >= deadline:
            raise GameError(
                f"no new window titled like {title!r} appeared within {timeout:g} s after {what} started; "
                "run the game windowed, or give its window title (--window-title)"
            )
        time.sleep(POLL_SECONDS)


def place(system: WindowSystem, window: Window, tiling: Tiling, i: int, settle_seconds: float = 5.0) -> Rect:
    """Give ``window`` the tiling's client size in cell ``i``; its client area on the screen."""
    system.resize_client(window, tiling.width, tiling.height)
    system.move(window, *tiling.cell(i))
    return wait_for_size(system, window, (tiling.width, tiling.height), settle_seconds)


def overlaps(a: Rect, b: Rect) -> bool:
    return (
        a.left < b.left + b.width
        and b.left < a.left + a.width
        and a.top < b.top + b.height
        and b.top < a.top + a.height
    )


def check_apart(regions: dict[int, Rect]) -> None:
    """A GameError if two instances' client areas overlap (one would capture the other's window)."""
    ports = sorted(regions)
    for k, a in enumerate(ports):
        for b in ports[k + 1 :]:
            if overlaps(regions[a], regions[b]):
                raise GameError(
                    f"the windows of the instances on ports {a} and {b} overlap ({regions[a]}, {regions[b]}): "
                    "give the tiling a larger gap (--gap) or smaller windows"
                )


def write_windows(folder: Path, regions: dict[int, Rect]) -> Path:
    """Write every instance's client area to ``folder/windows.json`` (replaced in one step)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / WINDOWS_FILE
    body = {
        "version": WINDOWS_VERSION,
        "windows": {str(port): r.region for port, r in sorted(regions.items())},
    }
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(body, indent=1))
    os.replace(tmp, path)
    return path


def read_windows(folder: Path) -> dict[int, Rect]:
    """The client area of each instance's window, by port, from ``folder/windows.json``."""
    path = folder / WINDOWS_FILE
    fix = "start the games with `evo-rl game tmnf launch --tile W H` (same game.launcher_dir)"
    try:
        body = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"game.screen: window with TMNF reads the instances' windows from {path}, which does not exist: {fix}"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path} is not a windows file ({e}): {fix}") from None
    if (
        not isinstance(body, dict)
        or body.get("version") != WINDOWS_VERSION
        or not isinstance(body.get("windows"), dict)
    ):
        raise ConfigError(f"{path} is not a version {WINDOWS_VERSION} windows file: {fix}")
    regions: dict[int, Rect] = {}
    for port, r in body["windows"].items():
        keys = ("left", "top", "width", "height")
        if not (
            port.isdigit()
            and isinstance(r, dict)
            and all(isinstance(r.get(k), int) and not isinstance(r.get(k), bool) for k in keys)
            and r["width"] > 0
            and r["height"] > 0
        ):
            raise ConfigError(
                f"{path}: the window of port {port!r} is not a region {{left, top, width, height}}: {r!r}"
            )
        regions[int(port)] = Rect(*(r[k] for k in keys))
    return regions
