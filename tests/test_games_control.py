"""The keyboard input and its key senders, the game-window helpers and the input factory, without a
display: key senders and window systems are fakes, and no OS call runs."""

from __future__ import annotations

import ctypes
import itertools
import math
import sys
import types

import numpy as np
import pytest

from evo_rl.errors import EvoError
from evo_rl.games import control, keyboard, window
from evo_rl.games.control import INPUT_KINDS, InputBackend, KeyboardInput, KeyMap, action_to_inputs, make_input
from evo_rl.games.errors import GameError
from evo_rl.games.keyboard import INPUT, KEYBDINPUT, KEYS, KeySender, RecordingKeys
from evo_rl.games.window import Rect, Window, WindowSystem


def _pad(**options) -> tuple[KeyboardInput, RecordingKeys]:
    rec = RecordingKeys()
    return KeyboardInput(keys=rec, respawn_seconds=0.0, **options), rec


# --------------------------------------------------------------------------- key transitions


@pytest.mark.parametrize(
    ("inputs", "held"),
    [
        ((0.0, 0.0, 0.0), set()),
        ((1.0, 0.0, 0.0), {"w"}),
        ((0.0, 1.0, 0.0), {"s"}),
        ((1.0, 1.0, 0.0), {"w", "s"}),  # both pedals, as TMRL allows
        ((0.0, 0.0, -1.0), {"a"}),
        ((0.0, 0.0, 1.0), {"d"}),
        ((0.0, 0.0, 0.5), set()),  # the dead zone is open at 0.5, as TMRL's `> 0.5`
        ((0.0, 0.0, -0.5), set()),
        ((0.0, 0.0, 0.51), {"d"}),
        ((0.01, 0.0, -0.51), {"w", "a"}),  # any gas above 0 presses W
        ((1.0, 1.0, 1.0), {"w", "s", "d"}),
        ((5.0, -3.0, -9.0), {"w", "a"}),  # clipped first
    ],
)
def test_inputs_press_the_keys_from_rest(inputs: tuple[float, float, float], held: set[str]) -> None:
    pad, rec = _pad()
    pad.apply(*inputs)
    assert rec.events == [(name, True) for name in ("w", "s", "a", "d") if name in held]
    assert pad.held == held


def test_only_changes_are_sent() -> None:
    class Batches(RecordingKeys):
        def send(self, events) -> None:
            assert events, "an empty batch was sent"
            super().send(events)

    rec = Batches()
    pad = KeyboardInput(keys=rec)
    pad.apply(1.0, 0.0, 0.0)
    pad.apply(1.0, 0.0, 0.2)  # steering inside the dead zone: nothing changes
    pad.apply(0.7, 0.0, 0.0)  # still gas
    assert rec.events == [("w", True)]
    pad.apply(1.0, 0.0, -0.9)
    pad.apply(1.0, 0.0, 0.9)  # left to right: release A before pressing D
    pad.apply(0.0, 1.0, 0.9)  # gas to brake
    pad.apply(0.0, 0.0, 0.0)
    assert rec.events == [
        ("w", True),
        ("a", True),
        ("a", False),
        ("d", True),
        ("w", False),
        ("s", True),
        ("s", False),
        ("d", False),
    ]


def test_random_inputs_keep_the_sent_state_equal_to_the_rule() -> None:
    """Replaying the events gives the held keys after every call, and no event repeats a key's state."""
    pad, rec = _pad(steer_dead_zone=0.3)
    rng = np.random.default_rng(3)
    state: dict[str, bool] = {}
    for gas, brake, steer in rng.uniform(-1, 1, (300, 3)):
        before = len(rec.events)
        pad.apply(gas, brake, steer)
        for name, down in rec.events[before:]:
            assert state.get(name, False) is not down
            state[name] = down
        pressed = {n for n, d in state.items() if d}
        rule = {"w": gas > 0, "s": brake > 0, "a": steer < -0.3, "d": steer > 0.3}
        expected = {name for name, down in rule.items() if down}
        assert pressed == pad.held == expected


def test_keyboard_presses_the_same_keys_for_binary_and_analog_controls() -> None:
    for a in itertools.product([-1.0, -0.2, 0.0, 0.3, 1.0], repeat=3):
        binary, analog = _pad()[0], _pad()[0]
        action = np.array(a)
        assert binary.keys_for(*action_to_inputs(action, "binary")) == analog.keys_for(
            *action_to_inputs(action, "analog")
        )
        assert ("w" in binary.keys_for(*action_to_inputs(action))) is (a[0] > 0)


