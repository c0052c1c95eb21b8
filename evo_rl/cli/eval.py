"""``evo-rl eval RUN_OR_WEIGHTS``: deterministic episodes of a trained policy,
finish rate and lap times against the track's reference lap time and record lap."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from evo_rl.cli.common import print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a policy: finish rate and lap times vs the reference and record lap times",
        description=(
            "Drive deterministic episodes with a policy: a run folder (its policy.safetensors), a policy "
            ".safetensors file, or `pretrained` (the shipped evo-test driver) or `general` (the shipped driver for any "
            "track)."
        ),
    )
    p.add_argument(
        "policy", metavar="RUN_OR_WEIGHTS", help="run folder or name, policy .safetensors, `pretrained` or `general`"
    )
    p.add_argument("--track", "-t", default=None, help="track name or .track file (default: the policy's track)")
    p.add_argument("--episodes", "-e", type=int, default=10, help="episodes, driven at once (default: 10)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--runs-dir", default="runs", help="folder holding run folders (default: runs)")
    p.add_argument(
        "--source",
        choices=("sim", "tm2020", "tmnf"),
        default=None,
        help="drive in the simulator (default), or one episode after the other in TrackMania 2020 or in the "
        "first TMNF instance of game.ports (at game.speed)",
    )
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="section.key=value",
        help="config overrides on the policy's config, e.g. env.max_steps=4800 sim.grip=0.9, or with --source "
        "tm2020 game settings such as game.input=virtual; the observation layout must stay the policy's",
    )
    p.set_defaults(func=_eval)


def policy_path(text: str, runs_dir: str = "runs") -> Path:
    """The policy file named by ``pretrained`` or ``general`` (the shipped policies), a .safetensors path or a
    run folder / name."""
    from evo_rl.errors import CheckpointError
    from evo_rl.train.policy import SHIPPED
    from evo_rl.train.run import resolve_run

    if text in SHIPPED:
        if not SHIPPED[text].is_file():
            raise CheckpointError(f"the shipped policy {SHIPPED[text]} is missing from this installation")
        return SHIPPED[text]
    p = Path(text)
    if p.is_file():
        return p
    if p.suffix == ".safetensors":
        raise CheckpointError(f"policy file {p} does not exist")
    run = resolve_run(text, runs_dir)
    if not run.policy_path.is_file():
        raise CheckpointError(f"run {run.path} has no policy.safetensors yet; it is written at each evaluation")
    return run.policy_path


def load_for_driving(text: str, runs_dir: str, track: str | None) -> tuple[Path, Any]:
    """The policy file ``text`` names and the loaded policy, its config set to ``track`` when given.

    On another track than the policy's, the step limit is that track's (``env.max_steps`` unset: see
    :func:`~evo_rl.envs.core.step_limit`); an ``env.max_steps=N`` override still sets it."""
    from evo_rl.train.loop import configure_torch
    from evo_rl.train.policy import load_policy

    path = policy_path(text, runs_dir)
    policy = load_policy(path)
    if track is not None and track != policy.cfg.env.track:
        policy.cfg.env.track = track
        policy.cfg.env.max_steps = None
    configure_torch(policy.cfg)
    return path, policy


def _game_env(cfg: Any) -> Any:
    """A one-car environment in the game of ``cfg.env.source``, without auto-reset."""
    if cfg.env.source == "tmnf":  # lock-step: the first instance, at game speed
        from evo_rl.games.tmnf.env import make_tmnf_vec_env

        return make_tmnf_vec_env(1, config=cfg, autoreset=False)
    from evo_rl.games.realtime import RealTimeVecEnv, make_realtime_env

    return RealTimeVecEnv(make_realtime_env(config=cfg), autoreset=False)


def _with_overrides(cfg: Any, overrides: list[str], path: Path) -> Any:
    """The policy's config with ``overrides``; one that changes the observation layout is refused."""
    from evo_rl.config import apply_overrides, validate_config
    from evo_rl.dist.common import matters, mismatches
    from evo_rl.errors import ConfigError

    new = validate_config(apply_overrides(cfg.model_dump(mode="json"), overrides), f"{path} + overrides")
    diff = mismatches(matters(new), matters(cfg))
    if diff:
        raise ConfigError(
            "these overrides change what the policy was trained with (its observation layout or algorithm): "
            + "; ".join(sorted(diff)).replace(" there,", " in the policy,")
        )
    return new


def _eval(args: argparse.Namespace) -> int:
    from evo_rl.errors import EvoError
    from evo_rl.train.evaluate import Evaluator

    if args.episodes < 1:
        raise EvoError(f"--episodes must be at least 1, got {args.episodes}")
    path, policy = load_for_driving(args.policy, args.runs_dir, args.track)
    cfg = policy.cfg
    act = lambda obs: policy.actor.act(obs, test=True)  # noqa: E731
    source = [] if args.source is None else ["env.source=" + args.source]
    if source or args.overrides:
        cfg = _with_overrides(cfg, [*source, *(args.overrides or [])], path)
    if args.source in (None, "sim"):
        result = Evaluator(cfg, args.episodes).run(act)
    else:  # one car in the game, its episodes one after the other
        env = _game_env(cfg)
        try:
            result = Evaluator(cfg, args.episodes, env=env).run(act)
        finally:
            env.close()
    out = {
        "policy": str(path),
        "track": cfg.env.track,
        "source": cfg.env.source,
        "episodes": result.episodes,
        "finish_rate": result.finish_rate,
        "lap_times": result.lap_times,
        "mean_lap_time": result.mean_lap_time,
        "best_lap_time": result.best_lap_time,
        "reference_lap_time": result.reference_lap_time,
        "lap_time_ratio": result.lap_time_ratio,
        "record_lap_time": result.record_lap_time,
        "record_ratio": result.record_ratio,
        "mean_progress": result.mean_progress,
        "end_reasons": result.end_reasons,
    }
    if args.json:
        print_json(out)
        return 0
    print(f"policy {path} on {cfg.env.track} ({cfg.env.source}), {result.episodes} episodes")
    print(f"  finish rate    {100 * result.finish_rate:.0f}%  (mean progress {100 * result.mean_progress:.0f}%)")
    if result.lap_times:
        print(f"  lap times      {', '.join(f'{t:.2f}' for t in result.lap_times)} s")
        print(f"  mean lap time  {result.mean_lap_time:.2f} s")
    if result.reference_lap_time:
        print(f"  reference lap  {result.reference_lap_time:.2f} s")
    if result.lap_time_ratio:
        print(f"  ratio          {result.lap_time_ratio:.3f}x the reference")
    if result.record_lap_time:
        print(f"  record lap     {result.record_lap_time:.2f} s")
    if result.record_ratio:
        print(f"  record ratio   {result.record_ratio:.3f}x the record")
    print(f"  episode ends   {result.end_reasons}")
    return 0
