"""Input backends: how the control layer drives a game.

An :class:`InputBackend` takes the game's inputs (gas and brake ``0..1``, steer ``-1..1``, as a
gamepad's triggers and stick) and can press the game's respawn button. Three backends:

- :class:`VirtualInput`: a virtual game's input port on 127.0.0.1 (:mod:`evo_rl.games.virtual_link`);
- :class:`GamepadInput`: a virtual Xbox 360 pad through vgamepad (the ``game`` extra; on Windows it
  needs the ViGEmBus driver that vgamepad installs), as TMRL drives TrackMania 2020;
- :class:`KeyboardInput`: key presses, as TMRL's keyboard mode drives TrackMania 2020, through a key
  sender of :mod:`evo_rl.games.keyboard` (SendInput, xdotool or uinput).

:func:`make_input` builds one by name. :func:`action_to_inputs` turns an EVO RL action
``[gas, brake, steer]`` in ``[-1, 1]`` into inputs with the environment's ``controls`` rule, the same
rule the simulator applies.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, fields
from typing import Any, Literal, Protocol, get_args, runtime_checkable

import numpy as np

from evo_rl.errors import EvoError
from evo_rl.games import virtual_link as link
from evo_rl.games.errors import GameConnectionError, GameError, import_game_package
from evo_rl.games.keyboard import KeyEvent, KeySender, default_key_sender, key
from evo_rl.games.net import LOOPBACK, connect

RESPAWN_PRESS_SECONDS = 0.1  # how long GamepadInput holds the respawn button


@runtime_checkable
class InputBackend(Protocol):
    """Where the game's inputs go."""

    def apply(self, gas: float, brake: float, steer: float) -> None:
        """Hold gas and brake (``0..1``) and steering (``-1`` full left .. ``1`` full right) until the next call."""

    def respawn(self) -> None:
        """Press the game's respawn button once (a new run from the start line)."""

    def release(self) -> None:
        """Back to rest: no gas, no brake, straight wheels."""

    def close(self) -> None: ...


def action_to_inputs(
    action: np.ndarray, controls: Literal["binary", "analog"] = "binary"
) -> tuple[float, float, float]:
    """``(gas, brake, steer)`` of an action ``[gas, brake, steer]`` in ``[-1, 1]``.

    ``binary``: gas and brake are pressed (1) when ``> 0``, as keys; ``analog``: ``clip(a, 0, 1)``, as triggers.
    """
    a = np.asarray(action, np.float64).reshape(-1)
    if a.shape != (3,) or not np.isfinite(a).all():
        raise EvoError(f"an action is 3 finite numbers [gas, brake, steer], got {action!r}")
    a = np.clip(a, -1.0, 1.0)
    if controls == "binary":
        gas, brake = float(a[0] > 0), float(a[1] > 0)
    elif controls == "analog":
        gas, brake = max(float(a[0]), 0.0), max(float(a[1]), 0.0)
    else:
        raise EvoError(f"controls must be 'binary' or 'analog', got {controls!r}")
    return gas, brake, float(a[2])


def _check_inputs(gas: float, brake: float, steer: float) -> tuple[float, float, float]:
    if not all(math.isfinite(v) for v in (gas, brake, steer)):
        raise EvoError(f"inputs must be finite, got gas={gas}, brake={brake}, steer={steer}")
    return min(max(gas, 0.0), 1.0), min(max(brake, 0.0), 1.0), min(max(steer, -1.0), 1.0)


class VirtualInput:
    """Inputs to a virtual game through its input port (``evo-rl virtual-game tm2020`` prints it)."""

    def __init__(self, port: int, host: str = LOOPBACK, timeout: float = 2.0) -> None:
        self.address = (host, port)
        self._sock = connect(
            host, port, timeout, "the virtual game's input port", "start one with `evo-rl virtual-game tm2020`"
        )

    def _send(self, frame: bytes) -> None:
        try:
            self._sock.sendall(frame)
        except OSError as e:
            raise GameConnectionError(
                f"the virtual game's input port {self.address[0]}:{self.address[1]} closed ({e}); "
                "did the virtual game stop?"
            ) from e

    def apply(self, gas: float, brake: float, steer: float) -> None:
        self._send(link.encode_request(link.Request.INPUT, *_check_inputs(gas, brake, steer)))

    def respawn(self) -> None:
        self._send(link.encode_request(link.Request.RESPAWN))

    def release(self) -> None:
        self.apply(0.0, 0.0, 0.0)

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> VirtualInput:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class GamepadInput:
    """A virtual Xbox 360 gamepad (vgamepad): right trigger gas, left trigger brake, left stick steering."""

    RESPAWN_BUTTON = "XUSB_GAMEPAD_B"  # TrackMania 2020's default "respawn" on a pad

    def __init__(self) -> None:
        vg = import_game_package("vgamepad", "the gamepad input (GamepadInput)")
        try:
            self._pad: Any = vg.VX360Gamepad()
        except Exception as e:  # the driver is missing or refuses: say what to install
            raise GameConnectionError(
                f"cannot create a virtual gamepad ({e}); on Windows install the ViGEmBus driver "
                "(the vgamepad installer offers it), on Linux give access to /dev/uinput"
            ) from e
        self._button = getattr(vg.XUSB_BUTTON, self.RESPAWN_BUTTON)

    def apply(self, gas: float, brake: float, steer: float) -> None:
        gas, brake, steer = _check_inputs(gas, brake, steer)
        self._pad.right_trigger_float(value_float=gas)
        self._pad.left_trigger_float(value_float=brake)
        self._pad.left_joystick_float(x_value_float=steer, y_value_float=0.0)
        self._pad.update()

    def respawn(self) -> None:
        self._pad.reset()
        self._pad.press_button(button=self._button)
        self._pad.update()
        time.sleep(RESPAWN_PRESS_SECONDS)
        self._pad.release_button(button=self._button)
        self._pad.update()

    def release(self) -> None:
        self._pad.reset()
        self._pad.update()

    def close(self) -> None:
        self.release()


