"""``evo-rl sweep``: a grid or random search over config overrides and seeds, run by Ray Tune.

Every trial is an ordinary run folder (``<runs_dir>/<sweep>/<trial>``: config, checkpoints,
metrics, policy) trained by :class:`~evo_rl.train.loop.Trainer` for the sweep's minutes, then
evaluated; Tune schedules the trials on a local Ray instance or the cluster at ``address``. The
sweep folder gets ``results.csv`` / ``results.json`` (one row per trial: its parameters, seed,
finish rate, lap-time ratio, score) and ``results.png`` (the metric against each swept parameter).

Search spaces, as ``KEY=SPEC`` strings:

- ``--grid algo.lr=1e-3,3e-4``: every listed value (grids multiply);
- ``--random algo.lr=loguniform:1e-4:1e-3``, ``uniform:LO:HI``, ``int:LO:HI``, ``choice:A,B``:
  ``--samples`` draws per grid point;
- ``--seeds 0,1,2``: each configuration once per seed (``env.seed`` and ``train.seed``).
"""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path
from typing import Any

import yaml

from evo_rl.config import EvoConfig, apply_overrides, config_to_yaml, validate_config
from evo_rl.dist.common import DistError
from evo_rl.dist.ray_workers import import_ray

METRICS = ("score", "finish_rate", "lap_time_ratio", "mean_progress", "mean_reward")
LOWER_IS_BETTER = {"lap_time_ratio"}


def _value(text: str) -> Any:
    """A value as an override reads it (YAML), numbers such as ``1e-3`` as numbers."""
    v = yaml.safe_load(text)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return v
    return v


def parse_grid(specs: list[str]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for spec in specs:
        key, _, values = spec.partition("=")
        if not key or not values:
            raise DistError(f"--grid {spec!r}: write KEY=V1,V2,... (for example algo.lr=1e-3,3e-4)")
        out[key.strip()] = [_value(v) for v in values.split(",")]
    return out


def parse_random(specs: list[str]) -> dict[str, tuple[str, list[Any]]]:
    """``KEY=KIND:ARGS`` -> {key: (kind, args)}, kinds uniform, loguniform, int, choice."""
    out: dict[str, tuple[str, list[Any]]] = {}
    for spec in specs:
        key, _, rest = spec.partition("=")
        kind, _, args = rest.partition(":")
        if kind == "choice" and args:
            out[key.strip()] = (kind, [_value(v) for v in args.split(",")])
            continue
        bounds = args.split(":")
        try:
            lo, hi = (float(b) for b in bounds)
        except ValueError:
            lo = hi = math.nan
        ok = kind in ("uniform", "loguniform", "int") and len(bounds) == 2 and lo < hi
        if not key or not ok or (kind == "loguniform" and lo <= 0):
            raise DistError(
                f"--random {spec!r}: write KEY=uniform:LO:HI, loguniform:LO:HI (LO > 0), int:LO:HI or "
                "choice:A,B,... (for example algo.lr=loguniform:1e-4:1e-3)"
            )
        out[key.strip()] = (kind, [lo, hi])
    return out


def trial_overrides(params: dict[str, Any]) -> list[str]:
    """A trial's parameters as ``section.key=value`` overrides (the seed sets env.seed and train.seed)."""
    out = [f"{k}={json.dumps(v)}" for k, v in sorted(params.items()) if k != "seed"]
    if "seed" in params:
        out += [f"env.seed={int(params['seed'])}", f"train.seed={int(params['seed'])}"]
    return out


def check_space(cfg: EvoConfig, grid: dict[str, list[Any]], rand: dict[str, tuple[str, list[Any]]]) -> None:
    """Every grid value and both ends of every range must make a valid config (a clear error before Ray)."""
    data = yaml.safe_load(config_to_yaml(cfg))
    for key, values in grid.items():
        for v in values:
            validate_config(apply_overrides(data, [f"{key}={json.dumps(v)}"]), f"--grid {key}={v}")
    for key, (kind, args) in rand.items():
        for v in args:
            v = int(v) if kind == "int" else v
            validate_config(apply_overrides(data, [f"{key}={json.dumps(v)}"]), f"--random {key} ({kind} {v})")


def _trial(params: dict[str, Any], base: str, sweep_dir: str, minutes: float) -> dict[str, Any]:
    """One trial, in a Ray worker process: a run folder trained for ``minutes``, then evaluated."""
    from evo_rl.train.loop import Trainer
    from evo_rl.train.run import create_run

    overrides = trial_overrides(params)
    cfg = validate_config(apply_overrides(yaml.safe_load(base), overrides), "the trial's config")
    cfg.train.minutes = minutes
    cfg.train.dashboard = "none"
    cfg.train.runs_dir = sweep_dir
    name = "_".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in sorted(params.items()))[:80] or "trial"
    run = create_run(Path(sweep_dir), f"{name}-{time.strftime('%H%M%S')}-{int(time.time_ns() % 1_000_000):06d}", cfg)
    trainer = Trainer(cfg, run, resume=False, minutes=minutes)
    c = trainer.train()
    ev = trainer.last_eval
    result: dict[str, Any] = {"run": str(run.path), "env_steps": c.env_steps, "updates": c.updates}
    for m in METRICS:
        result[m] = getattr(ev, m, None) if ev is not None else None
    return result


