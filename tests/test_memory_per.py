"""Prioritised replay: the sum tree against NumPy prefix sums, sampling proportions, IS weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_memory import FakeVecEnv, check_batch, fill, lidar_layout

from evo_rl.memory import ReplayMemory, SumTree


def test_sumtree_matches_prefix_sums():
    rng = np.random.default_rng(0)
    n = 37
    tree = SumTree(n)
    leaves = np.zeros(n)
    for _ in range(20):
        idx = rng.integers(0, n, 9)  # repeated indices: the last value wins
        val = rng.random(9) * (rng.random(9) < 0.7)
        tree.set(idx, val)
        for i, v in zip(idx, val, strict=True):
            leaves[i] = v
        np.testing.assert_allclose(tree.leaves(), leaves)
        assert tree.total == pytest.approx(leaves.sum())
        u = rng.random(200) * leaves.sum()
        want = np.searchsorted(np.cumsum(leaves), u, side="right")
        got = tree.find(u)
        assert (leaves[got] > 0).all()
        np.testing.assert_array_equal(got, want)
    other = SumTree(n)
    other.rebuild(leaves)
    np.testing.assert_array_equal(other.tree, tree.tree)  # same bits as the incremental updates


def test_sumtree_never_returns_zero_leaves_at_edges():
    tree = SumTree(8)
    tree.set(np.array([2, 5]), np.array([1.0, 3.0]))
    got = tree.find(np.array([0.0, 1.0, 3.999999, 4.0, 4.5]))  # u at and past the total
    np.testing.assert_array_equal(got, [2, 5, 5, 5, 5])


@pytest.fixture(scope="module")
def per_memory():
    n = 4
    env = FakeVecEnv(n, 3, 2, seed=2)
    mem = ReplayMemory(lidar_layout(3, 2), 20 * n, n, nstep=2, gamma=0.9, prioritized=True, alpha=0.7, beta=0.5, seed=0)
    fill(mem, env, 30)
    return mem, env


def test_prioritised_sampling_proportions_and_weights(per_memory):
    mem, env = per_memory
    valid = np.flatnonzero(mem._valid)
    rng = np.random.default_rng(1)
    td = rng.uniform(0.0, 3.0, valid.size)
    td[:3] = 0.0  # only eps left: almost never drawn
    mem.update_priorities(torch.from_numpy(valid), torch.from_numpy(td))
    p = (np.abs(td) + 1e-6) ** 0.7
    prob = p / p.sum()
    counts = np.zeros(mem.capacity)
    draws = 0
    for _ in range(400):
        b = mem.sample(256)
        i = b.indices.numpy()
        np.add.at(counts, i, 1)
        draws += i.size
        want_w = (valid.size * mem._tree.get(i) / mem._tree.total) ** -0.5
        np.testing.assert_allclose(b.weights.numpy(), want_w / want_w.max(), rtol=1e-5)
    assert counts[~mem._valid].sum() == 0
    expected = prob * draws
    observed = counts[valid]
    big = expected > 5
    chi2 = ((observed[big] - expected[big]) ** 2 / expected[big]).sum()
    dof = big.sum() - 1
    assert chi2 < dof + 5 * np.sqrt(2 * dof)
    assert observed[~big].sum() <= expected[~big].sum() + 5 * np.sqrt(expected[~big].sum() + 1)
    check_batch(mem, env, mem.sample(64), 2, 0.9)


def test_new_transitions_get_max_priority_and_stale_updates_are_skipped(per_memory):
    mem, env = per_memory
    valid = np.flatnonzero(mem._valid)
    mem.update_priorities(valid[:1], np.array([7.0]))
    assert mem._max_prio == pytest.approx(7.0 + 1e-6)
    before = set(valid.tolist())
    fill(mem, env, 1)
    new = np.array(sorted(set(np.flatnonzero(mem._valid).tolist()) - before))
    assert new.size > 0
    np.testing.assert_allclose(mem._tree.get(new), (7.0 + 1e-6) ** 0.7)
    gone = np.array(sorted(before - set(np.flatnonzero(mem._valid).tolist())))
    assert gone.size > 0
    np.testing.assert_array_equal(mem._tree.get(gone), 0.0)
    total = mem._tree.total
    mem.update_priorities(gone, np.full(gone.size, 100.0))  # overwritten since sampled: ignored
    assert mem._tree.total == total
    np.testing.assert_allclose(mem._tree.total, (mem._prio[mem._valid] ** 0.7).sum())