@dataclass(frozen=True)
class KeyMap:
    """Which key (a name of :data:`evo_rl.games.keyboard.KEYS`) does what; the default is TMRL's.

    TMRL's keyboard mode (tmrl/custom/utils/control_keyboard.py) holds W for gas, S for brake, A and D
    to steer left and right, and taps Delete to restart, TrackMania 2020's "Give up" (a new run from the
    start line). Rebind here if the game's Settings > Input binds other keys.
    """

    gas: str = "w"
    brake: str = "s"
    left: str = "a"
    right: str = "d"
    respawn: str = "delete"

    def __post_init__(self) -> None:
        names = [getattr(self, f.name) for f in fields(self)]
        for name in names:
            key(name)  # a GameError naming the known keys
        if len(set(names)) != len(names):
            raise GameError(f"a key map needs a different key for each action, got {self}")


class KeyboardInput:
    """Inputs as key presses, sent only when a key changes (press on the way down, release on the way up).

    Gas and brake are held while ``> 0`` (``0..1`` inputs): the same rule as
    ``action_to_inputs(controls="binary")``, so an action presses the same keys with either ``controls``.
    Steering holds right while ``steer > steer_dead_zone`` and left while ``steer < -steer_dead_zone``
    (TMRL's 0.5); a keyboard steers full lock or straight. Both pedals may be held at once.
    ``keys``: the key sender (None: :func:`~evo_rl.games.keyboard.default_key_sender`).
    """

    def __init__(
        self,
        keys: KeySender | None = None,
        keymap: KeyMap | None = None,
        steer_dead_zone: float = 0.5,
        respawn_seconds: float = RESPAWN_PRESS_SECONDS,
    ) -> None:
        if not 0.0 <= steer_dead_zone < 1.0:
            raise GameError(f"the steering dead zone is in [0, 1), got {steer_dead_zone}")
        self.keymap = KeyMap() if keymap is None else keymap
        self.steer_dead_zone = steer_dead_zone
        self.respawn_seconds = respawn_seconds
        self.keys = default_key_sender() if keys is None else keys
        self.held: frozenset[str] = frozenset()  # the key names held down now

    def keys_for(self, gas: float, brake: float, steer: float) -> frozenset[str]:
        """The key names to hold for these inputs."""
        gas, brake, steer = _check_inputs(gas, brake, steer)
        m = self.keymap
        wanted = {m.gas: gas > 0.0, m.brake: brake > 0.0}
        wanted |= {m.left: steer < -self.steer_dead_zone, m.right: steer > self.steer_dead_zone}
        return frozenset(name for name, down in wanted.items() if down)

    def _hold(self, wanted: frozenset[str]) -> None:
        order = [self.keymap.gas, self.keymap.brake, self.keymap.left, self.keymap.right]
        events: list[KeyEvent] = [(key(n), False) for n in order if n in self.held - wanted]
        events += [(key(n), True) for n in order if n in wanted - self.held]
        if events:
            self.keys.send(events)
        self.held = wanted

    def apply(self, gas: float, brake: float, steer: float) -> None:
        self._hold(self.keys_for(gas, brake, steer))

    def respawn(self) -> None:
        """Let go of everything, then hold the respawn key for ``respawn_seconds``."""
        self.release()
        respawn = key(self.keymap.respawn)
        self.keys.send([(respawn, True)])
        time.sleep(self.respawn_seconds)
        self.keys.send([(respawn, False)])

    def release(self) -> None:
        self._hold(frozenset())

    def close(self) -> None:
        try:
            self.release()
        finally:
            self.keys.close()

    def __enter__(self) -> KeyboardInput:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


InputKind = Literal["gamepad", "keyboard", "virtual"]
INPUT_KINDS: tuple[str, ...] = get_args(InputKind)


def make_input(kind: str, port: int | None = None) -> InputBackend:
    """The input backend called ``kind`` (one of :data:`INPUT_KINDS`); ``port``: the virtual game's input port."""
    if kind not in INPUT_KINDS:
        raise GameError(f"unknown input backend {kind!r}; known: {', '.join(INPUT_KINDS)}")
    if kind == "virtual":
        if port is None:
            raise GameError("the virtual input needs the virtual game's input port (`evo-rl virtual-game` prints it)")
        return VirtualInput(port)
    if port is not None:
        raise GameError(f"a port is for the virtual input only, not the {kind} input")
    return GamepadInput() if kind == "gamepad" else KeyboardInput()