def test_respawn_releases_everything_then_taps_the_respawn_key() -> None:
    pad, rec = _pad()
    pad.apply(1.0, 0.0, 1.0)
    rec.events.clear()
    pad.respawn()
    assert rec.events == [("w", False), ("d", False), ("delete", True), ("delete", False)]
    assert pad.held == frozenset()
    rec.events.clear()
    pad.apply(1.0, 0.0, 0.0)  # holds W again after the respawn
    assert rec.events == [("w", True)]


def test_release_and_close_let_go_of_every_key() -> None:
    pad, rec = _pad()
    pad.apply(1.0, 1.0, -1.0)
    pad.release()
    assert rec.events[3:] == [("w", False), ("s", False), ("a", False)]
    pad.release()  # nothing held: nothing sent
    assert len(rec.events) == 6 and not rec.closed
    pad.apply(0.0, 0.0, 1.0)
    with pad:
        pass
    assert rec.events[-2:] == [("d", True), ("d", False)] and rec.closed


def test_close_closes_the_sender_even_when_release_fails() -> None:
    class Broken(RecordingKeys):
        def send(self, events) -> None:
            if not events[0][1]:
                raise GameError("gone")
            super().send(events)

    broken = Broken()
    pad = KeyboardInput(keys=broken)
    pad.apply(1.0, 0.0, 0.0)
    with pytest.raises(GameError, match="gone"):
        pad.close()
    assert broken.closed and pad.held == {"w"}  # the state is what was last sent


def test_a_rebound_key_map() -> None:
    pad, rec = _pad(keymap=KeyMap(gas="up", brake="down", left="left", right="right", respawn="backspace"))
    pad.apply(1.0, 0.0, -1.0)
    pad.respawn()
    assert rec.events == [("up", True), ("left", True), ("up", False), ("left", False)] + [
        ("backspace", True),
        ("backspace", False),
    ]
    with pytest.raises(GameError, match="unknown key 'q'.*known keys: w, a, s, d"):
        KeyMap(gas="q")
    with pytest.raises(GameError, match="different key"):
        KeyMap(brake="w")


def test_keyboard_input_refuses_bad_settings_and_inputs() -> None:
    with pytest.raises(GameError, match="dead zone"):
        KeyboardInput(keys=RecordingKeys(), steer_dead_zone=1.0)
    pad, rec = _pad()
    with pytest.raises(EvoError, match="finite"):
        pad.apply(math.nan, 0.0, 0.0)
    assert rec.events == [] and isinstance(pad, InputBackend)


# --------------------------------------------------------------------------- the key table and senders


def test_key_table_codes() -> None:
    """TMRL's scan codes for W A S D; the Linux KEY_* codes of the main block equal their set-1 scan codes."""
    assert [KEYS[k].scan for k in "wasd"] == [0x11, 0x1E, 0x1F, 0x20]
    assert (KEYS["delete"].scan, KEYS["delete"].extended) == (0x53, True)  # E0 53 (DirectInput's 0xD3)
    for k in KEYS.values():
        assert k.extended or k.evdev == k.scan, k
    assert {k.keysym for k in KEYS.values()} >= {"w", "Delete", "Up", "BackSpace", "Return"}
    assert len({k.evdev for k in KEYS.values()}) == len(KEYS) == len({(k.scan, k.extended) for k in KEYS.values()})


def test_windows_input_structures_have_the_user32_layout() -> None:
    wide = ctypes.sizeof(ctypes.c_void_p) == 8
    assert ctypes.sizeof(KEYBDINPUT) == (24 if wide else 16)
    assert ctypes.sizeof(keyboard.MOUSEINPUT) == (32 if wide else 24)
    assert ctypes.sizeof(keyboard.HARDWAREINPUT) == 8
    assert ctypes.sizeof(INPUT) == (40 if wide else 28)  # SendInput's cbSize
    assert INPUT.u.offset == (8 if wide else 4)
    assert (KEYBDINPUT.wVk.offset, KEYBDINPUT.wScan.offset, KEYBDINPUT.dwFlags.offset) == (0, 2, 4)
    assert (KEYBDINPUT.time.offset, KEYBDINPUT.dwExtraInfo.offset) == (8, 16 if wide else 12)


