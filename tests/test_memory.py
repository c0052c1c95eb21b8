"""Replay memory against a naive reference: full observations kept per car, step by step."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

from evo_rl.errors import CheckpointError, EvoError
from evo_rl.memory import ObsField, ObsLayout, ReplayMemory

BEAMS = 5


class FakeVecEnv:
    """N cars with random episode lengths and TMRL-style observations built naively.

    Each car's speed entry is a unique id of the observation, so a sampled
    observation can be matched to the reference. Every step is recorded per car as
    a transition ``(obs, act, rew, term, trunc, next_obs)``; ``elements[car]`` lists
    what the memory should append per car: a transition id, or -1 for a final observation.
    """

    def __init__(self, n: int, hist: int, act_buf: int, seed: int, flat: bool = False, image: bool = False):
        self.n, self.hist, self.act_buf, self.flat, self.image = n, hist, act_buf, flat, image
        self.rng = np.random.default_rng(seed)
        self.next_id = 0
        self.frames: list[list[np.ndarray]] = [[] for _ in range(n)]  # this episode's frames, per car
        self.speeds: list[list[float]] = [[] for _ in range(n)]
        self.actions: list[list[np.ndarray]] = [[] for _ in range(n)]
        self.length = np.zeros(n, int)  # steps of the running episode
        self.limit = self.rng.integers(1, 12, n)
        self.transitions: dict[int, dict] = {}  # by id of the observation the transition starts in
        self.elements: list[list[int]] = [[] for _ in range(n)]
        self.epi_t: list[list[int]] = [[] for _ in range(n)]
        self.obs = [self._new_frame(c) for c in range(n)]

    def _frame(self) -> np.ndarray:
        if self.image:
            return self.rng.integers(0, 256, (3, 4), dtype=np.uint8)
        return self.rng.normal(size=BEAMS).astype(np.float32)

    def _new_frame(self, c: int) -> tuple:
        self.frames[c].append(self._frame())
        self.speeds[c].append(float(self.next_id))
        self.next_id += 1
        return self._observe(c)

    def _observe(self, c: int) -> tuple:
        fr = self.frames[c]
        stack = np.stack([fr[max(0, len(fr) - self.hist + i)] for i in range(self.hist)])  # oldest first, padded
        acts = self.actions[c]
        prev = [
            acts[len(acts) - self.act_buf + i] if len(acts) - self.act_buf + i >= 0 else np.zeros(3, np.float32)
            for i in range(self.act_buf)
        ]
        speed = np.array([self.speeds[c][-1]], np.float32)
        if self.flat:
            return (np.concatenate([speed, stack.ravel(), *prev]).astype(np.float32),)
        if self.image:
            return (speed, np.array([3.0], np.float32), stack, *prev)
        return (speed, stack, *prev)

    def batched(self, per_car: list[tuple]) -> tuple | np.ndarray:
        entries = tuple(np.stack([o[e] for o in per_car]) for e in range(len(per_car[0])))
        return entries[0] if self.flat else entries

    def step(self):
        obs = self.batched(self.obs)
        act = self.rng.uniform(-1, 1, (self.n, 3)).astype(np.float32)
        rew = self.rng.normal(size=self.n).astype(np.float32)
        self.length += 1
        ended = self.length >= self.limit
        term = ended & (self.rng.random(self.n) < 0.5)
        trunc = ended & ~term
        final = [None] * self.n
        for c in range(self.n):
            oid = int(self.obs[c][0][0])
            self.epi_t[c].append(int(self.length[c] - 1))
            self.actions[c].append(act[c])
            nxt = self._new_frame(c)
            self.transitions[oid] = dict(
                obs=self.obs[c], act=act[c], rew=rew[c], term=term[c], trunc=trunc[c], next=nxt
            )
            self.elements[c].append(oid)
            if ended[c]:
                final[c] = nxt
                self.elements[c].append(-1)
                self.epi_t[c].append(int(self.length[c]))
                self.frames[c], self.speeds[c], self.actions[c] = [], [], []
                self.length[c] = 0
                self.limit[c] = self.rng.integers(1, 12)
                self.obs[c] = self._new_frame(c)
            else:
                self.obs[c] = nxt
        filler = [f if f is not None else self.obs[c] for c, f in enumerate(final)]
        return obs, act, rew, term, trunc, self.batched(filler), ended.copy()

    # reference answers

    def nstep(self, tid: int, nstep: int, gamma: float):
        """(return, next_obs, terminated, k) of the n-step transition starting at ``tid``."""
        ids = next(el for el in self.elements if tid in el)
        pos = ids.index(tid)
        ret, k, tr = 0.0, 0, self.transitions[tid]
        while k < nstep:
            tr = self.transitions[ids[pos + k]]
            ret += gamma**k * float(tr["rew"])
            k += 1
            if self.ends(ids[pos + k - 1]):
                break
        return ret, tr["next"], bool(tr["term"]), k

    def sampleable(self, rows: int, lookback: int, nstep: int) -> set[int]:
        """Transition ids whose n-step window is complete and whose history is still stored."""
        out = set()
        for c in range(self.n):
            el = self.elements[c]
            for e, tid in enumerate(el):
                if tid < 0:
                    continue
                k = 1
                while k < nstep and e + k < len(el) and not self.ends(el[e + k - 1]):
                    k += 1
                complete = e + k < len(el) and (k == nstep or self.ends(el[e + k - 1]))
                if complete and e - min(lookback, self.epi_t[c][e]) >= len(el) - rows:
                    out.add(tid)
        return out

    def ends(self, tid: int) -> bool:
        tr = self.transitions[tid]
        return bool(tr["term"] or tr["trunc"] or tr.get("cut"))

    def reset_all(self) -> None:
        """Restart every car without a final observation (as after resuming a run): each
        car's newest stored observation closes its episode and starts no transition."""
        for c in range(self.n):
            el = self.elements[c]
            if el and el[-1] >= 0:
                if len(el) > 1 and el[-2] >= 0:
                    self.transitions[el[-2]]["cut"] = True
                el[-1] = -1
            self.frames[c], self.speeds[c], self.actions[c] = [], [], []
            self.length[c] = 0
            self.obs[c] = self._new_frame(c)


