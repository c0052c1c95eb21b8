"""The live terminal dashboard of ``evo-rl train`` (rich), or plain log lines
when stdout is not a terminal (CI, pipes)."""

from __future__ import annotations

import sys
import time
from typing import Any, Literal

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text


def _fmt(value: Any, spec: str = ".3g") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


def _lap(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.2f} s"


def _ratio(lap: float | None, ref: float | None) -> str:
    if lap is None or not ref:
        return ""
    return f" ({lap / ref:.2f}x ref)"


def plain_line(snap: dict[str, Any]) -> str:
    """One log line summarising a dashboard snapshot."""
    parts = [
        f"[{snap.get('run', '')}]",
        f"{100 * snap.get('fraction', 0.0):5.1f}%",
        f"t={snap.get('elapsed', 0.0) / 60:.1f}min",
        f"steps={snap.get('env_steps', 0)}",
        f"updates={snap.get('updates', 0)}",
    ]
    ep = snap.get("episode") or {}
    if ep.get("reward_avg") is not None:
        parts.append(f"reward={ep['reward_avg']:.1f} [{ep['reward_min']:.1f}, {ep['reward_max']:.1f}]")
    for key, value in (snap.get("losses") or {}).items():
        parts.append(f"{key}={_fmt(value)}")
    parts.append(f"steps/s={snap.get('env_steps_per_s', 0.0):.0f} updates/s={snap.get('updates_per_s', 0.0):.0f}")
    parts.append(f"finishes={snap.get('finishes', 0)} timeouts={snap.get('timeouts', 0)}")
    ev = snap.get("eval") or {}
    if ev:
        parts.append(
            f"eval finish={100 * ev.get('finish_rate', 0.0):.0f}% lap={_lap(ev.get('mean_lap_time'))}"
            f" best={_lap(snap.get('best_lap_time'))} ref={_lap(snap.get('reference_lap_time'))}"
        )
        if ev.get("record_lap_time"):
            parts.append(f"record={_lap(ev['record_lap_time'])}")
    rt = snap.get("realtime")
    if rt:
        parts.append(
            f"step={rt['period_ms']:.1f}ms jitter_p99={rt['jitter_p99_ms']:.1f}ms "
            f"timed_out={rt['timeouts_per_1000']:.1f}/1000"
        )
    for w in snap.get("workers") or []:
        parts.append(f"w{w['worker']}:{w['steps_per_s']:.0f}/s,ep={w['episodes']},lag={w['lag']}")
    if snap.get("paused"):
        parts.append("PAUSED")
    return " ".join(parts)


