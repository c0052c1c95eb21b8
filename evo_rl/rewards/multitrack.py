"""What reward terms see when the cars of one source drive different tracks (``env.tracks``).

A term is built once for all N cars. With several tracks its ``track`` argument is a
:class:`TrackGroup` (car ``i`` drives ``tracks[track_id[i]]``) and its ``reference`` a
:class:`ReferenceSet`, which answers :meth:`~ReferenceSet.along` and :meth:`~ReferenceSet.offset`
for every car against its own track's reference, in one vectorised call. Both follow the source:
``track_id`` is the source's own array, and tracks added later (a curriculum) join both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from evo_rl.errors import ConfigError
from evo_rl.rewards.reference_trajectory import ReferenceTrajectory
from evo_rl.sim.track import Track

_GAP = 1e6  # m between the packed arc-length ranges of two tracks' references


class TrackGroup:
    """The tracks of a multi-track source: car ``i`` drives ``tracks[track_id[i]]``.

    ``tracks`` and ``track_id`` are the source's own list and ``[N]`` array (not copies), so the
    group always describes the cars as they are now.
    """

    def __init__(self, tracks: list[Track], track_id: np.ndarray) -> None:
        self.tracks = tracks
        self.track_id = track_id

    @property
    def name(self) -> str:
        return f"{len(self.tracks)} tracks"

    def quad_tables(self, table: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(rows [Q, ...], first [K])``: ``table(track)`` ``[M_k, ...]`` of every track stacked, and the first
        row of each; car ``i`` at quad ``q`` reads ``rows[first[track_id[i]] + q]``."""
        parts = [np.asarray(table(t)) for t in self.tracks]
        first = np.concatenate([[0], np.cumsum([len(p) for p in parts])[:-1]]).astype(np.int64)
        return np.concatenate(parts), first


class ReferenceSet:
    """Reference trajectories of several tracks, read per car as one (``along``, ``offset``)."""

    def __init__(self, refs: Sequence[ReferenceTrajectory], track_id: np.ndarray) -> None:
        self.refs: list[ReferenceTrajectory] = []
        self.track_id = track_id
        self.add(refs)

    def add(self, refs: Sequence[ReferenceTrajectory]) -> None:
        """Append the references of tracks added to the source, in the same order."""
        self.refs.extend(refs)
        xs, alongs, lats, shift = [], [], [], []
        start = 0.0
        for r in self.refs:
            s = np.asarray(r._s, np.float64)
            shift.append(start - s[0])
            xs.append(s + shift[-1])
            alongs.append(np.asarray(r._along, np.float64))
            lats.append(np.asarray(r._lat, np.float64))
            start = xs[-1][-1] + _GAP
        self._x = np.concatenate(xs)  # [P] packed arc lengths, increasing
        self._along = np.concatenate(alongs)  # [P]
        self._lat = np.concatenate(lats)  # [P]
        self._shift = np.array(shift)  # [K] packed minus own arc length
        self._s0 = np.array([r._s[0] for r in self.refs], np.float64)  # [K] first point's arc length
        self._s1 = np.array([r._s[-1] for r in self.refs], np.float64)  # [K] last point's
        self._a1 = np.array([r._along[-1] for r in self.refs], np.float64)  # [K] reference length at the last point

    def along(self, progress_s: np.ndarray) -> np.ndarray:
        """Distance along each car's reference, m (as :meth:`ReferenceTrajectory.along`, slope 1 past the ends)."""
        k = self.track_id
        s0, s1 = self._s0[k], self._s1[k]
        out = np.interp(np.clip(progress_s, s0, s1) + self._shift[k], self._x, self._along)
        out = np.where(progress_s < s0, progress_s - s0, out)
        return np.where(progress_s > s1, self._a1[k] + (progress_s - s1), out)

    def offset(self, progress_s: np.ndarray, lateral: np.ndarray) -> np.ndarray:
        """Signed lateral offset of each car from its reference at the same arc length, m (left positive)."""
        k = self.track_id
        x = np.clip(progress_s, self._s0[k], self._s1[k]) + self._shift[k]
        return lateral - np.interp(x, self._x, self._lat)

    def __getattr__(self, name: str) -> Any:
        raise ConfigError(
            f"this reward term reads the reference trajectory's {name!r}, which only one track has; with several "
            "env.tracks use terms that follow progress along the track (progress_distance, potential_progress, "
            "speed, checkpoint, lateral_offset)"
        )