def test_windows_key_inputs_use_scan_codes() -> None:
    down = keyboard.key_input(KEYS["w"], True)
    assert (down.type, down.u.ki.wVk, down.u.ki.wScan, down.u.ki.dwFlags) == (1, 0, 0x11, 0x0008)
    up = keyboard.key_input(KEYS["delete"], False)
    assert (up.u.ki.wScan, up.u.ki.dwFlags) == (0x53, 0x0008 | 0x0001 | 0x0002)  # scan code, extended, up
    raw = bytes(up)
    assert raw[:4] == (1).to_bytes(4, "little") and len(raw) == ctypes.sizeof(INPUT)


@pytest.mark.skipif(sys.platform == "win32", reason="checks the refusal off Windows")
def test_windows_sender_refuses_off_windows() -> None:
    with pytest.raises(GameError, match="Windows only"):
        keyboard.WindowsKeys()


def test_xdotool_sender_chains_one_command_per_batch() -> None:
    calls: list[list[str]] = []

    def run(args: list[str]) -> tuple[int, str, str]:
        calls.append(args)
        return 0, "", ""

    pad = KeyboardInput(keys=keyboard.XdotoolKeys(run=run), respawn_seconds=0.0)
    pad.apply(1.0, 0.0, -1.0)
    pad.apply(1.0, 0.0, 1.0)
    pad.respawn()
    zero = ["--delay", "0"]
    assert calls == [
        ["xdotool", "keydown", *zero, "w", "a"],
        ["xdotool", "keyup", *zero, "a", "keydown", *zero, "d"],
        ["xdotool", "keyup", *zero, "w", "d"],
        ["xdotool", "keydown", *zero, "Delete"],
        ["xdotool", "keyup", *zero, "Delete"],
    ]


def test_xdotool_sender_reports_a_failure() -> None:
    sender = keyboard.XdotoolKeys(run=lambda args: (1, "", "Can't open display\n"))
    with pytest.raises(GameError, match=r"exit status 1: Can't open display\).*DISPLAY"):
        sender.send([(KEYS["w"], True)])


def test_uinput_sender_writes_key_events(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keyboard, "UINPUT_SETTLE_SECONDS", 0.0)
    log: list[tuple] = []

    class UInput:
        def __init__(self, events: dict[int, list[int]], name: str) -> None:
            log.append(("open", sorted(events[1]), name))

        def write(self, kind: int, code: int, value: int) -> None:
            log.append((kind, code, value))

        def syn(self) -> None:
            log.append("syn")

        def close(self) -> None:
            log.append("close")

    evdev = types.SimpleNamespace(UInput=UInput, ecodes=types.SimpleNamespace(EV_KEY=1))
    with KeyboardInput(keys=keyboard.UinputKeys(evdev), respawn_seconds=0.0) as pad:  # type: ignore[arg-type]
        pad.apply(1.0, 0.0, 1.0)
    assert log[0] == ("open", sorted(k.evdev for k in KEYS.values()), "evo-rl keyboard")
    assert log[1:] == [(1, 17, 1), (1, 32, 1), "syn", (1, 17, 0), (1, 32, 0), "syn", "close"]


def test_uinput_without_access_says_how_to_get_it() -> None:
    def refuse(*args, **kwargs):
        raise PermissionError("[Errno 13] Permission denied: '/dev/uinput'")

    evdev = types.SimpleNamespace(UInput=refuse, ecodes=types.SimpleNamespace(EV_KEY=1))
    with pytest.raises(GameError, match=r"Permission denied.*write access to /dev/uinput"):
        keyboard.UinputKeys(evdev)  # type: ignore[arg-type]


def test_default_sender_on_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keyboard.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setenv("DISPLAY", ":0")
    assert isinstance(keyboard.default_key_sender("linux"), keyboard.XdotoolKeys)
    monkeypatch.setattr(keyboard, "UINPUT_SETTLE_SECONDS", 0.0)
    fake_evdev = types.SimpleNamespace(UInput=lambda *a, **k: object(), ecodes=types.SimpleNamespace(EV_KEY=1))
    monkeypatch.setitem(sys.modules, "evdev", fake_evdev)
    monkeypatch.delenv("DISPLAY")  # xdotool without a display: uinput
    sender = keyboard.default_key_sender("linux")
    assert isinstance(sender, keyboard.UinputKeys) and isinstance(sender, KeySender)


