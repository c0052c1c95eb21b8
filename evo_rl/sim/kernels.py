"""Loops over cars, written once and compiled twice: on the calling thread and over numba's threads.

A per-car loop is a plain function whose loop is ``numba.prange``; :func:`car_loop` compiles it
without ``parallel`` (``prange`` then runs as ``range``) and with it, and calling the result picks
one by the single rule below. Both compilations run the same per-car code, so their results are
bit-identical; only the order in which cars are visited differs.

The rule: a loop runs on numba's threads when it has at least ``min_parallel`` items, in chunks
of :data:`CHUNK` items per work unit; fewer items run on the calling thread, because starting
the threads costs more than they save. The thresholds live here:

- :data:`PARALLEL_CARS` for the cheap per-car loops (physics, LIDAR, trajectory reward);
- :data:`PARALLEL_IMAGES` for camera frames, which cost about a thousand times more per car.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import numba
import numpy as np

CHUNK = 32  # items per work unit of a threaded loop: a busy core delays a step by one chunk, not half the cars
PARALLEL_CARS = 256  # cheap per-car loops with fewer cars than this run on the calling thread
PARALLEL_IMAGES = 8  # camera frames for fewer cars than this are drawn on the calling thread

# numba's OpenMP layer keeps its threads spinning between kernels, which on a busy machine (or beside torch's own
# OpenMP threads in a training process) slows both by several times; the workqueue layer sleeps instead. It must be
# chosen before the first parallel kernel runs; NUMBA_THREADING_LAYER set by the user wins.
if numba.config.THREADING_LAYER == "default":  # type: ignore[attr-defined]
    numba.config.THREADING_LAYER = "workqueue"  # type: ignore[attr-defined]


def _renamed(fn: Callable, suffix: str) -> Callable:
    """A copy of ``fn`` under another qualified name, so each compilation has its own on-disk cache entry
    (numba keys its cache by the function's name, not by the compile options)."""
    copy = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + suffix, fn.__defaults__, fn.__closure__)
    copy.__qualname__ = fn.__qualname__ + suffix
    copy.__module__ = fn.__module__
    copy.__doc__ = fn.__doc__
    return copy


class CarLoop:
    """A loop over items compiled serial and threaded; ``loop(n_items, *args, threads=0)`` runs the right one.

    ``threads`` > 0 caps numba's threads for this call (``sim.threads``); 0 uses them all.
    """

    def __init__(self, fn: Callable, min_parallel: int) -> None:
        self.__doc__ = fn.__doc__
        self.__name__ = fn.__name__
        self.min_parallel = min_parallel
        self.serial = numba.njit(cache=True)(_renamed(fn, "__serial"))
        self.parallel = numba.njit(cache=True, parallel=True)(_renamed(fn, "__parallel"))

    def threaded(self, n_items: int) -> bool:
        """Whether ``n_items`` items run on numba's threads (the one dispatch rule)."""
        return n_items >= self.min_parallel

    def __call__(self, n_items: int, *args: Any, threads: int = 0) -> None:
        if not self.threaded(n_items):
            self.serial(*args)
            return
        if threads > 0:
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]
        with numba.parallel_chunksize(CHUNK):
            self.parallel(*args)


def car_loop(min_parallel: int = PARALLEL_CARS) -> Callable[[Callable], CarLoop]:
    """Decorator: compile a ``prange`` loop both ways (see :class:`CarLoop`)."""

    def wrap(fn: Callable) -> CarLoop:
        return CarLoop(fn, min_parallel)

    return wrap


@numba.njit(cache=True)
def track_slices(quad_off: np.ndarray, k: int) -> tuple[int, int, int, int]:
    """(first quad, end quad, first cross-section, end cross-section) of track ``k`` of a
    :class:`~evo_rl.sim.trackset.PackedTracks` whose quad offsets are ``quad_off [K+1]``."""
    q0 = quad_off[k]
    q1 = quad_off[k + 1]
    return q0, q1, q0 + k, q1 + k + 1


def single_track(n_cars: int, n_quads: int) -> tuple[np.ndarray, np.ndarray]:
    """``(track_id [n_cars], quad_off [2])`` of cars that all drive one track of ``n_quads`` quads."""
    return np.zeros(n_cars, np.int64), np.array([0, n_quads], np.int64)