class Dashboard:
    """Shows training progress; ``update(snapshot)`` replaces what is shown.

    ``mode``: ``rich`` (live terminal view), ``plain`` (a log line per update) or
    ``none``; ``auto`` picks rich on a terminal, plain otherwise.
    """

    def __init__(
        self,
        run_name: str,
        budget: tuple[Literal["minutes", "steps"], float],
        mode: Literal["auto", "rich", "plain", "none"] = "auto",
        console: Console | None = None,
    ) -> None:
        if mode == "auto":
            mode = "rich" if sys.stdout.isatty() else "plain"
        self.mode = mode
        self.run_name = run_name
        self.budget = budget
        self.console = console or Console()
        self.snap: dict[str, Any] = {"run": run_name, "fraction": 0.0, "status": "starting"}
        self._live: Live | None = None
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Dashboard:
        if self.mode == "rich":
            kind, total = self.budget
            label = f"{total:g} min" if kind == "minutes" else f"{int(total):,} steps"
            self._progress = Progress(
                TextColumn(f"[bold]{self.run_name}[/] {label}"),
                BarColumn(),
                TaskProgressColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.description}"),
                console=self.console,
            )
            self._task = self._progress.add_task("", total=1.0)
            self._live = Live(get_renderable=self._render, console=self.console, refresh_per_second=4)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None

    # ------------------------------------------------------------------ updates

    def update(self, snap: dict[str, Any], log_line: bool = False) -> None:
        """Replace the shown state; in plain mode print a line when ``log_line``."""
        self.snap = {"run": self.run_name, **snap}
        if self._progress is not None and self._task is not None:
            status = "[yellow]PAUSED[/]" if snap.get("paused") else snap.get("status", "")
            self._progress.update(self._task, completed=min(1.0, snap.get("fraction", 0.0)), description=status)
        elif self.mode == "plain" and log_line:
            print(plain_line(self.snap), flush=True)

    def message(self, text: str) -> None:
        """A one-off line (evaluation result, checkpoint saved, warnings)."""
        if self.mode == "none":
            return
        if self.mode == "rich":
            self.console.print(text)
        else:
            print(f"[{self.run_name}] {time.strftime('%H:%M:%S')} {text}", flush=True)

    # ------------------------------------------------------------------ rich view

    def _render(self) -> Group:
        s = self.snap
        ep = s.get("episode") or {}
        ev = s.get("eval") or {}
        ref = s.get("reference_lap_time")

        left = Table(title="training", show_header=False, box=None, padding=(0, 1))
        left.add_column(style="cyan", no_wrap=True)
        left.add_column(justify="right")
        left.add_row("env steps", f"{s.get('env_steps', 0):,}")
        left.add_row("updates", f"{s.get('updates', 0):,}")
        left.add_row("env steps/s", f"{s.get('env_steps_per_s', 0.0):,.0f}")
        left.add_row("updates/s", f"{s.get('updates_per_s', 0.0):,.0f}")
        left.add_row("episodes", f"{s.get('episodes', 0):,}")
        left.add_row("replay", f"{s.get('replay_size', 0):,}")
        rt = s.get("realtime")
        if rt:  # a game in real time: rtgym's step timing
            left.add_row("step period", f"{rt['period_ms']:.1f} ms")
            left.add_row("jitter p99", f"{rt['jitter_p99_ms']:.1f} ms")
            left.add_row("timed out", f"{rt['timeouts_per_1000']:.1f} / 1000")

        mid = Table(title="episodes", show_header=False, box=None, padding=(0, 1))
        mid.add_column(style="cyan", no_wrap=True)
        mid.add_column(justify="right")
        mid.add_row("reward avg", _fmt(ep.get("reward_avg"), ".2f"))
        mid.add_row("reward max", _fmt(ep.get("reward_max"), ".2f"))
        mid.add_row("reward min", _fmt(ep.get("reward_min"), ".2f"))
        mid.add_row("checkpoints", _fmt(ep.get("checkpoints_avg"), ".2f"))
        mid.add_row("finishes", f"{s.get('finishes', 0):,}")
        mid.add_row("timeouts", f"{s.get('timeouts', 0):,}")

        right = Table(title="learner", show_header=False, box=None, padding=(0, 1))
        right.add_column(style="cyan", no_wrap=True)
        right.add_column(justify="right")
        for key, value in (s.get("losses") or {}).items():
            right.add_row(key, _fmt(value, ".4g"))

        evt = Table(title="evaluation", show_header=False, box=None, padding=(0, 1))
        evt.add_column(style="cyan", no_wrap=True)
        evt.add_column(justify="right")
        evt.add_row("reference lap", _lap(ref))
        if ev.get("record_lap_time"):
            evt.add_row("record lap", _lap(ev["record_lap_time"]))
        evt.add_row("latest lap", _lap(ev.get("mean_lap_time")) + _ratio(ev.get("mean_lap_time"), ref))
        evt.add_row("best lap", _lap(s.get("best_lap_time")) + _ratio(s.get("best_lap_time"), ref))
        if ev.get("record_ratio"):
            evt.add_row("latest / record", f"{ev['record_ratio']:.3f}x")
        evt.add_row("finish rate", "-" if not ev else f"{100 * ev.get('finish_rate', 0.0):.0f}%")
        evt.add_row("evaluations", f"{s.get('evaluations', 0)}")

        grid = Table.grid(padding=(0, 3))
        if self.console.width >= 130:
            grid.add_row(left, mid, right, evt)
        else:  # narrow terminals: two rows of two tables
            grid.add_row(left, mid)
            grid.add_row(right, evt)
        parts: list[RenderableType] = [self._progress, grid] if self._progress is not None else [grid]
        if s.get("workers"):  # a distributed run: one row per rollout worker
            wt = Table(title="workers", box=None, padding=(0, 2))
            for col in ("worker", "steps/s", "received", "episodes", "policy lag (updates)", "last heard", "spooled"):
                wt.add_column(col, justify="right")
            for w in s["workers"]:
                seen = w["seen"]
                wt.add_row(
                    str(w["worker"]), f"{w['steps_per_s']:,.0f}", f"{w['received']:,}", f"{w['episodes']:,}",
                    f"{w['lag']:,}",
                    f"{seen:.1f} s ago" if seen < 1e6 else "-", f"{w['spooled']}",
                )  # fmt: skip
            parts.append(wt)
        if s.get("paused"):
            parts.append(Text.from_markup(f"[bold yellow]PAUSED[/]: `evo-rl resume {self.run_name}` continues"))
        return Group(*parts)