def test_no_key_sender_explains_both_linux_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keyboard.shutil, "which", lambda name: None)
    monkeypatch.setitem(sys.modules, "evdev", None)
    with pytest.raises(GameError) as e:
        keyboard.default_key_sender("linux")
    msg = str(e.value)
    assert "xdotool" in msg and "DISPLAY" in msg and "evdev" in msg and "/dev/uinput" in msg
    assert "xdotool is not on PATH and evdev is not installed" in msg
    monkeypatch.setattr(keyboard.shutil, "which", lambda name: "/usr/bin/xdotool")
    monkeypatch.delenv("DISPLAY", raising=False)
    with pytest.raises(GameError, match="DISPLAY is unset"):
        keyboard.default_key_sender("linux")
    with pytest.raises(GameError, match=r"Windows.*Linux.*not 'darwin'.*gamepad"):
        keyboard.default_key_sender("darwin")
    if sys.platform.startswith("linux"):
        with pytest.raises(GameError, match="keyboard input on Linux needs one of"):
            KeyboardInput()  # the default sender of this machine


# --------------------------------------------------------------------------- the game window


class FakeWindows:
    """A window system with given windows; the client area takes the asked size after ``lag`` reads."""

    def __init__(self, windows: list[Window], lag: int = 0, accepts: bool = True) -> None:
        self.windows = windows
        self.lag = lag
        self.accepts = accepts
        self.calls: list[tuple] = []
        self.size = (640, 480)

    def find(self, title: str) -> list[Window]:
        return [w for w in self.windows if title.casefold() in w.title.casefold()]

    def activate(self, window: Window) -> None:
        self.calls.append(("activate", window.handle))

    def resize_client(self, window: Window, width: int, height: int) -> None:
        self.calls.append(("resize", window.handle, width, height))
        self.asked = (width, height)

    def move(self, window: Window, left: int, top: int) -> None:
        self.calls.append(("move", window.handle, left, top))

    def client_rect(self, window: Window) -> Rect:
        self.calls.append(("rect", window.handle))
        if self.accepts and hasattr(self, "asked"):
            if self.lag == 0:
                self.size = self.asked
            self.lag -= 1
        return Rect(100, 50, *self.size)


WINDOWS = [Window(1, "Trackmania - YouTube - Browser"), Window(2, "Trackmania"), Window(3, "notes")]


def test_prepare_window_picks_the_game_activates_and_sizes_it() -> None:
    system = FakeWindows(WINDOWS)
    assert isinstance(system, WindowSystem)
    assert window.prepare_window(system=system) == {"left": 100, "top": 50, "width": 958, "height": 488}
    assert system.calls == [("activate", 2), ("resize", 2, 958, 488), ("rect", 2)]


def test_prepare_window_waits_for_the_resize() -> None:
    system = FakeWindows(WINDOWS, lag=2)
    assert window.prepare_window(256, 128, system=system)["width"] == 256
    assert system.calls.count(("rect", 2)) == 3


def test_prepare_window_reports_a_refused_size() -> None:
    system = FakeWindows(WINDOWS, accepts=False)
    with pytest.raises(GameError, match=r"asked for a 958x488.*has 640x480.*windowed.*resolution to 958x488"):
        window.prepare_window(system=system, settle_seconds=0.1)
    system.size = (0, 0)
    with pytest.raises(GameError, match="minimised"):
        window.prepare_window(system=system, settle_seconds=0.0)


def test_title_matching() -> None:
    assert window.pick_window(WINDOWS, "Trackmania") == WINDOWS[1]
    assert window.pick_window([Window(4, "Track"), *WINDOWS], "Trackmania") == WINDOWS[1]  # whole titles only
    assert window.pick_window([Window(7, " TrackMania ")], "Trackmania").handle == 7  # case and spaces aside
    with pytest.raises(GameError, match=r"no visible window titled 'Trackmania' \(.*'Trackmania - YouTube"):
        window.pick_window(WINDOWS[:1], "Trackmania")
    with pytest.raises(GameError, match=r"no visible window titled 'Trackmania'; start TrackMania 2020"):
        window.prepare_window(system=FakeWindows([]))
    with pytest.raises(GameError, match=r"2 windows are titled 'Trackmania' \(handles 2, 9\)"):
        window.pick_window([*WINDOWS, Window(9, "Trackmania")], "Trackmania")


