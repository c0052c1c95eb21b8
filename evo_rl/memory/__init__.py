"""Replay memory: per-car circular streams, each frame stored once, histories rebuilt by index.

Public API::

    layout = ObsLayout.from_space(env.single_observation_space, hist_len, act_buf_len, flavour)
    mem = ReplayMemory(layout, capacity, n_envs, device="cpu", nstep=1, gamma=0.99,
                       prioritized=False, alpha=0.6, beta=0.4, seed=0)
    # or ReplayMemory.from_config(cfg.memory, layout, n_envs, gamma, device, seed)
    mem.add(obs, action, reward, terminated, truncated, infos.get("final_obs"), infos.get("_final_obs"))
    batch = mem.sample(batch_size)       # Batch of torch tensors on `device`
    mem.update_priorities(batch.indices, td_errors)   # prioritised memories
    len(mem)                             # transitions that can be sampled
    mem.get(indices)                     # the transitions at given slots
    mem.end_episodes()                   # after resetting the env outside add()
    mem.save(path); mem.load(path)       # atomic .npz + JSON metadata, no pickle

``Batch`` fields: ``obs`` and ``next_obs`` (the env's tuple layout, or one tensor when
flat; images stay uint8), ``act`` [B, 3], ``rew`` [B] (discounted n-step return),
``terminated`` [B] float, ``discount`` [B] (``gamma^k``, 0 where terminated), ``weights``
[B] (importance sampling; ones when uniform) and ``indices`` [B]. The SAC target is
``rew + discount * V(next_obs)``. ``Batch`` is also what off-policy agents learn from
(``evo_rl.algos.OffPolicyAgent.update``): other producers may leave ``discount``
(then ``gamma``), ``weights`` (then ones) and ``indices`` as None. See docs/memory.md
for the design.
"""

from evo_rl.memory.layout import ObsField, ObsLayout
from evo_rl.memory.replay import Batch, ReplayMemory
from evo_rl.memory.sumtree import SumTree

__all__ = ["Batch", "ObsField", "ObsLayout", "ReplayMemory", "SumTree"]
