"""TrackMania 2020 as a car source (:class:`evo_rl.envs.source.CarSource`), one car.

:class:`TM2020Source` joins the three live layers: telemetry from the plugin (a
:class:`~evo_rl.games.tm2020.client.TM2020Client`), inputs to the game (an
:class:`~evo_rl.games.control.InputBackend`) and, when asked for, pictures of its window (a
:class:`~evo_rl.games.capture.ScreenBackend`). With a track model of the map (``env.track``: a
recorded ``.track``; on a virtual game, the track it runs) it also places the car on the track
(``progress_s``, ``lateral``, ``quad``) and computes the geometric LIDAR from the telemetry, so
those numbers are the simulator's own.

It is real-time: :meth:`step` sends the inputs and returns at once; :meth:`observe` waits for the
first record newer than them. The real-time environment (:mod:`evo_rl.games.realtime`, rtgym)
decides when to observe.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np

from evo_rl.config import EvoConfig
from evo_rl.envs.spaces import lidar_beams
from evo_rl.errors import ConfigError, EvoError
from evo_rl.games.capture import ScreenBackend, grey_resized
from evo_rl.games.cars import GameCars
from evo_rl.games.control import InputBackend, action_to_inputs
from evo_rl.games.errors import GameConnectionError
from evo_rl.games.tm2020 import protocol as p
from evo_rl.games.tm2020.client import Telemetry, TM2020Client
from evo_rl.games.track_model import TrackModel
from evo_rl.sim.track import Track

RESPAWN_TIMEOUT = 5.0  # s for a respawn to show in the telemetry
RESPAWN_RACE_TIME_MS = 300  # a run this young counts as restarted (TMRL's plugin: speed and distance near 0)


def provides(cfg: EvoConfig, has_track: bool) -> frozenset[str]:
    """What the TrackMania 2020 source reports under ``cfg`` (``game`` section), without connecting."""
    game = cfg.game
    out = set(p.EVO_PROVIDES if game.protocol == "evo" else p.TMRL_PROVIDES)
    if game.input == "virtual" and game.protocol == "evo":
        out.add("wall_contact")  # the virtual game knows wall contact; the real plugin reports it unknown
    if has_track:
        out.add("track")
        if cfg.lidar.kind == "geometric" and "heading" in out:
            out.add("lidar")
    if game.screen != "none":
        out.add("frames")
        if cfg.lidar.kind == "tmrl":
            out.add("lidar")
    return frozenset(out)


def source_name(cfg: EvoConfig) -> str:
    return "tm2020" if cfg.game.protocol == "evo" else "tm2020-tmrl"


class TM2020Source(GameCars):
    """One car in TrackMania 2020 (or a virtual one): telemetry in, inputs out, pictures on request."""

    realtime = True

    def __init__(
        self,
        cfg: EvoConfig,
        client: TM2020Client,
        inputs: InputBackend,
        screen: ScreenBackend | None = None,
        track: Track | None = None,
    ) -> None:
        if cfg.lidar.kind == "tmrl" and screen is None:
            raise ConfigError("lidar.kind: tmrl reads the game's picture; set game.screen: window (or virtual)")
        self.cfg = cfg
        self.name = source_name(cfg)
        self.client = client
        self.inputs = inputs
        self.screen = screen
        self.track = track
        self.provides = provides(cfg, track is not None)
        self.dt = cfg.sim.dt
        self.controls = cfg.env.controls
        self.timeout = cfg.game.record_timeout
        super().__init__(1, TrackModel(track, cfg) if track is not None else None)
        self.telemetry: Telemetry | None = None  # the record the arrays come from
        self._sent = -1  # client seq when the last inputs were sent
        self._picture: np.ndarray | None = None  # [H, W, 3] uint8, the last grab

    # ------------------------------------------------------------------ the contract

    def reset(
        self, mask: np.ndarray | None = None, lateral: np.ndarray | None = None, yaw: np.ndarray | None = None
    ) -> None:
        """A new run from the start line (the game places the car; ``lateral``/``yaw`` are ignored)."""
        if mask is not None and not np.asarray(mask, bool).any():
            return
        self.inputs.release()
        if not self.client.connected:
            self.client.wait_connected(self.timeout)
        if self.client.protocol == "evo":
            t = self.client.respawn(timeout=RESPAWN_TIMEOUT)
        else:
            before = self.client.wait_newer(-1, self.timeout).seq
            self.inputs.respawn()
            t = self._wait_restart(before)
        self._sent = t.seq
        self._update(self.client.wait_newer(t.seq - 1, self.timeout), first=True)

    def _wait_restart(self, before: int) -> Telemetry:
        """TMRL's plugin has no race time: a restarted run is a record at rest with its distance back near 0."""
        seq, deadline = before, time.monotonic() + RESPAWN_TIMEOUT
        while time.monotonic() < deadline:
            t = self.client.wait_newer(seq, self.timeout)
            seq = t.seq
            if t.record.distance < 1.0 and abs(t.record.speed) < 0.5:
                return t
        raise GameConnectionError(
            f"the game did not restart the run within {RESPAWN_TIMEOUT:g} s of pressing respawn; check the input "
            "backend (game.input) and that the game window has the focus"
        )

    def step(self, actions: np.ndarray) -> None:
        """Send the inputs of ``actions [1, 3]`` (checked by the environment) and return at once."""
        self._sent = self.client.seq
        self.inputs.apply(*action_to_inputs(actions[0], self.controls))

    def observe(self) -> None:
        """The next record: newer than the inputs and than every record already received, so the
        observation shows the car at most one transfer old (it waits for at most one game frame).
        :class:`GameConnectionError` when none comes within ``game.record_timeout``."""
        self._update(self.client.wait_newer(max(self._sent, self.client.seq), self.timeout))
        self._picture = None

    def lidar(self, out: np.ndarray | None = None, rows: np.ndarray | None = None) -> np.ndarray:
        """``[1, beams]`` float32: against the track model (m) or over the window picture (TMRL's px)."""
        beams = lidar_beams(self.cfg)
        if out is None:
            out = np.empty((1, beams), np.float32)
        if "lidar" not in self.provides:
            raise EvoError(f"the car source {self.name!r} has no LIDAR: give it a track model or a screen")
        if self.cfg.lidar.kind == "tmrl":
            from evo_rl.sim.screen_lidar import screen_lidar

            out[0] = screen_lidar(self._grab())
            return out
        return self.geometric_lidar(out)

    def images(self, out: np.ndarray | None = None, rows: np.ndarray | None = None) -> np.ndarray:
        """``[1, H, W]`` uint8: the window picture in grey, resized to the camera's size (``camera``)."""
        cam = self.cfg.camera
        grey = grey_resized(self._grab(), cam.height, cam.width)
        if out is None:
            return grey[None]
        out[0] = grey
        return out

    def close(self) -> None:
        for part in (self.inputs, self.screen, self.client):
            if part is not None:
                try:
                    part.close()
                except Exception:  # noqa: BLE001 - closing: the other parts must still close
                    pass

    # ------------------------------------------------------------------ records to arrays

    def _grab(self) -> np.ndarray:
        if self.screen is None:
            raise EvoError(f"the car source {self.name!r} has no screen (game.screen: none)")
        if self._picture is None:
            self._picture = self.screen.grab()
        return self._picture

    def _update(self, t: Telemetry, first: bool = False) -> None:
        self.telemetry = t
        self.set_car(0, t.car_state(), first, heading="heading" in self.provides)  # TMRL's plugin sends none