def _report(result: dict[str, Any]) -> None:
    from ray import tune

    report = getattr(tune, "report", None)
    if report is None:  # older Ray
        from ray import train as ray_train

        report = ray_train.report
    report({k: (math.nan if v is None else v) for k, v in result.items()})


def _trainable(config: dict[str, Any]) -> None:
    params = {k: v for k, v in config.items() if not k.startswith("_")}
    _report(_trial(params, config["_base"], config["_dir"], config["_minutes"]))


def sweep(
    cfg: EvoConfig,
    name: str,
    grid: dict[str, list[Any]],
    rand: dict[str, tuple[str, list[Any]]],
    seeds: list[int],
    samples: int,
    minutes: float,
    metric: str = "score",
    concurrent: int | None = None,
    address: str | None = None,
    cpus_per_trial: float = 1.0,
) -> dict[str, Any]:
    """Run the sweep; returns {"dir", "metric", "rows"} with one row per trial, best first."""
    if metric not in METRICS:
        raise DistError(f"--metric {metric!r}: use one of {', '.join(METRICS)}")
    if samples < 1 or minutes <= 0:
        raise DistError("--samples must be >= 1 and --minutes > 0")
    check_space(cfg, grid, rand)
    ray = import_ray()
    from ray import tune

    sweep_dir = Path(cfg.train.runs_dir).resolve() / name
    if sweep_dir.exists() and any(sweep_dir.iterdir()):
        raise DistError(f"sweep folder {sweep_dir} exists and is not empty; pick another --name")
    sweep_dir.mkdir(parents=True, exist_ok=True)
    space: dict[str, Any] = {k: tune.grid_search(v) for k, v in grid.items()}
    for key, (kind, args) in rand.items():
        if kind == "choice":
            space[key] = tune.choice(args)
        elif kind == "int":
            space[key] = tune.randint(int(args[0]), int(args[1]) + 1)
        else:
            space[key] = getattr(tune, kind)(args[0], args[1])
    if seeds:
        space["seed"] = tune.grid_search(list(seeds))
    space.update({"_base": config_to_yaml(cfg), "_dir": str(sweep_dir), "_minutes": float(minutes)})
    started = not ray.is_initialized()
    if started:
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        ray.init(address=address, **kwargs)
    try:
        tuner = tune.Tuner(
            tune.with_resources(_trainable, {"cpu": cpus_per_trial}),
            param_space=space,
            tune_config=tune.TuneConfig(num_samples=samples, max_concurrent_trials=concurrent),
            run_config=_run_config(tune, sweep_dir / "tune", name),
        )
        results = tuner.fit()
    finally:
        if started:
            ray.shutdown()
    swept = [*grid, *rand, *(["seed"] if seeds else [])]
    rows = []
    for i in range(len(results)):
        r = results[i]
        row: dict[str, Any] = {k: (r.config or {}).get(k) for k in swept}
        metrics = r.metrics or {}
        for m in (*METRICS, "env_steps", "updates", "run"):
            v = metrics.get(m)
            row[m] = None if isinstance(v, float) and math.isnan(v) else v
        row["error"] = None if r.error is None else str(r.error).splitlines()[0][:300]
        rows.append(row)
    sign = 1 if metric in LOWER_IS_BETTER else -1
    rows.sort(key=lambda row: (row[metric] is None, sign * (row[metric] or 0.0)))
    _write_results(sweep_dir, swept, rows, metric)
    return {"dir": str(sweep_dir), "metric": metric, "params": swept, "rows": rows}


def _run_config(tune: Any, path: Path, name: str) -> Any:
    kwargs = {"storage_path": str(path), "name": name, "verbose": 0}
    run_config: Any = getattr(tune, "RunConfig", None)
    if run_config is None:  # older Ray
        from ray.train import RunConfig

        run_config = RunConfig
    return run_config(**kwargs)


def _write_results(folder: Path, params: list[str], rows: list[dict[str, Any]], metric: str) -> None:
    (folder / "results.json").write_text(json.dumps({"metric": metric, "rows": rows}, indent=1))
    fields = [*params, *METRICS, "env_steps", "updates", "run", "error"]
    with open(folder / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    plot_results(folder / "results.png", params, rows, metric)


def plot_results(path: Path, params: list[str], rows: list[dict[str, Any]], metric: str) -> None:
    """The metric of every trial against each swept parameter (one panel each)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [p for p in params if p != "seed"] or params or ["trial"]
    fig, axes = plt.subplots(1, len(shown), figsize=(4.5 * len(shown), 3.6), squeeze=False)
    for ax, p in zip(axes[0], shown, strict=True):
        pts = [(row.get(p, i), row[metric]) for i, row in enumerate(rows) if row[metric] is not None]
        numeric = all(isinstance(x, int | float) and not isinstance(x, bool) for x, _ in pts)
        labels = sorted({str(x) for x, _ in pts})
        xs = [x if numeric else labels.index(str(x)) for x, _ in pts]
        ax.scatter(xs, [y for _, y in pts], alpha=0.8)
        if not numeric:
            ax.set_xticks(range(len(labels)), labels)
        elif pts and min(xs) > 0 and max(xs) / min(xs) > 20:
            ax.set_xscale("log")
        ax.set_xlabel(p)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{path.parent.name}: {metric} per trial")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
