"""The TrackMania window: find it, bring it to the front, size its client area, and say where it is.

:func:`prepare_window` does it all and returns the client area as the ``region`` that
:class:`~evo_rl.games.capture.MssScreen` takes; the keyboard senders type into the window
it brought to the front. The OS calls sit behind :class:`WindowSystem`, with two implementations:

- :class:`Win32Windows`: user32 through ctypes (EnumWindows, SetForegroundWindow, SetWindowPos,
  GetClientRect + ClientToScreen); it makes the process DPI-aware so that the rectangle is in the
  same physical pixels as mss's screenshots;
- :class:`XdotoolWindows`: xdotool on X11 (``search --name``, ``windowactivate``, ``windowsize``,
  ``getwindowgeometry``), for TrackMania under Proton/Wine.

The window is the visible one titled exactly ``Trackmania`` (case aside), as TrackMania 2020 names
it; TMRL sizes it to 958 x 488 for its LIDAR (:data:`TMRL_LIDAR_SIZE`).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import sys
import time
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from evo_rl.games.errors import GameError
from evo_rl.games.keyboard import XDOTOOL, Runner, run_command

TRACKMANIA_TITLE = "Trackmania"
TMRL_LIDAR_SIZE = (958, 488)  # client width, height
RESIZE_POLL_SECONDS = 0.05


@dataclass(frozen=True)
class Window:
    """A top-level window: its OS handle (HWND or X window id) and title."""

    handle: int
    title: str


@dataclass(frozen=True)
class Rect:
    """A rectangle on the screen, in pixels."""

    left: int
    top: int
    width: int
    height: int

    @property
    def region(self) -> dict[str, int]:
        """The rectangle as :class:`~evo_rl.games.capture.MssScreen` takes it."""
        return {"left": self.left, "top": self.top, "width": self.width, "height": self.height}


@runtime_checkable
class WindowSystem(Protocol):
    """The window calls :func:`prepare_window` needs."""

    def find(self, title: str) -> list[Window]:
        """The visible windows whose title contains ``title``, case aside."""

    def activate(self, window: Window) -> None:
        """Bring ``window`` to the front with the keyboard focus."""

    def resize_client(self, window: Window, width: int, height: int) -> None:
        """Ask for a client area of ``width`` x ``height``; the window keeps its position."""

    def move(self, window: Window, left: int, top: int) -> None:
        """Move the whole window (borders included) so that its top-left corner is at ``left``, ``top``."""

    def client_rect(self, window: Window) -> Rect:
        """The client area (the picture, without title bar and borders) in screen coordinates."""


def pick_window(candidates: list[Window], title: str) -> Window:
    """The one candidate titled ``title`` exactly (case and surrounding spaces aside)."""
    wanted = title.strip().casefold()
    exact = [w for w in candidates if w.title.strip().casefold() == wanted]
    if len(exact) == 1:
        return exact[0]
    if exact:
        handles = ", ".join(str(w.handle) for w in exact)
        raise GameError(f"{len(exact)} windows are titled {title!r} (handles {handles}); close all but one")
    similar = f" (windows with similar titles: {', '.join(repr(w.title) for w in candidates)})" if candidates else ""
    raise GameError(
        f"no visible window titled {title!r}{similar}; start TrackMania 2020 in windowed mode, "
        "or pass the game window's title"
    )


def check_size(width: int, height: int) -> tuple[int, int]:
    """``(width, height)`` if both are positive integers, else a GameError."""
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (width, height)):
        raise GameError(f"a window size is a width and a height in pixels, positive integers, got {width!r}x{height!r}")
    return width, height


def outer_size(window: Rect, client: Rect, width: int, height: int) -> tuple[int, int]:
    """The whole window's size that gives a ``width`` x ``height`` client area, borders kept."""
    return width + window.width - client.width, height + window.height - client.height