class Reconnecting:
    """A virtual game's input or screen backend that opens a new connection when the game restarted.

    ``make()`` builds the backend; a call that fails with :class:`GameConnectionError` is retried once
    on a fresh backend (the virtual game listens again on the same port), then the error stands.
    """

    def __init__(self, make: Any) -> None:
        self._make = make
        self._backend: Any = make()

    def _call(self, name: str, *args: Any) -> Any:
        try:
            return getattr(self._backend, name)(*args)
        except GameConnectionError:
            try:
                self._backend.close()
            except OSError:
                pass
            self._backend = self._make()
            return getattr(self._backend, name)(*args)

    def apply(self, gas: float, brake: float, steer: float) -> None:
        self._call("apply", gas, brake, steer)

    def respawn(self) -> None:
        self._call("respawn")

    def release(self) -> None:
        self._call("release")

    def grab(self) -> np.ndarray:
        return self._call("grab")

    def close(self) -> None:
        self._backend.close()


def _focus_game_window(cfg: EvoConfig) -> None:
    """Bring the game window to the front and size it, so the keys and the pad reach it; without a screen
    to capture this only helps, so a machine that cannot do it (no xdotool) gets a warning, not an error."""
    from evo_rl.games import window
    from evo_rl.games.errors import GameError

    try:
        window.prepare_window(cfg.game.window_width, cfg.game.window_height)
    except GameError as e:
        warnings.warn(f"the game window was not focused ({e}); click into it before the car drives", stacklevel=3)


def open_source(cfg: EvoConfig, track: Track | None = None, **backends: Any) -> TM2020Source:
    """A :class:`TM2020Source` with the client and the backends ``cfg.game`` names (``backends`` override them)."""
    from evo_rl.games.capture import MssScreen, VirtualScreen
    from evo_rl.games.control import VirtualInput, make_input

    game = cfg.game
    client = backends.get("client") or TM2020Client(port=game.port, protocol=game.protocol)
    input_port = game.input_port or client.port + 1
    try:
        inputs = backends.get("inputs")
        if inputs is None:
            if game.input == "virtual":
                inputs = Reconnecting(lambda: VirtualInput(input_port))
            else:
                inputs = make_input(game.input)
        screen = backends.get("screen")
        if screen is None and game.screen == "virtual":
            screen = Reconnecting(lambda: VirtualScreen(input_port))
        elif screen is None and game.screen == "window":
            from evo_rl.games import window

            screen = MssScreen(region=window.prepare_window(game.window_width, game.window_height))
        elif game.input != "virtual" and "inputs" not in backends:
            _focus_game_window(cfg)
        if track is None and cfg.env.track is not None:
            from evo_rl.sim.catalog import get_track

            track = get_track(cfg.env.track)
        return TM2020Source(cfg, client, inputs, screen, track)
    except BaseException:
        client.close()
        raise
