"""The exceptions of the game layers; all are :class:`~evo_rl.errors.EvoError`, printed without a traceback."""

from __future__ import annotations

import importlib
from types import ModuleType

from evo_rl.errors import EvoError

GAME_EXTRA = 'pip install "evo-rl[game]"'


class GameError(EvoError):
    """Something about a game, a plugin or a virtual game the user can fix."""


class ProtocolError(GameError):
    """Bytes that are not a valid record or command: bad magic, another protocol version, truncated, garbled."""


class GameConnectionError(GameError):
    """Nothing listens where the game should, or the game stopped sending records."""


class GameTimeoutError(GameConnectionError):
    """The game is connected but did not answer in time (paused, in a menu, or hung)."""


class MissingExtraError(GameError):
    """A game-only package is not installed."""


def import_game_package(module: str, what: str) -> ModuleType:
    """Import ``module`` (a package of the ``game`` extra) or raise :class:`MissingExtraError` naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingExtraError(
            f"{what} needs the Python package {module!r}, which is not installed ({e}); "
            f"install the game extra: {GAME_EXTRA}"
        ) from e