def lidar_layout(hist: int, act_buf: int) -> ObsLayout:
    return ObsLayout((ObsField("speed", (1,), "float32"), ObsField("lidar", (BEAMS,), "float32", hist)), act_buf)


def fill(mem: ReplayMemory, env: FakeVecEnv, steps: int) -> None:
    for _ in range(steps):
        obs, act, rew, term, trunc, final, mask = env.step()
        mem.add(obs, act, rew, term, trunc, final, mask)


def check_batch(mem: ReplayMemory, env: FakeVecEnv, batch, nstep: int, gamma: float) -> None:
    """Every row of ``batch`` equals the reference transition named by its speed id."""
    flat = env.flat
    obs = [batch.obs] if flat else list(batch.obs)
    nxt = [batch.next_obs] if flat else list(batch.next_obs)
    for r in range(batch.act.shape[0]):
        tid = int(obs[0][r, 0])
        tr = env.transitions[tid]
        for got, want in zip(obs, tr["obs"], strict=True):
            np.testing.assert_array_equal(got[r].numpy(), want)
        np.testing.assert_array_equal(batch.act[r].numpy(), tr["act"])
        ret, next_obs, term, k = env.nstep(tid, nstep, gamma)
        for got, want in zip(nxt, next_obs, strict=True):
            np.testing.assert_array_equal(got[r].numpy(), want)
        assert batch.rew[r].item() == pytest.approx(ret, rel=1e-5, abs=1e-5)
        assert batch.terminated[r].item() == float(term)
        assert batch.discount[r].item() == pytest.approx(0.0 if term else gamma**k, rel=1e-6)


