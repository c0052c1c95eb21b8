"""Key senders: how :class:`~evo_rl.games.control.KeyboardInput` presses and releases keys.

A :class:`KeySender` gets batches of key changes (:data:`KeyEvent`: a key and whether it goes down)
and makes the operating system see them. The senders are thin; which keys change, and when, is
:class:`~evo_rl.games.control.KeyboardInput`'s business. Four senders:

- :class:`WindowsKeys`: ``SendInput`` (user32, through ctypes) with scan codes, as DirectInput games
  such as TrackMania read them; no extra package;
- :class:`XdotoolKeys`: ``xdotool keydown/keyup`` (XTEST) for TrackMania under Proton/Wine on X11;
- :class:`UinputKeys`: a virtual keyboard on ``/dev/uinput`` through the ``evdev`` package (X11 and
  Wayland), when that package is installed (EVO RL does not depend on it);
- :class:`RecordingKeys`: records the changes, for tests and dry runs.

Every OS sender types into the focused window: bring TrackMania to the front first
(:func:`evo_rl.games.window.prepare_window`). :func:`default_key_sender` picks the sender of this machine.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

from evo_rl.games.errors import GameError

XDOTOOL = "xdotool"
COMMAND_TIMEOUT_SECONDS = 5.0  # for one xdotool call
UINPUT_SETTLE_SECONDS = 0.5  # the desktop needs a moment to pick up a new input device


@dataclass(frozen=True)
class Key:
    """One keyboard key, in each sender's terms.

    ``scan``: the PC set-1 scan code (``extended``: sent with the ``E0`` prefix); ``keysym``: the X
    keysym name for xdotool; ``evdev``: the Linux ``KEY_*`` code (linux/input-event-codes.h).
    """

    name: str
    scan: int
    extended: bool
    keysym: str
    evdev: int


KEYS: dict[str, Key] = {
    k.name: k
    for k in (
        Key("w", 0x11, False, "w", 17),
        Key("a", 0x1E, False, "a", 30),
        Key("s", 0x1F, False, "s", 31),
        Key("d", 0x20, False, "d", 32),
        Key("up", 0x48, True, "Up", 103),
        Key("down", 0x50, True, "Down", 108),
        Key("left", 0x4B, True, "Left", 105),
        Key("right", 0x4D, True, "Right", 106),
        Key("delete", 0x53, True, "Delete", 111),
        Key("backspace", 0x0E, False, "BackSpace", 14),
        Key("enter", 0x1C, False, "Return", 28),
    )
}

KeyEvent = tuple[Key, bool]  # a key, and True to press it or False to release it
Runner = Callable[[list[str]], tuple[int, str, str]]  # a command line -> (exit status, stdout, stderr)


def key(name: str) -> Key:
    """The :class:`Key` called ``name`` (one of :data:`KEYS`)."""
    try:
        return KEYS[name]
    except KeyError:
        raise GameError(f"unknown key {name!r}; known keys: {', '.join(KEYS)}") from None


@runtime_checkable
class KeySender(Protocol):
    """Where key presses and releases go."""

    def send(self, events: Sequence[KeyEvent]) -> None:
        """Press (``True``) or release (``False``) each key, in order."""

    def close(self) -> None: ...


class RecordingKeys:
    """Records ``(key name, pressed)`` for each event instead of sending it: for tests and dry runs."""

    def __init__(self) -> None:
        self.events: list[tuple[str, bool]] = []
        self.closed = False

    def send(self, events: Sequence[KeyEvent]) -> None:
        self.events.extend((k.name, down) for k, down in events)

    def close(self) -> None:
        self.closed = True


# --------------------------------------------------------------------------- Windows: SendInput


class KEYBDINPUT(ctypes.Structure):
    """user32's KEYBDINPUT (WORD, WORD, DWORD, DWORD, ULONG_PTR), with fixed-width types."""

    _fields_ = [
        ("wVk", ctypes.c_uint16),
        ("wScan", ctypes.c_uint16),
        ("dwFlags", ctypes.c_uint32),
        ("time", ctypes.c_uint32),
        ("dwExtraInfo", ctypes.c_size_t),
    ]


class MOUSEINPUT(ctypes.Structure):
    """user32's MOUSEINPUT: never sent, but the largest member, so it sets the size of INPUT."""

    _fields_ = [
        ("dx", ctypes.c_int32),
        ("dy", ctypes.c_int32),
        ("mouseData", ctypes.c_uint32),
        ("dwFlags", ctypes.c_uint32),
        ("time", ctypes.c_uint32),
        ("dwExtraInfo", ctypes.c_size_t),
    ]


class HARDWAREINPUT(ctypes.Structure):
    """user32's HARDWAREINPUT."""

    _fields_ = [("uMsg", ctypes.c_uint32), ("wParamL", ctypes.c_uint16), ("wParamH", ctypes.c_uint16)]


class INPUTUNION(ctypes.Union):
    """The union inside INPUT."""

    _fields_ = [("mi", MOUSEINPUT), ("ki", KEYBDINPUT), ("hi", HARDWAREINPUT)]


class INPUT(ctypes.Structure):
    """user32's INPUT: what SendInput takes (``cbSize`` must be its size: 40 bytes on 64-bit Windows)."""

    _fields_ = [("type", ctypes.c_uint32), ("u", INPUTUNION)]


INPUT_KEYBOARD = 1
KEYEVENTF_EXTENDEDKEY = 0x0001
KEYEVENTF_KEYUP = 0x0002
KEYEVENTF_SCANCODE = 0x0008


