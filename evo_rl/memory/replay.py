"""`ReplayMemory`: per-car circular streams of frames, histories rebuilt by index.

Storage. Each of the N cars owns a stream of ``rows = ceil(capacity / N)`` elements.
Arrays are car-major, ``[N, rows, ...]`` stored flat as ``[N * rows, ...]``: slot
``i = car * rows + row``, and the element ``j`` steps earlier in the same stream is
``car * rows + (row - j) mod rows``, so a stack of frames and the next observation
lie side by side in memory. One element holds the newest frame of every observation
field and a 32-byte record: action, reward, ``terminated``, ``last`` (a final
observation, not a transition start), ``epi_t`` (steps since its episode's start)
and, once the transition is complete, its n-step return ``ret``, length ``k`` and
``term_n``. Each ``add`` appends one element per car, plus a ``last`` element
holding ``final_obs`` for the cars whose episode ended: no frame is stored twice.

Sampling. A transition starts at a non-``last`` element ``q``; its next observation
is element ``q + k`` with ``k = nstep``, or fewer when the episode ends first. Stacks
are rebuilt from frames ``q - j`` for ``j < hist_len``, clamped to the episode start
(the first frame pads the stack); previous actions are the actions of ``q - j`` for
``j = act_buf_len..1``, zero before the episode start. A boolean ``valid`` per slot
marks complete transitions whose history is still in memory; each insert keeps it
up to date (a transition becomes valid when its window closes and invalid when an
element it draws on is overwritten).
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from evo_rl.config import MemoryConfig
from evo_rl.errors import CheckpointError, EvoError
from evo_rl.memory import kernels
from evo_rl.memory.layout import ObsLayout
from evo_rl.memory.sumtree import SumTree

FORMAT = "evo-rl-replay"
VERSION = 1  # one .npz (save / load)
CHUNKED_VERSION = 2  # an index folder and append-only chunks (write_chunk / write_index / load_chunks)
INDEX_FILE = "memory.json"
PRIORITY_EPS = 1e-6  # added to |TD error| so no stored transition gets priority zero


def slot_dtype(act_dim: int) -> np.dtype:
    """One record per slot, padded to a multiple of 16 bytes, so a sample reads its
    metadata and the actions around it from one or two cache lines."""
    fields = [
        ("rew", np.float32),  # reward of the transition starting here
        ("ret", np.float32),  # n-step return, once complete
        ("epi_t", np.int32),  # steps since the episode's start
        ("act", np.float32, (act_dim,)),  # action taken here
        ("k", np.uint8),  # n-step length (0 until complete)
        ("term", np.bool_),  # this transition terminated the episode
        ("term_n", np.bool_),  # the n-step window ended with a termination
        ("last", np.bool_),  # a final observation: no transition starts here
    ]
    size = np.dtype(fields).itemsize
    return np.dtype(fields + [("pad", np.uint8, (-size % 16,))]) if size % 16 else np.dtype(fields)


class Batch(NamedTuple):
    """A batch of transitions, batch axis first: what the replay samples and off-policy agents learn from.

    The replay fills every field; other producers (tests, benchmarks, custom memories) may leave
    ``discount`` (then ``gamma``), ``weights`` (then ones) and ``indices`` as None.
    """

    obs: tuple[torch.Tensor, ...] | torch.Tensor  # the env's layout: [B, *entry shape] each (flat: [B, D])
    act: torch.Tensor  # [B, act_dim]
    rew: torch.Tensor  # [B] discounted n-step return sum_j gamma^j r_{t+j}, j < k
    next_obs: tuple[torch.Tensor, ...] | torch.Tensor  # observation k steps later
    terminated: torch.Tensor  # [B] 1.0 where the window ended with a termination (a truncation still bootstraps)
    discount: torch.Tensor | None = None  # [B] gamma^k for the k steps used, 0.0 where terminated
    weights: torch.Tensor | None = None  # [B] importance-sampling weights (ones for uniform sampling)
    indices: torch.Tensor | None = None  # [B] int64 slots on the CPU, for update_priorities


def available_memory() -> int | None:
    """Bytes of RAM available to a new allocation (MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


class ReplayMemory:
    """Replay memory of N cars: uniform or prioritised sampling, n-step returns.

    Args:
        layout: what one observation holds (:meth:`ObsLayout.from_space`).
        capacity: elements kept over all cars (``memory.capacity``).
        n_envs: cars of the vector environment; every ``add`` gives one row per car.
        device: torch device of sampled batches (pinned staging memory for CUDA).
        nstep: steps summed in the return; ``discount = gamma^k``.
        gamma: discount factor of the n-step return.
        prioritized: proportional prioritised replay (sum tree) instead of uniform.
        alpha, beta: priority exponent and importance-sampling exponent (``beta`` may
            be changed between samples, e.g. annealed towards 1).
        seed: seed of the sampling random generator.
    """

    def __init__(
        self,
        layout: ObsLayout,
        capacity: int,
        n_envs: int,
        device: str | torch.device = "cpu",
        nstep: int = 1,
        gamma: float = 0.99,
        prioritized: bool = False,
        alpha: float = 0.6,
        beta: float = 0.4,
        seed: int = 0,
    ) -> None:
        if n_envs < 1:
            raise EvoError(f"replay memory: n_envs must be at least 1, got {n_envs}")
        if not 1 <= nstep <= 100:
            raise EvoError(f"memory.nstep must be between 1 and 100, got {nstep}")
        if not 0.0 < gamma <= 1.0:
            raise EvoError(f"replay memory: gamma must be in (0, 1], got {gamma}")
        for f in layout.fields:
            if f.dtype not in _TORCH_DTYPES:
                raise EvoError(f"replay memory: field {f.name!r} has dtype {f.dtype}; use one of {list(_TORCH_DTYPES)}")
        self.layout = layout
        self.n_envs = int(n_envs)
        self.rows = -(-int(capacity) // self.n_envs)  # capacity_per_car
        min_rows = layout.lookback + nstep + 2
        if self.rows < min_rows:
            raise EvoError(
                f"memory.capacity={capacity} is too small for {n_envs} cars with nstep={nstep} and a history of "
                f"{layout.lookback} steps; set memory.capacity to at least {min_rows * self.n_envs}"
            )
        self.capacity = self.rows * self.n_envs
        self.device = torch.device(device)
        self.nstep = int(nstep)
        self.gamma = float(gamma)
        self.prioritized = bool(prioritized)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self._pin = self.device.type == "cuda" and torch.cuda.is_available()
        need = self.nbytes(layout, self.capacity, prioritized)
        avail = available_memory()
        if avail is not None and need > avail:
            raise EvoError(
                f"memory.capacity={capacity} needs {_gib(need)} of RAM ({need} bytes) but only {_gib(avail)} "
                f"({avail} bytes) is available; lower memory.capacity to at most "
                f"{int(capacity * avail / need)}"
            )
        self._rng = np.random.default_rng(seed)
        self._all_cars = np.arange(self.n_envs, dtype=np.int64)
        self._hist_len = max(f.hist_len for f in layout.fields)  # longest stack
        self._gamma_pow = self.gamma ** np.arange(self.nstep + 1)  # [nstep + 1]
        self._allocate()

    @classmethod
    def from_config(
        cls, cfg: MemoryConfig, layout: ObsLayout, n_envs: int, gamma: float, device: str = "cpu", seed: int = 0
    ) -> ReplayMemory:
        """A memory from a :class:`~evo_rl.config.MemoryConfig` (``gamma`` comes from the algorithm)."""
        return cls(layout, cfg.capacity, n_envs, device, cfg.nstep, gamma, cfg.prioritized, cfg.alpha, cfg.beta, seed)

    @staticmethod
    def nbytes(layout: ObsLayout, capacity: int, prioritized: bool = False) -> int:
        """RAM that ``capacity`` elements of ``layout`` take."""
        per = sum(f.frame_bytes for f in layout.fields) + slot_dtype(layout.act_dim).itemsize + 1
        if prioritized:
            per += 8 + 16  # raw priority, sum tree (two nodes per leaf at most)
        return int(capacity) * per

    def _allocate(self) -> None:
        s = self.capacity
        self._frames = [np.zeros((s, *f.shape), f.dtype) for f in self.layout.fields]  # [S, *frame] each
        self._rec = np.zeros(s, slot_dtype(self.layout.act_dim))  # [S] records; the names below view its fields
        self._rew, self._ret, self._epi_t, self._act = (self._rec[x] for x in ("rew", "ret", "epi_t", "act"))
        self._k, self._term, self._term_n, self._last = (self._rec[x] for x in ("k", "term", "term_n", "last"))
        self._valid = np.zeros(s, bool)  # [S] a complete transition starts here
        self._pos = np.zeros(self.n_envs, np.int64)  # [N] elements ever written per car
        self._written = 0  # rows written in the longest stream
        self._n_valid = 0
        self._resume_pending = False
        self._flushed = np.zeros(self.n_envs, np.int64)  # [N] positions already in a committed chunk
        self._closed: list[np.ndarray] = []  # [m, 2] (car, position) pairs end_episodes() marked last since
        if self.prioritized:
            self._prio = np.zeros(s, np.float64)  # [S] raw priorities |td| + eps
            self._tree = SumTree(s)
            self._max_prio = 1.0

    def __len__(self) -> int:
        """Transitions that can be sampled now."""
        return self._n_valid

    def _shift(self, i: np.ndarray, j: np.ndarray | int) -> np.ndarray:
        """Slot of the element ``j`` steps after slot ``i`` in the same car's stream (j < 0: before)."""
        row = i % self.rows
        return i - row + (row + j) % self.rows

    # ------------------------------------------------------------------ inserting

    def add(
        self,
        obs: Any,
        action: np.ndarray,
        reward: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        final_obs: Any = None,
        final_mask: np.ndarray | None = None,
        cars: np.ndarray | None = None,
    ) -> None:
        """Store one vector-env step of all N cars: ``obs`` (the observation the action was
        taken in), ``action`` [N, act_dim], ``reward`` [N], ``terminated`` / ``truncated`` [N].
        With ``cars`` [m] (distinct car indices), the step of those cars only: every array has
        m rows, in the order of ``cars`` (rollout workers each feed their own cars).

        For cars whose episode ended, ``final_obs`` holds the last observation (the vector
        env's ``infos["final_obs"]``: a batched observation, rows valid where ``final_mask``,
        or Gymnasium's object array of per-car observations); it is required for them.
        Previous actions are rebuilt from the stored actions, so pass the actions the env
        applied (in range). The first ``add`` of each car starts an episode: begin right
        after ``env.reset()``.
        """
        frames = self.layout.frames(obs, self.n_envs if cars is None else len(cars))
        self.add_frames(frames, action, reward, terminated, truncated, final_obs, final_mask, cars)

    def add_frames(
        self,
        frames: list[np.ndarray],
        action: np.ndarray,
        reward: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        final_obs: Any = None,
        final_mask: np.ndarray | None = None,
        cars: np.ndarray | None = None,
    ) -> None:
        """:meth:`add` from the newest frame of every field (``ObsLayout.frames``): what rollout
        workers send. ``final_obs`` may also be a list of final frames, one row per ended car
        (in car order), with ``final_mask`` None."""
        if cars is None:
            cars = self._all_cars
        else:
            cars = np.asarray(cars, np.int64).reshape(-1)
            if cars.size and (cars.min() < 0 or cars.max() >= self.n_envs or np.unique(cars).size != cars.size):
                raise EvoError(f"replay memory: cars must be distinct indices below {self.n_envs}, got {cars.tolist()}")
        n = cars.size
        for f, x in zip(self.layout.fields, frames, strict=True):
            if x.shape != (n, *f.shape):
                raise EvoError(f"replay memory: frames of {f.name!r} should have shape {(n, *f.shape)}, got {x.shape}")
        action = np.asarray(action, np.float32)
        if action.shape != (n, self.layout.act_dim):
            raise EvoError(f"replay memory: action should have shape {(n, self.layout.act_dim)}, got {action.shape}")
        reward = np.asarray(reward, np.float32).reshape(-1)
        terminated = np.asarray(terminated, bool).reshape(-1)
        truncated = np.asarray(truncated, bool).reshape(-1)
        if reward.shape != (n,) or terminated.shape != (n,) or truncated.shape != (n,):
            raise EvoError(f"replay memory: reward, terminated and truncated should have shape ({n},)")
        if not np.isfinite(reward).all() or not np.isfinite(action).all():
            raise EvoError("replay memory: reward and action must be finite (found NaN or inf)")
        if self._resume_pending:
            self.end_episodes()
        self._write(cars, frames, action, reward, terminated, last=False)
        done = terminated | truncated
        if done.any():
            rows = np.flatnonzero(done)
            if isinstance(final_obs, list):  # final frames of the ended cars, already extracted
                final = final_obs
                if any(f.shape[0] != rows.size for f in final):
                    raise EvoError(f"replay memory: {rows.size} cars ended but final frames have other row counts")
            else:
                final = self.layout.final_frames(final_obs, final_mask, rows, n)
            ended = cars[rows]
            zeros = np.zeros(ended.size, np.float32)
            self._write(ended, final, np.zeros((ended.size, self.layout.act_dim), np.float32), zeros, False, last=True)

    def _write(
        self,
        cars: np.ndarray,
        frames: list[np.ndarray],
        action: np.ndarray,
        reward: np.ndarray,
        terminated: np.ndarray | bool,
        last: bool,
    ) -> None:
        """Append one element to the streams of ``cars`` [m] (frames etc. have m rows)."""
        p = self._pos[cars]  # [m] absolute position of the new element in each stream
        slot = cars * self.rows + p % self.rows  # [m]
        # the element in `slot` (position p - rows) leaves; so does every transition drawing
        # on it: the one at p - rows + j needs it when j <= min(lookback, its epi_t)
        self._invalidate(slot)
        look = self.layout.lookback
        wrapped = p >= self.rows
        if look and wrapped.any():
            j = np.arange(1, look + 1)[:, None]  # [L, 1]
            q = self._shift(slot[None, :], j)  # [L, m]
            self._invalidate(q[wrapped[None, :] & (self._epi_t[q] >= j)])
        prev = self._shift(slot, -1)
        epi = np.where((p == 0) | self._last[prev], 0, self._epi_t[prev] + 1)  # [m]
        for store, f in zip(self._frames, frames, strict=True):
            store[slot] = f
        self._act[slot] = action
        self._rew[slot] = reward
        self._term[slot] = terminated
        self._last[slot] = last
        self._epi_t[slot] = epi
        self._k[slot] = 0
        self._pos[cars] = p + 1
        self._written = int(min(self._pos.max(), self.rows))
        # transitions completed by this element: q = p - nstep, and for a final element
        # every q = p - j (j < nstep) of the same episode, whose window it closes
        j = (np.arange(1, self.nstep + 1) if last else np.array([self.nstep]))[:, None]  # [J, 1]
        q = self._shift(slot[None, :], -j)  # [J, m]
        self._complete(q[epi[None, :] >= j])

    def end_episodes(self, cars: np.ndarray | None = None) -> None:
        """Close every car's running episode (or those of ``cars``) at its newest element (which
        becomes a final observation). Called by the first ``add`` after :meth:`load`, since a
        resumed run starts from freshly reset environments; call it yourself after resetting the
        env outside of ``add`` (a restarted rollout worker: its cars)."""
        if cars is None:
            self._resume_pending = False
            cars = np.flatnonzero(self._pos > 0)
        else:
            cars = np.asarray(cars, np.int64).reshape(-1)
            cars = cars[self._pos[cars] > 0]
        slot = cars * self.rows + (self._pos[cars] - 1) % self.rows
        slot = slot[~self._last[slot]]
        self._last[slot] = True
        if slot.size:  # an element already written changed: the next chunk records it
            self._closed.append(np.stack([slot // self.rows, self._pos[slot // self.rows] - 1], axis=1))
        if self.nstep > 1 and slot.size:
            j = np.arange(1, self.nstep)[:, None]  # [nstep - 1, 1]; j = nstep was completed when written
            q = self._shift(slot[None, :], -j)
            self._complete(q[self._epi_t[slot][None, :] >= j])

    def _complete(self, q: np.ndarray) -> None:
        """Compute the n-step windows of transitions ``q`` (all elements written) and mark them valid."""
        if q.size == 0:
            return
        ret = self._rew[q].astype(np.float64)
        term = self._term[q]
        k = np.ones(q.size, np.int64)
        cur = q
        alive = ~self._last[self._shift(q, 1)]
        for j in range(1, self.nstep):  # stops at the episode's final element
            cur = self._shift(cur, 1)
            ret += np.where(alive, self.gamma**j * self._rew[cur], 0.0)
            term = np.where(alive, self._term[cur], term)
            k += alive
            alive &= ~self._last[self._shift(cur, 1)]
        self._ret[q] = ret
        self._k[q] = k
        self._term_n[q] = term
        q = q[~self._valid[q]]
        self._valid[q] = True
        self._n_valid += q.size
        if self.prioritized and q.size:
            self._prio[q] = self._max_prio
            self._tree.set(q, self._max_prio**self.alpha)

    def _invalidate(self, idx: np.ndarray) -> None:
        idx = idx[self._valid[idx]]
        if idx.size:
            self._valid[idx] = False
            self._n_valid -= idx.size
            if self.prioritized:
                self._tree.set(idx, 0.0)

    # ------------------------------------------------------------------ sampling

    def sample(self, batch_size: int) -> Batch:
        """``batch_size`` transitions, uniform or by priority (with replacement)."""
        if self._n_valid == 0:
            raise EvoError("replay memory holds no complete transition yet; add more steps before sampling")
        if self.prioritized:
            idx, weights = self._sample_prioritized(batch_size)
        else:
            idx, weights = self._sample_uniform(batch_size), None
        return self._get(idx, weights)

    def _sample_uniform(self, b: int) -> np.ndarray:
        idx = np.empty(b, np.int64)  # [B]
        u = self._rng.random(2 * b)  # [2B]: room for b redraws of slots that hold no valid transition
        filled = kernels.draw_valid(u, self._written, self.n_envs, self.rows, self._valid, idx)
        if filled < b:  # few valid slots among those written: draw among them directly
            idx[filled:] = self._rng.choice(np.flatnonzero(self._valid), b - filled)
        return idx

    def _sample_prioritized(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        total = self._tree.total
        u = (np.arange(b) + self._rng.random(b)) * (total / b)  # one draw per equal stratum of the total
        idx = self._tree.find(u)
        prob = self._tree.get(idx) / total
        weights = (self._n_valid * prob) ** (-self.beta)
        return idx, (weights / weights.max()).astype(np.float32)

    def update_priorities(self, indices: torch.Tensor | np.ndarray, td_errors: torch.Tensor | np.ndarray) -> None:
        """Set the priorities of sampled ``indices`` to ``|td_errors| + eps``. Slots overwritten
        since they were sampled are skipped."""
        if not self.prioritized:
            raise EvoError("update_priorities needs a prioritised memory (memory.prioritized: true)")
        idx = _to_numpy(indices).astype(np.int64).reshape(-1)
        prio = np.abs(_to_numpy(td_errors).astype(np.float64).reshape(-1)) + PRIORITY_EPS
        if idx.shape != prio.shape:
            raise EvoError(f"update_priorities: {idx.size} indices but {prio.size} TD errors")
        keep = self._valid[idx]
        idx, prio = idx[keep], prio[keep]
        if idx.size:
            self._prio[idx] = prio
            self._tree.set(idx, prio**self.alpha)
            self._max_prio = max(self._max_prio, float(prio.max()))

    def get(self, idx: np.ndarray | torch.Tensor) -> Batch:
        """The transitions starting at slots ``idx`` [B] (e.g. ``batch.indices``); weights are ones."""
        idx = np.ascontiguousarray(_to_numpy(idx), np.int64).reshape(-1)
        if idx.size == 0 or idx.min() < 0 or idx.max() >= self.capacity or not self._valid[idx].all():
            raise EvoError("replay memory: get() was given slots that hold no complete transition")
        return self._get(idx, None)

    def _get(self, idx: np.ndarray, weights: np.ndarray | None) -> Batch:
        b, m = idx.size, 2 * idx.size
        lay = self.layout
        both = np.empty(m, np.int64)  # [2B]: obs slots, then next_obs slots
        hist = np.empty((m, self._hist_len), np.int64)  # [2B, H] frame slots, oldest first
        scal_t, scal = self._empty((4, b), torch.float32)  # [4, B] return, terminated, discount, weights
        scal[3] = 1.0 if weights is None else weights
        act_t, act = self._empty((b, lay.act_dim), torch.float32)  # [B, act_dim]
        prev_t, prev = self._empty((lay.act_buf_len, m, lay.act_dim), torch.float32)  # [A, 2B, act_dim]
        kernels.batch_slots(
            idx, self._ret, self._k, self._term_n, self._epi_t, self._act, self.rows, self._gamma_pow,
            both, hist, scal, act, prev,
        )  # fmt: skip
        obs: list[torch.Tensor] = []
        after: list[torch.Tensor] = []
        for f, store in zip(lay.fields, self._frames, strict=True):
            if f.hist_len == 0:
                rows = both
            else:
                rows = (hist if f.hist_len == self._hist_len else hist[:, self._hist_len - f.hist_len :]).reshape(-1)
            t, arr = self._empty((m, *f.obs_shape), _TORCH_DTYPES[f.dtype])
            store.take(rows, axis=0, out=arr.reshape(rows.size, *f.shape), mode="clip")
            self._split(t, arr, b, obs, after)
        for a in range(lay.act_buf_len):
            self._split(None if prev_t is None else prev_t[a], prev[a], b, obs, after)
        if self.device.type == "cpu":
            act_b, ret_b, term_b, disc_b, w_b = (torch.from_numpy(x) for x in (act, *scal))
        else:
            act_b = act_t.to(self.device, non_blocking=self._pin)
            ret_b, term_b, disc_b, w_b = scal_t.to(self.device, non_blocking=self._pin).unbind(0)
        return Batch(
            obs=obs[0] if lay.flat else tuple(obs),
            act=act_b,
            rew=ret_b,
            next_obs=after[0] if lay.flat else tuple(after),
            terminated=term_b,
            discount=disc_b,
            weights=w_b,
            indices=torch.from_numpy(idx),
        )

    def _empty(self, shape: tuple[int, ...], dtype: torch.dtype) -> tuple[torch.Tensor | None, np.ndarray]:
        """An output array; for a non-CPU device also the (pinned, for CUDA) tensor it views."""
        if self.device.type == "cpu":
            return None, np.empty(shape, _NUMPY_DTYPES[dtype])
        t = torch.empty(shape, dtype=dtype, pin_memory=self._pin)
        return t, t.numpy()

    def _split(self, t: torch.Tensor | None, arr: np.ndarray, b: int, obs: list, after: list) -> None:
        """Append the obs half ``[:b]`` and the next_obs half ``[b:]`` of one entry, on the device."""
        if t is None:
            obs.append(torch.from_numpy(arr[:b]))
            after.append(torch.from_numpy(arr[b:]))
        else:
            d = t.to(self.device, non_blocking=self._pin)
            obs.append(d[:b])
            after.append(d[b:])

    # ------------------------------------------------------------------ saving

    def _stored(self) -> dict[str, np.ndarray]:
        """Every stored array as ``[N, rows, ...]`` views (besides ``pos``)."""
        arrays = {f"frame{i}": a for i, a in enumerate(self._frames)}
        arrays.update(slots=self._rec, valid=self._valid)
        if self.prioritized:
            arrays["prio"] = self._prio
        return {k: a.reshape(self.n_envs, self.rows, *a.shape[1:]) for k, a in arrays.items()}

    def _meta(self, version: int) -> dict[str, Any]:
        """What a saved memory must match to be loaded, plus its counts and sampling RNG."""
        return {
            "format": FORMAT,
            "version": version,
            "layout": self.layout.to_dict(),
            "n_envs": self.n_envs,
            "capacity": self.capacity,
            "nstep": self.nstep,
            "gamma": self.gamma,
            "prioritized": self.prioritized,
            "n_valid": self._n_valid,
            "max_priority": self._max_prio if self.prioritized else None,
            "rng": self._rng.bit_generator.state,
        }

    def save(self, path: str | Path) -> None:
        """Write the whole memory to one ``.npz`` (arrays + JSON metadata), atomically: a
        temporary file in the same folder, flushed to disk, then renamed over ``path``.
        (Checkpoints use the append-only :meth:`write_chunk` / :meth:`write_index` instead.)"""
        path = Path(path)
        used = int(min(self._pos.max(), self.rows))  # rows written so far in the longest stream
        arrays = {k: a[:, :used] for k, a in self._stored().items()}
        arrays["pos"] = self._pos
        meta = {**self._meta(VERSION), "used_rows": used}
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        fsync_dir(path.parent)

    def load(self, path: str | Path) -> None:
        """Restore a memory written by :meth:`save` with the same layout, cars, capacity,
        nstep and prioritisation; sampling then continues exactly as it would have.
        A missing, corrupt or mismatched file raises CheckpointError naming the file and
        what is wrong (the memory is then left empty). The cars' running episodes are
        closed at the next ``add`` (see :meth:`end_episodes`)."""
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"replay memory file {path} does not exist")
        try:
            with np.load(path, allow_pickle=False) as z:
                self._load_arrays(path, z)
        except CheckpointError:
            self._allocate()
            raise
        except (OSError, ValueError, KeyError, TypeError, EOFError, UnicodeDecodeError, zipfile.BadZipFile) as e:
            self._allocate()
            raise CheckpointError(f"replay memory file {path} is unreadable ({type(e).__name__}: {e})") from None
        self._resume_pending = True

    def _load_arrays(self, path: Path, z: Any) -> None:
        if "meta" not in z.files:
            raise CheckpointError(f"replay memory file {path} has no metadata; it is not an EVO RL replay memory")
        meta = json.loads(z["meta"].tobytes().decode())
        self._check_meta(path, meta, VERSION)
        self._allocate()
        used = int(meta["used_rows"])
        targets = {k: a[:, :used] for k, a in self._stored().items()}
        targets["pos"] = self._pos
        for name, target in targets.items():
            arr = z[name] if name in z.files else None
            want = target.shape
            if arr is None or arr.shape != want or arr.dtype != target.dtype:
                got = "missing" if arr is None else f"{arr.dtype}{list(arr.shape)}"
                raise CheckpointError(
                    f"replay memory file {path}: array {name!r} should be {target.dtype}{list(want)}, found {got}"
                )
            target[...] = arr
            del arr
        if used != min(int(self._pos.max()), self.rows) or int(self._valid.sum()) != meta["n_valid"]:
            raise CheckpointError(f"replay memory file {path} is inconsistent (positions, sizes or counts differ)")
        self._n_valid = int(meta["n_valid"])
        self._written = used
        if self.prioritized:
            self._max_prio = float(meta["max_priority"])
            self._tree.rebuild(np.where(self._valid, self._prio**self.alpha, 0.0))
        self._rng.bit_generator.state = meta["rng"]  # no element is in a chunk yet: the next chunk holds them all

    def _check_meta(self, path: Path, meta: Any, version: int) -> None:
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise CheckpointError(f"replay memory file {path} is not an EVO RL replay memory")
        if meta.get("version") != version:
            raise CheckpointError(
                f"replay memory file {path} has format version {meta.get('version')}, expected {version}"
            )
        try:
            layout = ObsLayout.from_dict(meta["layout"])
        except (KeyError, TypeError, ValueError, EvoError) as e:
            raise CheckpointError(f"replay memory file {path} has an invalid layout ({e})") from None
        wanted = {
            "layout": (layout, self.layout),
            "n_envs": (meta.get("n_envs"), self.n_envs),
            "capacity": (meta.get("capacity"), self.capacity),
            "nstep": (meta.get("nstep"), self.nstep),
            "gamma": (meta.get("gamma"), self.gamma),
            "prioritized": (meta.get("prioritized"), self.prioritized),
        }
        for key, (saved, mine) in wanted.items():
            if saved != mine:
                raise ReplayMismatchError(
                    f"replay memory file {path} was saved with {key}={saved}, but this memory has {key}={mine}; "
                    "use the settings of the saved run (env.n_envs, env.hist_len, env.act_buf_len, memory.*, gamma)"
                )

    # ------------------------------------------------------------------ append-only chunks
    #
    # A checkpoint does not rewrite the memory. write_chunk() writes the elements added
    # since the last committed chunk (plain .npy files); write_index() writes the small
    # per-checkpoint part (positions, priorities, counts, RNG) and the names of the chunks
    # that still hold stored elements. load_chunks() rebuilds the memory from both: the
    # elements as they were written, then every n-step window and validity flag recomputed
    # from the streams, which gives exactly the state add() had built incrementally.

    def _positions(self, start: np.ndarray, count: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Slots, absolute positions and cars of positions ``[start[c], start[c] + count[c])`` of every car c."""
        car = np.repeat(self._all_cars, count)  # [M]
        first = np.cumsum(count) - count  # [N] where each car's run begins
        pos = start[car] + np.arange(car.size, dtype=np.int64) - first[car]
        return car * self.rows + pos % self.rows, pos, car

    def write_chunk(self, folder: str | Path) -> ChunkInfo | None:
        """Write the elements added since the last committed chunk (or since :meth:`load_chunks`)
        into the new folder ``folder``: ``start.npy`` / ``count.npy`` [N] (each car's first
        position and element count), ``slots.npy`` (their records), ``frame<i>.npy`` (their
        frames, car after car), ``closed.npy`` [m, 2] (car, position of elements that
        :meth:`end_episodes` marked final after they were written). Every file is fsync'ed.
        Returns what the chunk holds (None, writing nothing, when nothing changed); call
        :meth:`commit_chunk` once the chunk is safely in place."""
        folder = Path(folder)
        start = np.maximum(self._flushed, self._pos - self.rows)  # [N] older new elements are overwritten already
        count = self._pos - start  # [N]
        closed = np.concatenate(self._closed) if self._closed else np.zeros((0, 2), np.int64)
        if not count.any() and not closed.size:
            return None
        slot, _, _ = self._positions(start, count)
        folder.mkdir(parents=True)
        _write_npy(folder / "start.npy", start)
        _write_npy(folder / "count.npy", count)
        _write_npy(folder / "closed.npy", closed.astype(np.int64))
        _write_npy(folder / "slots.npy", self._rec[slot])
        for i, store in enumerate(self._frames):  # one field at a time: a copy of the new frames of one field
            _write_npy(folder / f"frame{i}.npy", store[slot])
        fsync_dir(folder)
        return ChunkInfo(start, self._pos.copy(), closed)

    def commit_chunk(self, info: ChunkInfo) -> None:
        """The chunk :meth:`write_chunk` returned is in place: the next one starts after it."""
        self._flushed = info.end.copy()
        self._closed = []

    def chunk_needed(self, info: ChunkInfo) -> bool:
        """Whether a chunk still holds an element (or a final-element mark) the memory stores."""
        lo = self._pos - self.rows
        if np.any((info.end > info.start) & (info.end > lo)):
            return True
        return bool(info.closed.size and np.any(info.closed[:, 1] >= lo[info.closed[:, 0]]))

    def write_index(self, folder: str | Path, chunks: list[str]) -> None:
        """Write the per-checkpoint part into ``folder``: ``memory.json`` (settings, counts,
        sampling RNG, the chunk names in order), ``pos.npy`` [N] and, when prioritised,
        ``prio.npy`` [capacity] float64."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        _write_npy(folder / "pos.npy", self._pos)
        if self.prioritized:
            _write_npy(folder / "prio.npy", self._prio)
        meta = {**self._meta(CHUNKED_VERSION), "chunks": list(chunks)}
        with open(folder / INDEX_FILE, "w") as fh:
            json.dump(meta, fh)
            fh.flush()
            os.fsync(fh.fileno())
        fsync_dir(folder)

    def load_chunks(self, folder: str | Path, chunk_dir: str | Path) -> list[tuple[str, ChunkInfo]]:
        """Restore a memory from an index folder (:meth:`write_index`) and the chunks it names,
        read from ``chunk_dir``; sampling then continues exactly as it would have. Returns
        each chunk's name and content (for :meth:`chunk_needed`). A missing, corrupt or
        mismatched file raises CheckpointError naming it (the memory is then left empty)."""
        folder, chunk_dir = Path(folder), Path(chunk_dir)
        index = folder / INDEX_FILE
        try:
            meta = json.loads(index.read_text())
            self._check_meta(index, meta, CHUNKED_VERSION)
            infos = self._load_chunked(folder, chunk_dir, meta)
        except CheckpointError:
            self._allocate()
            raise
        except (OSError, ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError) as e:
            self._allocate()
            raise CheckpointError(f"replay memory in {folder} is unreadable ({type(e).__name__}: {e})") from None
        self._resume_pending = True
        return infos

    def _load_chunked(self, folder: Path, chunk_dir: Path, meta: dict[str, Any]) -> list[tuple[str, ChunkInfo]]:
        self._allocate()
        n, rows = self.n_envs, self.rows
        pos = _read_npy(folder / "pos.npy", np.int64, (n,), small=True)
        if (pos < 0).any():
            raise CheckpointError(f"replay file {folder / 'pos.npy'} holds negative positions")
        self._pos[:] = pos
        lo = np.maximum(pos - rows, 0)  # [N] first stored position of each car
        filled = np.zeros(self.capacity, bool)
        closed_all = []
        infos = []
        for name in meta["chunks"]:
            chunk = chunk_dir / str(name)
            start = _read_npy(chunk / "start.npy", np.int64, (n,), small=True)
            count = _read_npy(chunk / "count.npy", np.int64, (n,), small=True)
            closed = _read_npy(chunk / "closed.npy", np.int64, (None, 2), small=True)
            end = start + count
            if (start < 0).any() or (count < 0).any() or (end > pos).any():
                raise CheckpointError(f"replay chunk {chunk}: its positions do not fit the memory's streams")
            if closed.size and ((closed[:, 0] < 0).any() or (closed[:, 0] >= n).any()):
                raise CheckpointError(f"replay chunk {chunk}: closed.npy names cars that do not exist")
            slot, p, car = self._positions(start, count)
            keep = p >= lo[car]  # elements overwritten since are not restored
            if filled[slot[keep]].any():
                raise CheckpointError(f"replay chunk {chunk} overlaps an earlier chunk")
            rec = _read_npy(chunk / "slots.npy", self._rec.dtype, (slot.size,))
            self._rec[slot[keep]] = rec[keep]
            for i, store in enumerate(self._frames):
                frames = _read_npy(chunk / f"frame{i}.npy", store.dtype, (slot.size, *store.shape[1:]))
                store[slot[keep]] = frames[keep]
                del frames
            del rec
            filled[slot[keep]] = True
            closed_all.append(closed)
            infos.append((str(name), ChunkInfo(start, end, closed)))
        stored, _, _ = self._positions(lo, pos - lo)
        if stored.size != int(filled.sum()) or not filled[stored].all():
            raise CheckpointError(
                f"replay memory in {folder}: its chunks hold {int(filled.sum())} of the {stored.size} stored elements"
            )
        closed = np.concatenate(closed_all) if closed_all else np.zeros((0, 2), np.int64)
        closed = closed[(closed[:, 1] >= lo[closed[:, 0]]) & (closed[:, 1] < pos[closed[:, 0]])]
        self._last[closed[:, 0] * rows + closed[:, 1] % rows] = True
        self._written = int(min(pos.max(), rows))
        self._rebuild_transitions()
        if self._n_valid != meta["n_valid"]:
            raise CheckpointError(
                f"replay memory in {folder} is inconsistent: {self._n_valid} transitions rebuilt, "
                f"{meta['n_valid']} saved"
            )
        if self.prioritized:
            self._prio[:] = _read_npy(folder / "prio.npy", np.float64, (self.capacity,))
            self._max_prio = float(meta["max_priority"])
            self._tree.rebuild(np.where(self._valid, self._prio**self.alpha, 0.0))
        self._rng.bit_generator.state = meta["rng"]
        self._flushed = pos.copy()
        return infos

    def _rebuild_transitions(self) -> None:
        """Recompute every stored transition's n-step window and validity from the streams,
        as the incremental updates of ``add`` / ``end_episodes`` made them: a transition
        starting at position q closes when element q + nstep of its episode is written, or at
        its episode's final element before that; it stays valid while the element
        ``min(lookback, epi_t)`` steps before it is stored."""
        n = self.nstep
        lo = np.maximum(self._pos - self.rows, 0)
        slot, p, car = self._positions(lo, self._pos - lo)  # every stored element
        epi, last = self._epi_t[slot], self._last[slot]
        sel = [(epi >= n, n)] + [(last & (epi >= j), j) for j in range(1, n)]
        q = np.concatenate([self._shift(slot[m], -j) for m, j in sel])
        qp = np.concatenate([p[m] - j for m, j in sel])
        qc = np.concatenate([car[m] for m, _ in sel])
        inside = qp >= lo[qc]
        q, first = np.unique(q[inside], return_index=True)
        qp, qc = qp[inside][first], qc[inside][first]
        self._valid[:] = False
        self._n_valid = 0
        self._complete(q)
        gone = qp - np.minimum(self.layout.lookback, self._epi_t[q]) < lo[qc]
        self._invalidate(q[gone])


class ReplayMismatchError(CheckpointError):
    """A saved replay memory was written with other settings than this memory's."""


@dataclass(frozen=True)
class ChunkInfo:
    """What one chunk holds: car c's positions ``[start[c], end[c])`` and the ``closed``
    (car, position) pairs of older elements marked final."""

    start: np.ndarray  # [N] int64
    end: np.ndarray  # [N] int64
    closed: np.ndarray  # [m, 2] int64


def _write_npy(path: Path, arr: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.save(fh, np.ascontiguousarray(arr), allow_pickle=False)
        fh.flush()
        os.fsync(fh.fileno())


def _read_npy(path: Path, dtype: Any, shape: tuple[int | None, ...], small: bool = False) -> np.ndarray:
    """A .npy file of the given dtype and shape (None: any length), never unpickled; big
    arrays are memory-mapped so that a chunk is not held twice in RAM."""
    if not path.is_file():
        raise CheckpointError(f"replay file {path} is missing")
    try:
        arr = np.load(path, mmap_mode=None if small else "r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise CheckpointError(f"replay file {path} is unreadable ({type(e).__name__}: {e})") from None
    dtype = np.dtype(dtype)
    if (
        arr.dtype != dtype
        or len(arr.shape) != len(shape)
        or any(w is not None and a != w for a, w in zip(arr.shape, shape, strict=False))
    ):
        want = [("any" if w is None else w) for w in shape]
        raise CheckpointError(f"replay file {path} should hold {dtype}{want}, found {arr.dtype}{list(arr.shape)}")
    return arr


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries to disk (after a rename into it); a no-op where folders have no handle."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # platforms without directory handles
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_TORCH_DTYPES = {
    "float16": torch.float16,
    "float32": torch.float32,
    "float64": torch.float64,
    "uint8": torch.uint8,
    "int8": torch.int8,
    "int16": torch.int16,
    "int32": torch.int32,
    "int64": torch.int64,
    "bool": torch.bool,
}


_NUMPY_DTYPES = {t: np.dtype(name) for name, t in _TORCH_DTYPES.items()}


def _to_numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)
