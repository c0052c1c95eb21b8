"""The replay memory fed by the real vector environment gives back exactly what the env emitted."""

from __future__ import annotations

import numpy as np
import pytest

from evo_rl.envs import VecTrackEnv, resolve_config
from evo_rl.memory import ObsLayout, ReplayMemory


def key(entries, act) -> bytes:
    return b"".join(np.ascontiguousarray(e).tobytes() for e in entries) + np.asarray(act).tobytes()


@pytest.mark.parametrize("flavour", ["lidar", "full"])
def test_memory_reproduces_env_transitions(flavour, straight):
    n = 3
    cfg = resolve_config(None, **{"camera.width": 16, "camera.height": 12, "sim.threads": 1})
    cfg = resolve_config(cfg, hist_len=3, act_buf_len=2, max_steps=13, n_envs=n, flavour=flavour)
    env = VecTrackEnv(cfg, track=straight)
    layout = ObsLayout.from_space(env.single_observation_space, 3, 2, flavour)
    mem = ReplayMemory(layout, 200 * n, n)
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    reference = {}
    ended = 0
    for _ in range(40):
        act = np.clip(rng.uniform(-1.3, 1.3, (n, 3)), -1, 1).astype(np.float32)
        act[:, 0] = 1.0
        nxt, rew, term, trunc, info = env.step(act)
        mem.add(obs, act, rew, term, trunc, info.get("final_obs"), info.get("_final_obs"))
        done = term | trunc
        ended += int(done.sum())
        for c in range(n):
            after = info["final_obs"] if done[c] else nxt
            entry = tuple(e[c] for e in obs)
            reference[key(entry, act[c])] = (tuple(e[c] for e in after), rew[c], term[c])
        obs = nxt
    assert ended >= n  # episodes ended and restarted: final observations and history padding are exercised
    valid = np.flatnonzero(mem._valid)
    assert len(mem) == valid.size == len(reference) - int((~done).sum())
    batch = mem.get(valid)
    for r in range(valid.size):
        entry = tuple(t[r].numpy() for t in batch.obs)
        after, rew, term = reference[key(entry, batch.act[r].numpy())]
        for got, want in zip(batch.next_obs, after, strict=True):
            np.testing.assert_array_equal(got[r].numpy(), want)
        assert batch.rew[r].item() == pytest.approx(float(rew))
        assert batch.terminated[r].item() == float(term)
