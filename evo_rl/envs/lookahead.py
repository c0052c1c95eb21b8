"""The course preview (``env.lookahead_points``): the road ahead as the track model describes it.

As Gran Turismo Sophy's course points, each car sees its track's direction and curvature at
``P`` points evenly spaced over ``env.lookahead_distance`` metres ahead of it along the centre
line: the heading of the road there relative to the car's own heading (rad, wrapped to
[-pi, pi], left positive) and the curvature (1/m, left turns positive, clipped to
:data:`MAX_CURVATURE`). It needs only a track model, the car's progress along it and its heading,
so a game with a recorded track model computes it as the simulator does. Past the end of the
strip the last values hold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from evo_rl.sim.track import Track

MAX_CURVATURE = 0.1  # 1/m: a 10 m radius; the tightest block curve is 16 m
_GAP = 1e6  # m between the packed arc-length ranges of two tracks


def course_tables(track: Track) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(s [M+1], heading [M], curvature [M])`` of a track's centre line, one value per segment.

    A segment's heading (rad, unwrapped) is its direction; its curvature is half the turns at its two
    ends over its length (a 48 m curve of short segments: 1/48; a straight: ~0).
    """
    d = np.diff(track.center, axis=0)  # [M, 2]
    seg = np.maximum(np.linalg.norm(d, axis=1), 1e-9)  # [M]
    heading = np.unwrap(np.arctan2(d[:, 1], d[:, 0]))  # [M]
    turn = np.diff(heading)  # [M-1] at the inner cross-sections
    curvature = 0.5 * (np.concatenate([[0.0], turn]) + np.concatenate([turn, [0.0]])) / seg  # [M]
    return track.s.copy(), heading, np.clip(curvature, -MAX_CURVATURE, MAX_CURVATURE)


class CoursePreview:
    """The look-ahead of N cars on one or several tracks (car ``i`` on ``tracks[track_id[i]]``)."""

    def __init__(
        self, tracks: Sequence[Track], points: int, distance: float, track_id: np.ndarray | None = None
    ) -> None:
        self.points = int(points)
        self.ahead = distance * np.arange(1, points + 1) / points  # [P] m
        self.track_id = track_id  # the source's own [N] array, or None: every car on tracks[0]
        self.tracks: list[Track] = []
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.add(tracks)

    def add(self, tracks: Sequence[Track]) -> None:
        """Tracks added to the source, in the same order."""
        self.tracks.extend(tracks)
        self._parts.extend(course_tables(t) for t in tracks)
        shift, xs, start = [], [], 0.0
        for s, _, _ in self._parts:
            shift.append(start - s[0])
            xs.append(s + shift[-1])
            start = xs[-1][-1] + _GAP
        self._x = np.concatenate([x[:-1] for x in xs])  # [S] packed start of every segment, increasing
        self._heading = np.concatenate([h for _, h, _ in self._parts])  # [S] direction of each segment
        self._curv = np.concatenate([c for _, _, c in self._parts])  # [S] its curvature
        self._shift = np.array(shift)  # [K]
        self._s0 = np.array([s[0] for s, _, _ in self._parts])  # [K]
        self._s1 = np.array([s[-1] for s, _, _ in self._parts])  # [K]

    def __call__(self, progress_s: np.ndarray, yaw: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``out [N, 2P]`` float32: relative headings of the P points, then their curvatures."""
        n = len(progress_s)
        k = np.zeros(n, np.int64) if self.track_id is None else self.track_id
        lo, hi = self._s0[k][:, None], self._s1[k][:, None]  # [N, 1]
        q = np.clip(np.asarray(progress_s)[:, None] + self.ahead[None, :], lo, hi) + self._shift[k][:, None]
        seg = np.searchsorted(self._x, q, side="right") - 1  # [N, P] segment under each point
        rel = self._heading[seg] - np.asarray(yaw)[:, None]
        out[:, : self.points] = (rel + math.pi) % (2.0 * math.pi) - math.pi
        out[:, self.points :] = self._curv[seg]
        return out
