"""Learning curves of a run from its ``metrics.jsonl`` (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evo_rl.errors import CheckpointError
from evo_rl.train.logger import read_metrics


def _series(records: list[dict[str, Any]], *keys: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for r in records:
        value: Any = r
        for k in keys:
            value = value.get(k) if isinstance(value, dict) else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            xs.append(float(r["env_steps"]))
            ys.append(float(value))
    return xs, ys


def plot_run(metrics_path: str | Path, out: str | Path, title: str | None = None) -> Path:
    """Draw reward, evaluation lap time vs the reference, finish rate, losses,
    entropy terms and throughput of a run into ``out`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter, MaxNLocator

    path = Path(metrics_path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist; has the run logged anything yet?")
    records = [r for r in read_metrics(path) if "env_steps" in r]
    if not records:
        raise CheckpointError(f"{path} holds no metrics yet; wait for the first log interval")
    train = [r for r in records if "episode" in r]
    evals = [r for r in records if "eval" in r]

    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5), constrained_layout=True)
    fig.suptitle(title or path.parent.name, fontsize=14)
    for ax in axes.flat:
        ax.grid(alpha=0.3)
        ax.set_xlabel("environment steps")
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.xaxis.set_major_locator(MaxNLocator(6))

    ax = axes[0, 0]
    x, avg = _series(train, "episode", "reward_avg")
    _, lo = _series(train, "episode", "reward_min")
    _, hi = _series(train, "episode", "reward_max")
    if x:
        ax.plot(x, avg, color="C0", label="average")
        if len(lo) == len(x) == len(hi):
            ax.fill_between(x, lo, hi, color="C0", alpha=0.2, label="min - max")
        ax.legend(loc="lower right")
    ax.set_title("training episode reward")

    ax = axes[0, 1]
    x, lap = _series(evals, "eval", "mean_lap_time")
    if x:
        ax.plot(x, lap, "o-", color="C2", label="evaluation mean lap")
    _, ref = _series(evals, "eval", "reference_lap_time")
    if ref:
        ax.axhline(ref[-1], color="k", ls="--", label=f"reference {ref[-1]:.1f} s")
    if x or ref:
        ax.legend(loc="upper right")
    ax.set_title("lap time (s)")

    ax = axes[0, 2]
    x, rate = _series(evals, "eval", "finish_rate")
    if x:
        ax.plot(x, [100 * v for v in rate], "o-", color="C3", label="evaluation")
    x, tr = _series(train, "episode", "finish_rate")
    if x:
        ax.plot(x, [100 * v for v in tr], color="C1", alpha=0.7, label="training episodes")
    ax.set_ylim(-5, 105)
    if ax.lines:
        ax.legend(loc="lower right")
    ax.set_title("finish rate (%)")

    losses = sorted({k for r in train for k in (r.get("losses") or {})})
    ax = axes[1, 0]
    for i, key in enumerate(k for k in losses if "loss" in k):
        x, y = _series(train, "losses", key)
        ax.plot(x, y, color=f"C{i}", label=key)
    if ax.lines:
        ax.set_yscale("symlog", linthresh=1e-2)
        ax.legend(loc="upper right")
    ax.set_title("losses")

    ax = axes[1, 1]
    x, y = _series(train, "losses", "entropy")
    if x:
        ax.plot(x, y, color="C0", label="entropy")
        ax.set_ylabel("policy entropy", color="C0")
    second = "alpha" if "alpha" in losses else ("std" if "std" in losses else None)
    if second is not None:
        twin = ax.twinx()
        x, y = _series(train, "losses", second)
        twin.plot(x, y, color="C1", label=second)
        twin.set_ylabel(second, color="C1")
        if min(y, default=0.0) > 0:
            twin.set_yscale("log")
    ax.set_title("entropy" + (f" and {second}" if second else ""))

    ax = axes[1, 2]
    x, sps = _series(train, "env_steps_per_s")
    if x:
        ax.plot(x, sps, color="C0", label="env steps/s")
    x, ups = _series(train, "updates_per_s")
    if x:
        ax.plot(x, ups, color="C1", label="updates/s")
    if ax.lines:
        ax.legend(loc="best")
    ax.set_title("throughput")

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
