"""The numba kernel that turns sampled transition starts into the slots to gather.

Slots follow :mod:`evo_rl.memory.replay`: car-major streams of ``rows`` elements, so
the element ``j`` steps after slot ``i`` is ``i - row + (row + j) mod rows`` with
``row = i mod rows``. One compiled pass over the batch reads each transition's
record (its actions sit in the same cache lines), writes the actions, previous
actions and returns, and the slots of its next observation and of every stacked
frame; ``ndarray.take`` then copies the frames (a row copy per slot).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def batch_slots(
    idx: np.ndarray,  # [B] int64 transition starts
    ret: np.ndarray,  # [S] float32 n-step returns
    k: np.ndarray,  # [S] uint8 n-step lengths
    term_n: np.ndarray,  # [S] bool: the window ended with a termination
    epi_t: np.ndarray,  # [S] int32 steps since the episode start
    act: np.ndarray,  # [S, D] float32 actions
    rows: int,  # elements per car
    gamma_pow: np.ndarray,  # [nstep + 1] float64 gamma^j
    both: np.ndarray,  # out [2B] int64: idx, then the slot of the observation k steps later
    hist: np.ndarray,  # out [2B, H] int64: frame slots of a stack of H, oldest first, padded with the first frame
    scal: np.ndarray,  # out [>= 3, B] float32: n-step return, terminated, discount (gamma^k, 0 if terminated)
    act_out: np.ndarray,  # out [B, D] float32: the actions taken
    prev_out: np.ndarray,  # out [A, 2B, D] float32: previous actions, oldest first, zero before the start
) -> None:
    b = idx.size
    d = act.shape[1]
    for r in range(b):
        i = idx[r]
        row = i % rows
        kk = k[i]
        nrow = row + kk  # one division per slot; wrap-arounds by comparison
        if nrow >= rows:
            nrow -= rows
        both[r] = i
        both[b + r] = i - row + nrow
        scal[0, r] = ret[i]
        scal[1, r] = 1.0 if term_n[i] else 0.0
        scal[2, r] = 0.0 if term_n[i] else gamma_pow[kk]
        for c in range(d):
            act_out[r, c] = act[i, c]
    h_len = hist.shape[1]
    a_len = prev_out.shape[0]
    for r in range(2 * b):
        i = both[r]
        row = i % rows
        base = i - row
        e = epi_t[i]
        for h in range(h_len):
            src = row - min(h_len - 1 - h, e)
            if src < 0:
                src += rows
            hist[r, h] = base + src
        for a in range(a_len):
            back = a_len - a
            if back > e:
                for c in range(d):
                    prev_out[a, r, c] = 0.0
                continue
            src = row - back
            if src < 0:
                src += rows
            for c in range(d):
                prev_out[a, r, c] = act[base + src, c]


@njit(cache=True, nogil=True)
def draw_valid(
    u: np.ndarray,  # [D] float64 uniform numbers in [0, 1), consumed in order
    written: int,  # rows written in the longest stream
    n: int,  # cars
    rows: int,  # elements per car
    valid: np.ndarray,  # [S] bool
    idx: np.ndarray,  # out [B] int64 slots holding valid transitions
) -> int:
    """Rejection sampling: each ``u`` picks a slot among the written rows of all cars;
    invalid picks are skipped. Returns how many of ``idx`` were filled (< B if ``u`` ran out)."""
    filled = 0
    span = written * n
    for j in range(u.size):
        if filled == idx.size:
            break
        x = int(u[j] * span)
        slot = x // written * rows + x % written
        if valid[slot]:
            idx[filled] = slot
            filled += 1
    return filled