def key_input(k: Key, down: bool) -> INPUT:
    """The INPUT that presses or releases ``k`` by scan code (``wVk`` 0: the game sees the scan code)."""
    flags = KEYEVENTF_SCANCODE | (KEYEVENTF_EXTENDEDKEY if k.extended else 0) | (0 if down else KEYEVENTF_KEYUP)
    ki = KEYBDINPUT(wVk=0, wScan=k.scan, dwFlags=flags, time=0, dwExtraInfo=0)
    return INPUT(type=INPUT_KEYBOARD, u=INPUTUNION(ki=ki))


def _user32() -> Any:
    """user32 with SendInput's signature; Windows only."""
    if sys.platform != "win32":
        raise GameError("the Windows key sender (SendInput) runs on Windows only")
    user32 = ctypes.WinDLL("user32", use_last_error=True)
    user32.SendInput.argtypes = (ctypes.c_uint, ctypes.POINTER(INPUT), ctypes.c_int)
    user32.SendInput.restype = ctypes.c_uint
    return user32


def _last_error() -> int:
    """The Windows error code of the last user32 call."""
    if sys.platform != "win32":
        return 0
    return ctypes.get_last_error()


class WindowsKeys:
    """Keys through ``SendInput`` with scan codes, one call per batch."""

    def __init__(self) -> None:
        self._user32 = _user32()

    def send(self, events: Sequence[KeyEvent]) -> None:
        inputs = (INPUT * len(events))(*(key_input(k, down) for k, down in events))
        sent = self._user32.SendInput(len(events), inputs, ctypes.sizeof(INPUT))
        if sent != len(events):
            raise GameError(
                f"SendInput took {sent} of {len(events)} key events (Windows error {_last_error()}); "
                "another program may block input, or TrackMania runs as administrator and EVO RL does not"
            )

    def close(self) -> None:
        """Nothing to free."""


# --------------------------------------------------------------------------- Linux: xdotool, uinput


def run_command(args: list[str]) -> tuple[int, str, str]:
    """Run ``args``: ``(exit status, stdout, stderr)``; a GameError if it cannot start or hangs."""
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise GameError(f"`{' '.join(args)}` failed: {e}") from e
    return proc.returncode, proc.stdout, proc.stderr


def xdotool_key_command(events: Sequence[KeyEvent]) -> list[str]:
    """One chained xdotool command line for a batch: ``xdotool keyup --delay 0 a keydown --delay 0 d``."""
    args = [XDOTOOL]
    last: bool | None = None
    for k, down in events:
        if down is not last:
            args += ["keydown" if down else "keyup", "--delay", "0"]  # xdotool waits 12 ms per key otherwise
            last = down
        args.append(k.keysym)
    return args


class XdotoolKeys:
    """Keys through ``xdotool keydown/keyup`` (XTEST on the X display in ``DISPLAY``)."""

    def __init__(self, run: Runner = run_command) -> None:
        self._run = run

    def send(self, events: Sequence[KeyEvent]) -> None:
        code, _, err = self._run(xdotool_key_command(events))
        if code != 0:
            raise GameError(
                f"xdotool could not send keys (exit status {code}: {err.strip()}); "
                "is DISPLAY the X display TrackMania runs on?"
            )

    def close(self) -> None:
        """Nothing to free."""


class UinputKeys:
    """A virtual keyboard on ``/dev/uinput`` through ``evdev`` (pass the imported module)."""

    def __init__(self, evdev: ModuleType) -> None:
        self._ev_key = evdev.ecodes.EV_KEY
        try:
            self._ui: Any = evdev.UInput({self._ev_key: [k.evdev for k in KEYS.values()]}, name="evo-rl keyboard")
        except Exception as e:  # UInputError or PermissionError: say how to get access
            raise GameError(
                f"cannot create a virtual keyboard on /dev/uinput ({e}); give your user write access to "
                "/dev/uinput (e.g. a udev rule for the 'input' group), or use xdotool on X11"
            ) from e
        time.sleep(UINPUT_SETTLE_SECONDS)

    def send(self, events: Sequence[KeyEvent]) -> None:
        for k, down in events:
            self._ui.write(self._ev_key, k.evdev, 1 if down else 0)
        self._ui.syn()

    def close(self) -> None:
        self._ui.close()


def _optional_module(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _linux_key_sender() -> KeySender:
    xdotool, display = shutil.which(XDOTOOL), os.environ.get("DISPLAY")
    if xdotool and display:
        return XdotoolKeys()
    evdev = _optional_module("evdev")
    if evdev is not None:
        return UinputKeys(evdev)
    found = "xdotool is not on PATH" if not xdotool else "xdotool is there but DISPLAY is unset"
    raise GameError(
        f"keyboard input on Linux needs one of: xdotool on PATH with an X display in DISPLAY (TrackMania "
        "under Proton/Wine on X11 or XWayland; e.g. `sudo apt install xdotool`), or the Python package "
        "evdev with write access to /dev/uinput (`pip install evdev`; X11 and Wayland); "
        f"here {found} and evdev is not installed"
    )


def default_key_sender(platform: str | None = None) -> KeySender:
    """The key sender of this machine: SendInput on Windows; xdotool, else uinput, on Linux."""
    platform = sys.platform if platform is None else platform
    if platform == "win32":
        return WindowsKeys()
    if platform.startswith("linux"):
        return _linux_key_sender()
    raise GameError(
        f"keyboard input supports Windows (SendInput) and Linux (xdotool or uinput), not {platform!r}; "
        "use the gamepad input or a virtual game instead"
    )
