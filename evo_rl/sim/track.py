"""The track model: a closed strip of convex quads between wall cross-sections.

See docs/architecture.md ("The track model") for the layout every other part of
the simulator relies on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(eq=False)
class Track:
    """A TrackMania-style track as a strip of quads.

    ``left[k]`` and ``right[k]`` are the wall points of cross-section ``k``
    (``k = 0..M``), left and right of the driving direction. Quad ``k`` lies
    between cross-sections ``k`` and ``k + 1``.
    """

    name: str
    left: np.ndarray  # [M+1, 2] float64
    right: np.ndarray  # [M+1, 2] float64
    width: float
    start: int
    finish: int
    checkpoints: np.ndarray  # [C] int64, increasing, start < c < finish
    height: float = 9.0
    center: np.ndarray = field(init=False)  # [M+1, 2]
    s: np.ndarray = field(init=False)  # [M+1] arc length of center, m

    def __post_init__(self) -> None:
        self.left = np.ascontiguousarray(self.left, dtype=np.float64)
        self.right = np.ascontiguousarray(self.right, dtype=np.float64)
        self.checkpoints = np.ascontiguousarray(self.checkpoints, dtype=np.int64).reshape(-1)
        self.start = int(self.start)
        self.finish = int(self.finish)
        self.width = float(self.width)
        self.height = float(self.height)
        self.center = 0.5 * (self.left + self.right)
        seg = np.linalg.norm(np.diff(self.center, axis=0), axis=1)
        self.s = np.concatenate([[0.0], np.cumsum(seg)])

    @property
    def n_quads(self) -> int:
        """Number of quads M."""
        return len(self.left) - 1

    @property
    def length(self) -> float:
        """Distance from the start line to the finish line along the centre line, m."""
        return float(self.s[self.finish] - self.s[self.start])