def test_window_sizes_are_checked() -> None:
    for bad in ((0, 488), (958, -1), (958.0, 488), (True, 488)):
        with pytest.raises(GameError, match="positive integers"):
            window.prepare_window(*bad, system=FakeWindows(WINDOWS))  # type: ignore[arg-type]


def test_outer_size_keeps_the_borders() -> None:
    # a Windows 10 frame: 16 px wider and 39 px taller than the client area (TMRL's w_diff, h_diff)
    outer, client = Rect(10, 20, 656, 519), Rect(0, 0, 640, 480)
    assert window.outer_size(outer, client, 958, 488) == (974, 527)


def test_xdotool_window_commands() -> None:
    calls: list[list[str]] = []
    replies = {
        "search": (0, "4194311\n62914567\n", ""),
        "getwindowgeometry": (0, "WINDOW=62914567\nX=12\nY=34\nWIDTH=958\nHEIGHT=488\nSCREEN=0\n", ""),
    }
    names = {"4194311": "Trackmania.exe - Terminal\n", "62914567": "Trackmania\n"}

    def run(args: list[str]) -> tuple[int, str, str]:
        calls.append(args)
        if args[1] == "getwindowname":
            return 0, names[args[2]], ""
        return replies.get(args[1]) or (0, "", "")

    region = window.prepare_window(system=window.XdotoolWindows(run=run))
    assert region == {"left": 12, "top": 34, "width": 958, "height": 488}
    assert calls == [
        ["xdotool", "search", "--onlyvisible", "--name", "Trackmania"],
        ["xdotool", "getwindowname", "4194311"],
        ["xdotool", "getwindowname", "62914567"],
        ["xdotool", "windowactivate", "--sync", "62914567"],
        ["xdotool", "windowsize", "62914567", "958", "488"],
        ["xdotool", "getwindowgeometry", "--shell", "62914567"],
    ]


def test_xdotool_finds_nothing_or_fails() -> None:
    nothing = window.XdotoolWindows(run=lambda args: (1, "", ""))  # search's status when nothing matches
    assert nothing.find("Trackmania") == []
    broken = window.XdotoolWindows(run=lambda args: (1, "", "XGetWindowProperty failed"))
    with pytest.raises(GameError, match=r"xdotool windowactivate --sync 5.*XGetWindowProperty failed"):
        broken.activate(Window(5, "Trackmania"))
    assert window.ere_escape("Track.mania (x)") == r"Track\.mania \(x\)"
    with pytest.raises(GameError, match="unexpected"):
        window.parse_geometry("WINDOW=1\nX=3\n")


def test_no_window_system_says_what_is_supported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(window.shutil, "which", lambda name: None)
    for platform in ("linux", "darwin"):
        with pytest.raises(GameError, match=rf"Windows \(user32\).*Linux with xdotool.*not here \({platform}\)"):
            window.default_window_system(platform)
    monkeypatch.setattr(window.shutil, "which", lambda name: "/usr/bin/xdotool")
    monkeypatch.setenv("DISPLAY", ":1")
    assert isinstance(window.default_window_system("linux"), window.XdotoolWindows)
    if sys.platform != "win32":
        with pytest.raises(GameError, match="Windows only"):
            window.Win32Windows()


# --------------------------------------------------------------------------- the input factory


def test_make_input_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    assert INPUT_KINDS == ("gamepad", "keyboard", "virtual")
    with pytest.raises(GameError, match=r"unknown input backend 'joystick'; known: gamepad, keyboard, virtual"):
        make_input("joystick")
    with pytest.raises(GameError, match="input port"):
        make_input("virtual")
    with pytest.raises(GameError, match="virtual input only"):
        make_input("keyboard", port=9101)
    monkeypatch.setattr(control, "default_key_sender", RecordingKeys)
    assert isinstance(make_input("keyboard"), KeyboardInput)
    monkeypatch.setitem(sys.modules, "vgamepad", None)
    with pytest.raises(GameError, match="vgamepad"):
        make_input("gamepad")