@pytest.mark.parametrize("nstep", [1, 3])
@pytest.mark.parametrize("hist,act_buf", [(4, 2), (1, 0), (3, 5)])
def test_every_transition_matches_reference_across_wraparound(nstep, hist, act_buf):
    n, rows, gamma = 5, 23, 0.9
    env = FakeVecEnv(n, hist, act_buf, seed=hist * 10 + act_buf + nstep)
    layout = lidar_layout(hist, act_buf)
    mem = ReplayMemory(layout, rows * n, n, nstep=nstep, gamma=gamma, seed=1)
    for _block in range(6):  # the streams wrap around several times
        fill(mem, env, 9)
        want = env.sampleable(rows, layout.lookback, nstep)
        valid = np.flatnonzero(mem._valid)
        assert len(mem) == len(valid) == len(want)
        batch = mem.get(valid)
        assert {int(i) for i in batch.obs[0][:, 0]} == want
        check_batch(mem, env, batch, nstep, gamma)
        check_batch(mem, env, mem.sample(64), nstep, gamma)


@pytest.mark.parametrize("steps", [12, 80])  # streams partly written, and wrapped around
def test_uniform_sampling_is_uniform_over_valid_transitions(steps):
    n = 4
    env = FakeVecEnv(n, 3, 2, seed=steps)
    mem = ReplayMemory(lidar_layout(3, 2), 40 * n, n, nstep=2, seed=7)
    fill(mem, env, steps)
    counts = np.zeros(mem.capacity)
    for _ in range(300):
        np.add.at(counts, mem.sample(256).indices.numpy(), 1)
    assert counts[~mem._valid].sum() == 0
    observed = counts[mem._valid]
    expected = counts.sum() / observed.size
    chi2 = ((observed - expected) ** 2 / expected).sum()
    dof = observed.size - 1
    assert chi2 < dof + 5 * np.sqrt(2 * dof)


def test_batch_on_another_device():
    n = 2
    env = FakeVecEnv(n, 4, 2, seed=3)
    mem = ReplayMemory(lidar_layout(4, 2), 30 * n, n, device="meta")
    fill(mem, env, 20)
    batch = mem.sample(8)
    assert all(t.device.type == "meta" for t in (*batch.obs, *batch.next_obs, batch.act, batch.rew, batch.weights))
    assert [tuple(t.shape) for t in batch.obs] == [(8, 1), (8, 4, BEAMS), (8, 3), (8, 3)]
    assert batch.discount.shape == (8,) and batch.indices.device.type == "cpu"


def test_image_and_flat_layouts():
    n, gamma = 3, 0.99
    env = FakeVecEnv(n, 4, 2, seed=5, image=True)
    layout = ObsLayout(
        (ObsField("speed", (1,), "float32"), ObsField("gear", (1,), "float32"), ObsField("images", (3, 4), "uint8", 4)),
        2,
    )
    mem = ReplayMemory(layout, 40 * n, n, nstep=2, gamma=gamma)
    fill(mem, env, 60)
    batch = mem.sample(50)
    assert batch.obs[2].dtype == torch.uint8 and batch.obs[2].shape == (50, 4, 3, 4)
    check_batch(mem, env, batch, 2, gamma)

    env = FakeVecEnv(n, 3, 2, seed=6, flat=True)
    space = spaces.Box(-np.inf, np.inf, (1 + 3 * BEAMS + 6,), np.float32)
    mem = ReplayMemory(ObsLayout.from_space(space, 3, 2), 30 * n, n)
    fill(mem, env, 50)
    batch = mem.sample(40)
    assert batch.obs.shape == (40, 1 + 3 * BEAMS + 6)
    check_batch(mem, env, batch, 1, 0.99)


def test_gymnasium_object_final_obs():
    n = 4
    env = FakeVecEnv(n, 2, 1, seed=9)
    mem = ReplayMemory(lidar_layout(2, 1), 30 * n, n)
    for _ in range(40):
        obs, act, rew, term, trunc, final, mask = env.step()
        per_car = np.empty(n, dtype=object)
        for c in np.flatnonzero(mask):
            per_car[c] = tuple(e[c] for e in final)
        mem.add(obs, act, rew, term, trunc, per_car, mask)
    check_batch(mem, env, mem.get(np.flatnonzero(mem._valid)), 1, 0.99)


