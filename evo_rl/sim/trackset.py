"""Several tracks packed into flat arrays, so that cars on different tracks step in one kernel call.

A :class:`PackedTracks` concatenates the strips of K tracks: quad arrays (``edges``, ``inset``,
``cp_count``) row after row, and cross-section arrays (``s``, ``center``, ``gate``) likewise.
Track ``k`` owns quads ``quad_off[k] .. quad_off[k + 1]`` and cross-sections
``quad_off[k] + k .. quad_off[k + 1] + k + 1``. A car keeps its quad index local to its own
track; a kernel takes the car's slices (:func:`track_slices`) and runs the single-track code
on them, so one track is the special case K = 1 with no cost.

The pack only grows (:meth:`PackedTracks.add`): a car mid-episode on a track keeps it while
new tracks join, as a curriculum needs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from evo_rl.sim.geometry import inset_walls, strip_edges
from evo_rl.sim.sensors import gate_marks
from evo_rl.sim.track import Track


class PackedTracks:
    """The kernel arrays of K tracks for cars whose centre keeps ``half_width`` from the walls."""

    def __init__(self, tracks: Sequence[Track], half_width: float) -> None:
        self.half_width = float(half_width)
        self.tracks: list[Track] = []
        self.quad_off = np.zeros(1, np.int64)  # [K+1] first quad of each track, then the total
        self.edges = np.zeros((0, 4, 3))  # [Q, 4, 3] walls of every quad
        self.inset = np.zeros((0, 4, 3))  # [Q, 4, 3] walls inset by half_width (where the car's centre may go)
        self.cp_count = np.zeros(0, np.int64)  # [Q] checkpoint gates at or behind each quad's back gate
        self.s = np.zeros(0)  # [Q+K] arc length of each cross-section, m
        self.center = np.zeros((0, 2))  # [Q+K, 2] centre of each cross-section
        self.gate = np.zeros(0, np.int8)  # [Q+K] start / checkpoint / finish marks
        self.start = np.zeros(0, np.int64)  # [K] start quad
        self.finish = np.zeros(0, np.int64)  # [K] finish quad
        self.height = np.zeros(0)  # [K] road height (game y)
        self.add(tracks)

    def __len__(self) -> int:
        return len(self.tracks)

    def add(self, tracks: Sequence[Track]) -> list[int]:
        """Append ``tracks``; returns their indices in the pack."""
        first = len(self.tracks)
        edges, inset, cp_count, s, center, gate = [self.edges], [self.inset], [self.cp_count], [self.s], [self.center], [self.gate]  # fmt: skip
        offsets = [self.quad_off]
        total = int(self.quad_off[-1])
        for t in tracks:
            m = t.n_quads
            edges.append(strip_edges(t.left, t.right))
            inset.append(strip_edges(*inset_walls(t.left, t.right, self.half_width)))
            cps = np.sort(np.asarray(t.checkpoints, np.int64))
            cp_count.append(np.searchsorted(cps, np.arange(m), side="right").astype(np.int64))
            s.append(t.s)
            center.append(t.center)
            gate.append(gate_marks(m + 1, t.start, cps, t.finish))
            total += m
            offsets.append(np.array([total], np.int64))
            self.tracks.append(t)
        self.quad_off = np.concatenate(offsets)
        self.edges = np.ascontiguousarray(np.concatenate(edges))
        self.inset = np.ascontiguousarray(np.concatenate(inset))
        self.cp_count = np.concatenate(cp_count)
        self.s = np.concatenate(s)
        self.center = np.ascontiguousarray(np.concatenate(center))
        self.gate = np.concatenate(gate)
        self.start = np.array([t.start for t in self.tracks], np.int64)
        self.finish = np.array([t.finish for t in self.tracks], np.int64)
        self.height = np.array([t.height for t in self.tracks], np.float64)
        return list(range(first, len(self.tracks)))

    def quads(self, k: int) -> slice:
        """Rows of track ``k`` in the quad arrays."""
        return slice(int(self.quad_off[k]), int(self.quad_off[k + 1]))

    def sections(self, k: int) -> slice:
        """Rows of track ``k`` in the cross-section arrays."""
        return slice(int(self.quad_off[k]) + k, int(self.quad_off[k + 1]) + k + 1)

    @property
    def layout(self) -> np.ndarray:
        """``quad_off`` [K+1], as the kernels take it."""
        return self.quad_off