def wait_for_size(system: WindowSystem, window: Window, size: tuple[int, int], settle_seconds: float) -> Rect:
    """The client area of ``window`` once it has ``size`` (the OS may apply a resize late), else a GameError."""
    deadline = time.monotonic() + settle_seconds
    rect = system.client_rect(window)
    while (rect.width, rect.height) != size and time.monotonic() < deadline:
        time.sleep(RESIZE_POLL_SECONDS)
        rect = system.client_rect(window)
    if (rect.width, rect.height) != size:
        hint = "is it minimised? " if min(rect.width, rect.height) <= 0 else ""
        raise GameError(
            f"asked for a {size[0]}x{size[1]} client area, the window {window.title!r} has "
            f"{rect.width}x{rect.height}; {hint}set TrackMania to windowed mode (not fullscreen), make the screen "
            f"fit the window, and set Settings > Graphics > resolution to {size[0]}x{size[1]}"
        )
    return rect


def prepare_window(
    width: int = TMRL_LIDAR_SIZE[0],
    height: int = TMRL_LIDAR_SIZE[1],
    *,
    title: str = TRACKMANIA_TITLE,
    system: WindowSystem | None = None,
    settle_seconds: float = 2.0,
) -> dict[str, int]:
    """Find the game window, bring it to the front, give it a ``width`` x ``height`` client area and
    return that area as a capture region: ``MssScreen(region=prepare_window(958, 488))``."""
    size = check_size(width, height)
    system = default_window_system() if system is None else system
    window = pick_window(system.find(title), title)
    system.activate(window)
    system.resize_client(window, *size)
    return wait_for_size(system, window, size, settle_seconds).region


# --------------------------------------------------------------------------- Linux: xdotool


def ere_escape(text: str) -> str:
    """``text`` as a POSIX extended regular expression that matches it literally (xdotool's ``--name``)."""
    return "".join("\\" + c if c in ".[]()*+?{}|^$\\" else c for c in text)


def parse_geometry(text: str) -> Rect:
    """The rectangle in ``xdotool getwindowgeometry --shell`` output (``X=``, ``Y=``, ``WIDTH=``, ``HEIGHT=``)."""
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    try:
        return Rect(int(values["X"]), int(values["Y"]), int(values["WIDTH"]), int(values["HEIGHT"]))
    except (KeyError, ValueError):
        raise GameError(f"unexpected `xdotool getwindowgeometry --shell` output: {text!r}") from None


class XdotoolWindows:
    """Windows on an X display through xdotool (``run``: how to run a command, for tests)."""

    def __init__(self, run: Runner = run_command) -> None:
        self._run = run

    def _xdotool(self, *args: str, ok: tuple[int, ...] = (0,)) -> str:
        code, out, err = self._run([XDOTOOL, *args])
        if code not in ok:
            raise GameError(f"`xdotool {' '.join(args)}` failed (exit status {code}: {err.strip()})")
        return out

    def find(self, title: str) -> list[Window]:
        out = self._xdotool("search", "--onlyvisible", "--name", ere_escape(title), ok=(0, 1))  # 1: none found
        ids = [int(line) for line in out.split()]
        return [Window(i, self._xdotool("getwindowname", str(i)).rstrip("\n")) for i in ids]

    def activate(self, window: Window) -> None:
        self._xdotool("windowactivate", "--sync", str(window.handle))

    def resize_client(self, window: Window, width: int, height: int) -> None:
        self._xdotool("windowsize", str(window.handle), str(width), str(height))

    def move(self, window: Window, left: int, top: int) -> None:
        self._xdotool("windowmove", str(window.handle), str(left), str(top))

    def client_rect(self, window: Window) -> Rect:
        return parse_geometry(self._xdotool("getwindowgeometry", "--shell", str(window.handle)))


# --------------------------------------------------------------------------- Windows: user32


class RECT(ctypes.Structure):
    """user32's RECT (LONG left, top, right, bottom)."""

    _fields_ = [
        ("left", ctypes.c_int32),
        ("top", ctypes.c_int32),
        ("right", ctypes.c_int32),
        ("bottom", ctypes.c_int32),
    ]


class POINT(ctypes.Structure):
    """user32's POINT (LONG x, y)."""

    _fields_ = [("x", ctypes.c_int32), ("y", ctypes.c_int32)]