def test_layout_from_space_and_config():
    lidar = spaces.Tuple(
        [spaces.Box(0, 1, (1,)), spaces.Box(0, 1, (4, 19)), spaces.Box(-1, 1, (3,)), spaces.Box(-1, 1, (3,))]
    )
    lay = ObsLayout.from_space(lidar, 4, 2, "lidar")
    assert [f.name for f in lay.fields] == ["speed", "lidar"]
    assert lay.fields[1].hist_len == 4 and lay.fields[1].shape == (19,) and lay.act_buf_len == 2 and lay.lookback == 3
    full = spaces.Tuple(
        [spaces.Box(0, 1, (1,))] * 3 + [spaces.Box(0, 255, (4, 64, 64), np.uint8)] + [spaces.Box(-1, 1, (3,))] * 2
    )
    lay = ObsLayout.from_space(full, 4, 2, "full")
    assert lay.fields[3] == ObsField("images", (64, 64), "uint8", 4)
    assert ObsLayout.from_dict(lay.to_dict()) == lay
    with pytest.raises(EvoError, match="does not match"):
        ObsLayout.from_space(full, 4, 2, "lidar")


def test_errors_and_capacity_refused():
    lay = lidar_layout(4, 2)
    with pytest.raises(EvoError, match=r"memory\.capacity=.*needs .* but only"):
        ReplayMemory(lay, 10**15, 16)
    with pytest.raises(EvoError, match=r"memory\.capacity"):
        ReplayMemory(lay, 20, 4)
    mem = ReplayMemory(lay, 200, 2)
    with pytest.raises(EvoError, match="no complete transition"):
        mem.sample(4)
    env = FakeVecEnv(2, 4, 2, seed=0)
    obs, act, rew, term, trunc, final, mask = env.step()
    with pytest.raises(EvoError, match="'lidar' should have shape"):
        mem.add((obs[0], obs[1][:, :2], *obs[2:]), act, rew, term, trunc, final, mask)
    with pytest.raises(EvoError, match="no final_obs"):
        mem.add(obs, act, rew, np.ones(2, bool), trunc)


def test_save_load_round_trip_and_resume(tmp_path):
    n, nstep = 3, 2
    for prioritized in (False, True):
        env = FakeVecEnv(n, 4, 2, seed=11)
        kw = dict(nstep=nstep, gamma=0.95, prioritized=prioritized, seed=3)
        mem = ReplayMemory(lidar_layout(4, 2), 25 * n, n, **kw)
        fill(mem, env, 70)
        if prioritized:
            b = mem.sample(16)
            mem.update_priorities(b.indices, torch.rand(16))
        path = tmp_path / f"replay{int(prioritized)}.npz"
        mem.save(path)
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(path.name)] == [path.name]
        other = ReplayMemory(lidar_layout(4, 2), 25 * n, n, **{**kw, "seed": 99})
        other.load(path)
        assert len(other) == len(mem)
        for _ in range(3):
            a, b = mem.sample(32), other.sample(32)
            for x, y in zip(a, b, strict=True):
                for u, v in zip(x if isinstance(x, tuple) else [x], y if isinstance(y, tuple) else [y], strict=True):
                    assert torch.equal(u, v)
        fill(mem, env, 3)
        if prioritized:  # resuming continues with the same streams and priorities
            check_batch(mem, env, mem.sample(32), nstep, 0.95)


def test_end_episodes_and_resume(tmp_path):
    n, nstep, gamma = 4, 3, 0.9
    env = FakeVecEnv(n, 3, 2, seed=21)
    mem = ReplayMemory(lidar_layout(3, 2), 30 * n, n, nstep=nstep, gamma=gamma)
    fill(mem, env, 25)
    mem.save(tmp_path / "m.npz")
    resumed = ReplayMemory(lidar_layout(3, 2), 30 * n, n, nstep=nstep, gamma=gamma)
    resumed.load(tmp_path / "m.npz")
    env.reset_all()
    mem.end_episodes()
    for m in (mem, resumed):  # explicit end_episodes, and the one the first add after load does
        state = env.rng.bit_generator.state, env.next_id
        fill(m, env, 12)
        want = env.sampleable(30, 2, nstep)
        valid = np.flatnonzero(m._valid)
        assert {int(i) for i in m.get(valid).obs[0][:, 0]} == want
        check_batch(m, env, m.get(valid), nstep, gamma)
        if m is mem:  # replay the same steps into the resumed memory
            env = FakeVecEnv(n, 3, 2, seed=21)
            fill_reference_only(env, 25)
            env.reset_all()
            assert (env.rng.bit_generator.state, env.next_id) == state


