"""Start N TMNF instances, each on its own port, and restart one whose process ends.

The command is a template: ``{port}`` is replaced by the instance's port. On Windows it is TMLoader
starting TMNF with TMInterface and the port for the EVO RL plugin, for example::

    "C:/TMLoader/TMLoader.exe" run TmForever "default" /configstring="set evorl_port {port}"

under Linux the same through Wine (``wine C:/TMLoader/TMLoader.exe ...``), and for tests and trials
``evo-rl virtual-game tmnf --port {port}``. A crashed instance is started again on the same port;
so is a hung one, which its client reports by a ``hung-<port>`` file in :func:`reports_dir` when it
times out. The car source reconnects at its next episode (:class:`~evo_rl.games.tmnf.source.TMNFSource`).

With a :class:`~evo_rl.games.tmnf.windows.Tiling` the instances start one at a time: each one's new
window is sized, moved to its cell, and written to ``windows.json`` for frame capture
(:mod:`evo_rl.games.tmnf.windows`).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from evo_rl.errors import ConfigError
from evo_rl.games.errors import GameError

if TYPE_CHECKING:
    from evo_rl.games.tmnf.windows import Tiling
    from evo_rl.games.window import Rect, WindowSystem

POLL_SECONDS = 0.2  # s between checks of the instances' processes and of hung reports
STOP_SECONDS = 5.0  # s an instance gets to exit before it is killed


def reports_dir(path: str | None = None) -> Path:
    """Where clients report hung instances (``hung-<port>`` files) to the launcher: ``game.launcher_dir``,
    by default ``<temp>/evo-rl-tmnf``."""
    return Path(path) if path else Path(tempfile.gettempdir()) / "evo-rl-tmnf"


def report_hung(port: int, path: str | None = None) -> None:
    """Tell the launcher that the instance on ``port`` stopped answering (best effort)."""
    folder = reports_dir(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"hung-{port}").touch()
    except OSError:
        pass


def command_for(template: Sequence[str] | str, port: int) -> list[str]:
    """The argument list of ``template`` (a list, or one shell-quoted string) for ``port``."""
    args = shlex.split(template) if isinstance(template, str) else list(template)
    if not any("{port}" in a for a in args):
        raise ConfigError(f"the launch command {template!r} has no {{port}}: each instance needs its own port")
    return [a.replace("{port}", str(port)) for a in args]


class Launcher:
    """Instances of ``command`` on ``ports``; :meth:`start` starts them and a thread restarts those that end.

    ``tiling`` places each instance's window (``windows``: the window calls; by default this machine's).
    """

    def __init__(
        self,
        command: Sequence[str] | str,
        ports: Sequence[int],
        reports: str | None = None,
        tiling: Tiling | None = None,
        windows: WindowSystem | None = None,
    ) -> None:
        if not ports:
            raise ConfigError("the launcher needs at least one port")
        if tiling is not None and windows is None:
            from evo_rl.games.window import default_window_system

            windows = default_window_system()
        self.tiling = tiling
        self.windows = windows
        self.regions: dict[int, Rect] = {}  # port -> client area of its window (with a tiling)
        self.commands = [command_for(command, port) for port in ports]
        self.ports = list(ports)
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * len(self.ports)
        self.restarts = [0] * len(self.ports)  # restarts per instance
        self.reports = reports_dir(reports)
        for port in self.ports:  # old reports of these ports do not count
            (self.reports / f"hung-{port}").unlink(missing_ok=True)
        if tiling is not None:
            from evo_rl.games.tmnf.windows import WINDOWS_FILE

            (self.reports / WINDOWS_FILE).unlink(missing_ok=True)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> Launcher:
        try:
            for i in range(len(self.ports)):
                self._spawn(i)
        except BaseException:  # the instances already started stop too
            self.stop()
            raise
        self._thread = threading.Thread(target=self._watch, name="tmnf-launcher", daemon=True)
        self._thread.start()
        return self

    def _spawn(self, i: int) -> None:
        known = self._window_handles()
        try:
            self.procs[i] = subprocess.Popen(self.commands[i], stdin=subprocess.DEVNULL)
        except OSError as e:
            raise ConfigError(f"cannot start TMNF instance {i} with {self.commands[i]}: {e}") from e
        if known is not None:
            self._place_window(i, known)

    def _window_handles(self) -> set[int] | None:
        if self.tiling is None or self.windows is None:
            return None
        from evo_rl.games.tmnf.windows import handles

        return handles(self.windows, self.tiling.title)

    def _place_window(self, i: int, known: set[int]) -> None:
        """Find instance ``i``'s new window, put it in cell ``i`` and write the regions down; a window that
        does not show or does not fit stops the instance (and is a GameError)."""
        from evo_rl.games.tmnf.windows import check_apart, new_window, place, write_windows

        assert self.tiling is not None and self.windows is not None
        port = self.ports[i]
        try:
            window = new_window(self.windows, self.tiling.title, known, self.tiling.appear_seconds, f"port {port}")
            regions = {**self.regions, port: place(self.windows, window, self.tiling, i)}
            check_apart(regions)
        except GameError:
            proc = self.procs[i]
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
            raise
        self.regions = regions
        write_windows(self.reports, self.regions)

    def _watch(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            with self._lock:
                for i, proc in enumerate(self.procs):
                    if proc is None or self._stop.is_set():
                        continue
                    hung = self.reports / f"hung-{self.ports[i]}"
                    if hung.exists():  # a client timed out on it: stop the hung game
                        hung.unlink(missing_ok=True)
                        if proc.poll() is None:
                            proc.kill()
                            proc.wait()
                    if proc.poll() is not None:
                        self.restarts[i] += 1
                        try:
                            self._spawn(i)
                        except (ConfigError, GameError) as e:  # tried again at the next poll
                            print(f"TMNF instance on port {self.ports[i]} did not restart: {e}", file=sys.stderr)

    def stop(self) -> None:
        """Stop every instance this launcher started (terminate, then kill after a grace period)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        with self._lock:
            for proc in self.procs:
                if proc is not None and proc.poll() is None:
                    proc.terminate()
            deadline = time.monotonic() + STOP_SECONDS
            for proc in self.procs:
                if proc is None:
                    continue
                try:
                    proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def __enter__(self) -> Launcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