SW_RESTORE = 9
SWP_NOSIZE, SWP_NOMOVE, SWP_NOZORDER, SWP_NOACTIVATE = 0x0001, 0x0002, 0x0004, 0x0010


def _win32() -> tuple[Any, Any]:
    """user32 and the EnumWindows callback type; Windows only."""
    if sys.platform != "win32":
        raise GameError("the Windows window calls (user32) run on Windows only")
    user32 = ctypes.WinDLL("user32", use_last_error=True)
    return user32, ctypes.WINFUNCTYPE(ctypes.c_bool, ctypes.c_void_p, ctypes.c_void_p)


class Win32Windows:
    """Windows through user32; the process becomes DPI-aware, so rectangles are in physical pixels."""

    def __init__(self) -> None:
        self._user32, self._enum_proc = _win32()
        self._user32.SetProcessDPIAware()

    def _title(self, hwnd: ctypes.c_void_p) -> str:
        buf = ctypes.create_unicode_buffer(self._user32.GetWindowTextLengthW(hwnd) + 1)
        self._user32.GetWindowTextW(hwnd, buf, len(buf))
        return buf.value

    def find(self, title: str) -> list[Window]:
        found: list[Window] = []

        def visit(hwnd: int | None, _: int | None) -> bool:
            h = ctypes.c_void_p(hwnd)
            if hwnd and self._user32.IsWindowVisible(h):
                text = self._title(h)
                if title.casefold() in text.casefold():
                    found.append(Window(hwnd, text))
            return True

        self._user32.EnumWindows(self._enum_proc(visit), None)
        return found

    def activate(self, window: Window) -> None:
        h = ctypes.c_void_p(window.handle)
        if self._user32.IsIconic(h):
            self._user32.ShowWindow(h, SW_RESTORE)
        if not self._user32.SetForegroundWindow(h):
            raise GameError(f"Windows would not bring {window.title!r} to the front; click it once, then start again")

    def _rect(self, getter: str, window: Window) -> Rect:
        r = RECT()
        if not getattr(self._user32, getter)(ctypes.c_void_p(window.handle), ctypes.byref(r)):
            raise GameError(f"{getter} failed for the window {window.title!r}; did the game close?")
        return Rect(r.left, r.top, r.right - r.left, r.bottom - r.top)

    def resize_client(self, window: Window, width: int, height: int) -> None:
        w, h = outer_size(self._rect("GetWindowRect", window), self._rect("GetClientRect", window), width, height)
        flags = SWP_NOMOVE | SWP_NOZORDER | SWP_NOACTIVATE
        if not self._user32.SetWindowPos(ctypes.c_void_p(window.handle), None, 0, 0, w, h, flags):
            raise GameError(f"SetWindowPos could not resize the window {window.title!r}")

    def move(self, window: Window, left: int, top: int) -> None:
        flags = SWP_NOSIZE | SWP_NOZORDER | SWP_NOACTIVATE
        if not self._user32.SetWindowPos(ctypes.c_void_p(window.handle), None, left, top, 0, 0, flags):
            raise GameError(f"SetWindowPos could not move the window {window.title!r}")

    def client_rect(self, window: Window) -> Rect:
        client = self._rect("GetClientRect", window)
        origin = POINT(0, 0)
        self._user32.ClientToScreen(ctypes.c_void_p(window.handle), ctypes.byref(origin))
        return Rect(origin.x, origin.y, client.width, client.height)


def default_window_system(platform: str | None = None) -> WindowSystem:
    """The window calls of this machine: user32 on Windows, xdotool on Linux with an X display."""
    platform = sys.platform if platform is None else platform
    if platform == "win32":
        return Win32Windows()
    if platform.startswith("linux") and shutil.which(XDOTOOL) and os.environ.get("DISPLAY"):
        return XdotoolWindows()
    raise GameError(
        "finding the TrackMania window is supported on Windows (user32) and on Linux with xdotool on PATH "
        f"and an X display in DISPLAY (X11 or XWayland; e.g. `sudo apt install xdotool`), not here ({platform}); "
        "otherwise give MssScreen the window's region yourself"
    )