def fill_reference_only(env: FakeVecEnv, steps: int) -> None:
    for _ in range(steps):
        env.step()


def test_corrupt_or_mismatched_file(tmp_path):
    n = 2
    env = FakeVecEnv(n, 4, 2, seed=4)
    mem = ReplayMemory(lidar_layout(4, 2), 50, n)
    fill(mem, env, 30)
    path = tmp_path / "mem.npz"
    mem.save(path)
    with pytest.raises(CheckpointError, match="capacity"):
        ReplayMemory(lidar_layout(4, 2), 80, n).load(path)
    with pytest.raises(CheckpointError, match="layout"):
        ReplayMemory(lidar_layout(3, 2), 50, n).load(path)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file at all")
    with pytest.raises(CheckpointError, match="bad.npz"):
        mem.load(bad)
    cut = tmp_path / "cut.npz"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="cut.npz"):
        mem.load(cut)
    with pytest.raises(CheckpointError, match="does not exist"):
        mem.load(tmp_path / "missing.npz")
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["slots"] = arrays["slots"][:, :-1]
    np.savez(tmp_path / "short.npz", **arrays)
    with pytest.raises(CheckpointError, match="short.npz: array 'slots' should be"):
        mem.load(tmp_path / "short.npz")
    other = tmp_path / "other.npz"
    np.savez(other, x=np.zeros(3))
    with pytest.raises(CheckpointError, match="no metadata"):
        mem.load(other)
    assert len(mem) == 0  # a failed load leaves the memory empty


def test_bench_replay_runs_small():
    from evo_rl.bench import replay

    out = replay.run(transitions=3000, image_transitions=600, samples=20)
    for name in ("lidar", "image"):
        assert out[name]["evo_us"] > 0 and out[name]["sb3_us"] > 0
    assert out["insert_per_s"] > 0


def test_subsets_of_cars_at_any_time_match_full_steps():
    """Workers feed their own cars whenever their batches arrive (``add(cars=...)``, ``add_frames``):
    the memory ends up holding exactly what full vector steps would have stored."""
    n, hist, act_buf = 4, 3, 2
    layout = lidar_layout(hist, act_buf)
    full = ReplayMemory(layout, 400, n, nstep=3, gamma=0.9, seed=1)
    parts = ReplayMemory(layout, 400, n, nstep=3, gamma=0.9, seed=1)
    env = FakeVecEnv(n, hist, act_buf, seed=5)
    rng = np.random.default_rng(0)
    pending: list[list[tuple]] = [[] for _ in range(n)]  # steps not yet delivered, per car
    for _ in range(60):
        obs, act, rew, term, trunc, final, mask = env.step()
        full.add(obs, act, rew, term, trunc, final, mask)
        for c in range(n):
            pending[c].append((tuple(x[c : c + 1] for x in obs), act[c : c + 1], rew[c : c + 1], term[c : c + 1],
                               trunc[c : c + 1], tuple(x[c : c + 1] for x in final)))  # fmt: skip
        for c in rng.permutation(n)[: rng.integers(0, n + 1)]:  # some cars deliver their backlog now
            for o, a, r, te, tr, fo in pending[c]:
                if rng.random() < 0.5:
                    parts.add(o, a, r, te, tr, fo, None, cars=np.array([c]))
                else:  # as a worker sends them: newest frames, final frames of the ended cars only
                    fin = [f[te | tr] for f in layout.frames(fo, 1)]
                    parts.add_frames(layout.frames(o, 1), a, r, te, tr, fin, None, cars=np.array([c]))
            pending[c] = []
    for c in range(n):
        for o, a, r, te, tr, fo in pending[c]:
            parts.add(o, a, r, te, tr, fo, None, cars=np.array([c]))
    assert len(parts) == len(full) > 0
    for a, b in zip(full._frames, parts._frames, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(full._rec, parts._rec)
    np.testing.assert_array_equal(full._valid, parts._valid)
    with pytest.raises(EvoError, match="distinct indices"):
        parts.add_frames(layout.frames(obs, n)[:], act, rew, term, trunc, final, mask, cars=np.array([0, 0, 1, 2]))
