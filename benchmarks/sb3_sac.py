"""Stable-Baselines3 SAC on the same environment and wall-clock budget as ``evo-rl train``.

SB3 drives the same ``VecTrackEnv`` (same cars, track, rewards, episode rules),
flattened to one Box observation because SB3's MLP policies need one, with the
same update ratio (``train.updates_per_step`` gradient steps per car-step),
batch size, learning rates, network sizes and random start steps as EVO RL's
config. Deterministic evaluations every ``--eval-every`` minutes use EVO RL's
evaluator. Prints one JSON object::

    python benchmarks/sb3_sac.py --minutes 30 [section.key=value ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np
from stable_baselines3 import SAC
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv

from evo_rl.config import EvoConfig, load_config
from evo_rl.envs.vector import VecTrackEnv
from evo_rl.train.evaluate import Evaluator
from evo_rl.train.loop import configure_torch


class SB3VecTrackEnv(VecEnv):
    """EVO RL's vector environment behind SB3's ``VecEnv`` interface (flat observations)."""

    def __init__(self, cfg: EvoConfig) -> None:
        self.env = VecTrackEnv(cfg)
        super().__init__(self.env.num_envs, self.env.single_observation_space, self.env.single_action_space)
        self._actions: np.ndarray | None = None

    def reset(self) -> np.ndarray:
        obs, _ = self.env.reset(seed=self._seeds[0] if self._seeds and self._seeds[0] is not None else None)
        self._reset_seeds()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, np.float32)

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        obs, reward, terminated, truncated, infos = self.env.step(self._actions)
        done = terminated | truncated
        out: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for i in np.flatnonzero(done):
            out[i]["terminal_observation"] = infos["final_obs"][i]
            out[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
        return obs, reward, done, out

    def close(self) -> None:
        self.env.close()

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        return [getattr(self.env, attr_name)] * len(self._get_indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        setattr(self.env, attr_name, value)

    def env_method(self, method_name: str, *args: Any, indices: Any = None, **kwargs: Any) -> list[Any]:
        return [getattr(self.env, method_name)(*args, **kwargs)] * len(self._get_indices(indices))

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return [False] * len(self._get_indices(indices))


class Budget(BaseCallback):
    """Stops SB3 after ``minutes`` of wall-clock time; evaluates every ``eval_every`` minutes."""

    def __init__(self, minutes: float, eval_every: float, evaluator: Evaluator) -> None:
        super().__init__()
        self.minutes, self.eval_every, self.evaluator = minutes, eval_every, evaluator
        self.start = time.monotonic()
        self.next_eval = 60.0 * eval_every
        self.evals: list[dict[str, Any]] = []

    def evaluate(self) -> dict[str, Any]:
        result = self.evaluator.run(lambda obs: self.model.predict(obs, deterministic=True)[0])
        record = {"minutes": (time.monotonic() - self.start) / 60.0, "env_steps": self.num_timesteps}
        record |= {k: getattr(result, k) for k in ("finish_rate", "mean_lap_time", "lap_time_ratio", "mean_progress")}
        self.evals.append(record)
        print(json.dumps(record), file=sys.stderr, flush=True)
        return record

    def _on_step(self) -> bool:
        elapsed = time.monotonic() - self.start
        if elapsed >= self.next_eval:
            self.evaluate()
            self.next_eval = elapsed + 60.0 * self.eval_every
        return elapsed < 60.0 * self.minutes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="wall-clock budget (default: 30)")
    parser.add_argument("--eval-every", type=float, default=1.0, help="minutes between evaluations (default: 1)")
    parser.add_argument("--episodes", type=int, default=10, help="episodes per evaluation (default: 10)")
    parser.add_argument("overrides", nargs="*", help="EVO RL config overrides, e.g. env.n_envs=8")
    args = parser.parse_args(argv)

    cfg = load_config(None, [*args.overrides, "env.flat=true"])
    configure_torch(cfg)  # the same torch threads and seed as evo-rl train
    sac, n_envs = cfg.algo.sac, cfg.env.n_envs
    env = SB3VecTrackEnv(cfg)
    evaluator = Evaluator(cfg, args.episodes)
    model = SAC(
        "MlpPolicy",
        env,
        learning_rate=sac.lr_actor,
        buffer_size=cfg.memory.capacity,
        learning_starts=cfg.train.start_steps // n_envs,
        batch_size=cfg.memory.batch_size,
        tau=sac.tau,
        gamma=sac.gamma,
        train_freq=1,
        gradient_steps=max(1, round(n_envs * cfg.train.updates_per_step)),
        ent_coef="auto" if sac.learn_entropy else sac.alpha,
        policy_kwargs={"net_arch": list(sac.hidden)},
        seed=cfg.train.seed,
        device="cpu",
        verbose=0,
    )
    budget = Budget(args.minutes, args.eval_every, evaluator)
    model.learn(total_timesteps=10**12, callback=budget)
    final = budget.evaluate()
    first = next((e["minutes"] for e in budget.evals if e["finish_rate"] > 0), None)
    print(
        json.dumps(
            {
                "algo": "sb3-sac",
                "minutes": args.minutes,
                "env_steps": int(model.num_timesteps),
                "updates": int(model._n_updates),
                "first_finish_minutes": first,
                "finish_rate": final["finish_rate"],
                "mean_lap_time": final["mean_lap_time"],
                "reference_lap_time": evaluator.reference_lap_time,
                "lap_time_ratio": final["lap_time_ratio"],
                "evaluations": budget.evals,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
