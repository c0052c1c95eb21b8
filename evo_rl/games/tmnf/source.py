"""TMNF instances as one car source (:class:`evo_rl.envs.source.CarSource`): one car per instance.

Lock-step: :meth:`TMNFSource.step` sends every instance its inputs, :meth:`TMNFSource.observe` reads
every answer, so N instances compute their steps at the same time and the game time between two
actions is exactly ``sim.dt`` in each. It is not real-time: the simulator's environments
(:class:`~evo_rl.envs.vector.VecTrackEnv`) and the trainer drive it as they drive the simulator.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from evo_rl.config import EvoConfig
from evo_rl.errors import ConfigError
from evo_rl.games.capture import ScreenBackend, grey_resized
from evo_rl.games.cars import GameCars
from evo_rl.games.control import action_to_inputs
from evo_rl.games.errors import GameConnectionError, GameTimeoutError, ProtocolError
from evo_rl.games.tmnf import protocol as p
from evo_rl.games.tmnf.client import TMNFClient
from evo_rl.games.tmnf.launch import report_hung
from evo_rl.games.track_model import TrackModel
from evo_rl.sim.track import Track


def provides(cfg: EvoConfig, has_track: bool, virtual: bool) -> frozenset[str]:
    """What TMNF instances report under ``cfg``, without connecting. Frames come from the virtual TMNF
    (in the protocol) or from each instance's window (``game.screen: window``): the TMInterface plugin
    sends none (its states say ``frame_height = 0``), so ``env.flavour: full`` in the game without
    windows is refused at start-up rather than trained on blank images."""
    out = set(p.PROVIDES)
    if virtual:
        out.add("wall_contact")
    if virtual or cfg.game.screen == "window":
        out.add("frames")
    if has_track:
        out.add("track")
        if cfg.lidar.kind == "geometric":
            out.add("lidar")
    return frozenset(out)


class TMNFSource(GameCars):
    """``len(clients)`` TMNF instances, car ``i`` in instance ``i``.

    ``screen_for(port)`` gives the screen of the instance on ``port`` (``game.screen: window``); its
    pictures are the frames, and the instances are not asked for frames of their own. A restarted
    instance's screen is asked for again (its window is a new one).
    """

    name = "tmnf"
    realtime = False

    def __init__(
        self,
        cfg: EvoConfig,
        clients: list[TMNFClient],
        track: Track | None,
        virtual: bool = False,
        screen_for: Callable[[int], ScreenBackend] | None = None,
    ) -> None:
        if cfg.lidar.kind == "tmrl":
            raise ConfigError("lidar.kind: tmrl is TMRL's TrackMania 2020 screen LIDAR; use geometric with TMNF")
        self.cfg = cfg
        self.clients = clients
        n = len(clients)
        self.track = track
        self.provides = provides(cfg, track is not None, virtual)
        self.dt = cfg.sim.dt
        self.controls = cfg.env.controls
        cam = cfg.camera
        full = cfg.env.flavour == "full"
        self._frame = (cam.height, cam.width) if full and screen_for is None else None  # asked in the protocol
        super().__init__(n, TrackModel(track, cfg) if track is not None else None)
        self.frames = np.zeros((n, *((cam.height, cam.width) if full else (1, 1))), np.uint8)
        self.lost = np.zeros(n, bool)  # [N] instances that stopped answering; their episodes are cut
        self.errors: list[str] = ["" for _ in range(n)]  # why, per instance
        self.ports = [c.address[1] for c in clients]
        self.reconnect_timeout = cfg.game.reconnect_timeout
        self._screen_for = screen_for if full else None
        self.screens: list[ScreenBackend | None] = [None] * n
        if self._screen_for is not None:
            try:
                for i, port in enumerate(self.ports):
                    self.screens[i] = self._screen_for(port)
            except BaseException:
                for i in range(n):
                    self._close_screen(i)
                raise

    def set_speed(self, speed: float) -> None:
        for c in self.clients:
            c.request(p.Request.SET_SPEED, speed)

    def reset(
        self, mask: np.ndarray | None = None, lateral: np.ndarray | None = None, yaw: np.ndarray | None = None
    ) -> None:
        """Rewind the instances of ``mask`` to their race start (instant); ``lateral``/``yaw`` are ignored.

        A lost instance is connected again first (its launcher restarts it), for up to
        ``game.reconnect_timeout`` seconds; then :class:`GameConnectionError` names it.
        """
        rows = [int(i) for i in (range(self.n_envs) if mask is None else np.flatnonzero(np.asarray(mask, bool)))]
        for i in rows:
            if self.lost[i]:
                self._reconnect(i)
            self.clients[i].send(p.Request.RESTART, frame=self._frame)
        for i in rows:
            self._update(i, *self.clients[i].receive(), first=True)

    def _reconnect(self, i: int) -> None:
        """Connect to instance ``i`` again once it answers a ping (a restarting game may accept and stay silent)."""
        old = self.clients[i]
        old.close()
        deadline = time.monotonic() + self.reconnect_timeout
        while True:
            left = deadline - time.monotonic()
            try:
                client = TMNFClient(
                    self.ports[i], timeout=min(old.timeout, max(left, 0.1)), connect_timeout=max(left, 0.1)
                )
                try:
                    client.request(p.Request.PING)
                except GameConnectionError:
                    client.close()
                    raise
                if self.cfg.game.map is not None:  # a restarted game starts on its launch map
                    client.load_map(self.cfg.game.map)
                client.set_timeout(old.timeout)
                break
            except GameConnectionError as e:
                if time.monotonic() >= deadline:
                    raise GameConnectionError(f"TMNF instance {i} did not come back ({self.errors[i]}): {e}") from e
                time.sleep(0.1)
        self.clients[i] = client
        self.lost[i] = False
        self.errors[i] = ""
        if self._screen_for is not None:  # the restarted game has a new window
            self._close_screen(i)
            self.screens[i] = self._screen_for(self.ports[i])

    def step(self, actions: np.ndarray) -> None:
        for i, c in enumerate(self.clients):
            if self.lost[i]:
                continue
            try:
                c.send(p.Request.STEP, *action_to_inputs(actions[i], self.controls), frame=self._frame)
            except GameConnectionError as e:
                self._lose(i, e)

    def observe(self) -> None:
        """Every answer; an instance that fails is marked lost (its episode is cut), the others go on."""
        for i, c in enumerate(self.clients):
            if not c.pending:
                continue
            try:
                self._update(i, *c.receive())
            except (GameConnectionError, ProtocolError) as e:
                self._lose(i, e)

    def _lose(self, i: int, error: Exception) -> None:
        if isinstance(error, GameTimeoutError):
            report_hung(self.ports[i], self.cfg.game.launcher_dir)
        self.lost[i] = True
        self.errors[i] = str(error)
        self.clients[i].drop_pending()

    def lidar(self, out: np.ndarray | None = None, rows: np.ndarray | None = None) -> np.ndarray:
        return self.geometric_lidar(out)

    def images(self, out: np.ndarray | None = None, rows: np.ndarray | None = None) -> np.ndarray:
        """``[N, H, W]`` uint8 grey frames: the last ones the instances sent, or their windows now (the
        games hold between steps, so a window shows the step just answered)."""
        if self._screen_for is not None:
            h, w = self.frames.shape[1:]
            for i, screen in enumerate(self.screens):
                if screen is not None and not self.lost[i]:
                    self.frames[i] = grey_resized(screen.grab(), h, w)
        if out is None:
            return self.frames.copy()
        out[...] = self.frames
        return out

    def _close_screen(self, i: int) -> None:
        screen, self.screens[i] = self.screens[i], None
        if screen is not None:
            try:
                screen.close()
            except Exception:  # noqa: BLE001 - closing a capture that may be gone
                pass

    def close(self) -> None:
        for c in self.clients:
            c.close()
        for i in range(self.n_envs):
            self._close_screen(i)

    def _update(self, i: int, s: Any, frame: np.ndarray | None, first: bool = False) -> None:
        self.set_car(i, p.state_to_car_state(s), first)
        if frame is not None:
            self.frames[i] = frame


def window_screens(cfg: EvoConfig) -> Callable[[int], ScreenBackend]:
    """``screen_for(port)``: a capture of the window the launcher placed for ``port`` (``windows.json`` in
    ``game.launcher_dir``, read again at each call, so a restarted instance's new window is found)."""
    from evo_rl.games.capture import MssScreen
    from evo_rl.games.tmnf.launch import reports_dir
    from evo_rl.games.tmnf.windows import read_windows

    folder = reports_dir(cfg.game.launcher_dir)

    def screen_for(port: int) -> ScreenBackend:
        regions = read_windows(folder)
        if port not in regions:
            raise ConfigError(
                f"{folder / 'windows.json'} has no window for the instance on port {port} (it has "
                f"{sorted(regions)}): start every instance with `evo-rl game tmnf launch --tile W H`"
            )
        return MssScreen(region=regions[port].region)

    return screen_for


def open_source(
    cfg: EvoConfig,
    ports: list[int],
    virtual: bool = False,
    speed: float | None = None,
    screen_for: Callable[[int], ScreenBackend] | None = None,
) -> TMNFSource:
    """A :class:`TMNFSource` over the instances listening on ``ports`` (127.0.0.1), at game ``speed``;
    with ``game.screen: window`` and ``env.flavour: full`` the frames are captures of their windows
    (``screen_for``, by default :func:`window_screens`)."""
    from evo_rl.sim.catalog import get_track

    if screen_for is None and cfg.game.screen == "window" and cfg.env.flavour == "full":
        screen_for = window_screens(cfg)
    clients: list[TMNFClient] = []
    try:
        for port in ports:
            clients.append(TMNFClient(port, timeout=cfg.game.record_timeout))
        track = get_track(cfg.env.track) if cfg.env.track is not None else None
        source = TMNFSource(cfg, clients, track, virtual=virtual, screen_for=screen_for)
        if cfg.game.map is not None:
            for c in clients:
                c.load_map(cfg.game.map)
        if speed is not None and not math.isclose(speed, 1.0):
            source.set_speed(speed)
        return source
    except BaseException:
        for c in clients:
            c.close()
        raise
