"""What one observation is made of, so the replay memory can store each frame once.

An :class:`ObsLayout` lists the observation's fields in tuple order. A field with
``hist_len == 0`` is one frame per step (speed, gear); a field with ``hist_len >= 1``
is a stack ``[hist_len, *shape]`` of the last frames, oldest first (LIDAR, images).
``act_buf_len`` previous actions ``(act_dim,)`` follow the fields, oldest first.
The memory keeps only the newest frame of every field and rebuilds stacks and
previous actions by index when sampling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from evo_rl.errors import EvoError

FLAVOUR_FIELDS = {
    "lidar": ("speed", "lidar"),
    "lidar_progress": ("speed", "progress", "lidar"),
    "full": ("speed", "gear", "rpm", "images"),
}


@dataclass(frozen=True)
class ObsField:
    """One part of the observation."""

    name: str
    shape: tuple[int, ...]  # shape of one frame
    dtype: str  # NumPy dtype name, e.g. "float32", "uint8"
    hist_len: int = 0  # 0: the observation holds one frame; k >= 1: a stack [k, *shape], oldest first

    @property
    def obs_shape(self) -> tuple[int, ...]:
        """Shape of this field in one car's observation."""
        return (self.hist_len, *self.shape) if self.hist_len else self.shape

    @property
    def frame_bytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


@dataclass(frozen=True)
class ObsLayout:
    """The fields of an observation, then ``act_buf_len`` previous actions.

    ``flat=True``: the observation is the single field's array rather than a tuple
    (EVO RL's ``env.flat``); nothing can be rebuilt then, so the field is stored whole.
    """

    fields: tuple[ObsField, ...]
    act_buf_len: int = 0
    act_dim: int = 3
    flat: bool = False

    def __post_init__(self) -> None:
        if not self.fields:
            raise EvoError("an ObsLayout needs at least one field")
        if self.act_buf_len < 0 or self.act_dim < 1:
            raise EvoError(
                f"ObsLayout: act_buf_len must be >= 0 and act_dim >= 1, got {self.act_buf_len}, {self.act_dim}"
            )
        if self.flat and (len(self.fields) != 1 or self.act_buf_len or self.fields[0].hist_len):
            raise EvoError("a flat ObsLayout holds exactly one field without history and no previous actions")
        for f in self.fields:
            if f.hist_len < 0:
                raise EvoError(f"ObsLayout field {f.name!r}: hist_len must be >= 0, got {f.hist_len}")

    @property
    def lookback(self) -> int:
        """How many earlier steps one observation draws on (frames or previous actions)."""
        frames = max((f.hist_len - 1 for f in self.fields if f.hist_len), default=0)
        return max(frames, self.act_buf_len)

    @property
    def n_entries(self) -> int:
        """Entries of the observation tuple (fields, then previous actions)."""
        return len(self.fields) + self.act_buf_len

    @classmethod
    def from_space(cls, space: spaces.Space, hist_len: int, act_buf_len: int, flavour: str | None = None) -> ObsLayout:
        """The layout of one car's observation ``space`` (a vector env's ``single_observation_space``).

        A Tuple space ends with ``act_buf_len`` action Boxes; of the other entries, those
        of shape ``(hist_len, ...)`` with two or more axes are histories. ``flavour``
        (lidar, lidar_progress, full) names the fields; a Box space gives a flat layout.
        """
        if isinstance(space, spaces.Box):
            if len(space.shape) != 1:
                raise EvoError(f"a flat observation space must be one-dimensional, got shape {space.shape}")
            return cls((ObsField("flat", tuple(space.shape), np.dtype(space.dtype).name),), flat=True)
        if not isinstance(space, spaces.Tuple):
            raise EvoError(f"replay memory: observation space must be a Tuple or a Box, got {type(space).__name__}")
        parts = list(space.spaces)
        n_fields = len(parts) - act_buf_len
        names = FLAVOUR_FIELDS.get(flavour) if flavour is not None else None
        if flavour is not None and names is None:
            raise EvoError(f"unknown flavour {flavour!r}; use one of {list(FLAVOUR_FIELDS)}")
        if names is not None and n_fields == len(names) + 1:  # env.lookahead_points: the course preview
            names = (*names, "lookahead")
        if n_fields < 1 or (names is not None and n_fields != len(names)):
            raise EvoError(
                f"observation space has {len(parts)} entries, which does not match "
                f"{'flavour ' + repr(flavour) + ' with ' if names else ''}act_buf_len={act_buf_len}"
            )
        acts = parts[n_fields:]
        act_dim = acts[0].shape[0] if acts and acts[0].shape else 3
        for i, a in enumerate(acts):
            if not isinstance(a, spaces.Box) or a.shape != (act_dim,):
                raise EvoError(f"observation entry {n_fields + i} should be a previous action of shape ({act_dim},)")
        fields = []
        for i, p in enumerate(parts[:n_fields]):
            if not isinstance(p, spaces.Box):
                raise EvoError(f"observation entry {i} must be a Box, got {type(p).__name__}")
            name = names[i] if names else f"obs{i}"
            dtype = np.dtype(p.dtype).name
            if len(p.shape) >= 2 and p.shape[0] == hist_len:
                fields.append(ObsField(name, tuple(p.shape[1:]), dtype, hist_len))
            else:
                fields.append(ObsField(name, tuple(p.shape), dtype, 0))
        return cls(tuple(fields), act_buf_len, act_dim)

    def frames(self, obs: Any, n: int) -> list[np.ndarray]:
        """The newest frame of every field of a batched observation of ``n`` cars: ``[n, *shape]`` each."""
        entries = (obs,) if self.flat else obs
        if not isinstance(entries, (tuple, list)) or len(entries) != self.n_entries:
            got = f"{len(entries)} entries" if isinstance(entries, (tuple, list)) else type(obs).__name__
            raise EvoError(f"observation should be a tuple of {self.n_entries} arrays for this layout, got {got}")
        out = []
        for f, x in zip(self.fields, entries[: len(self.fields)], strict=True):
            x = np.asarray(x)
            if x.shape != (n, *f.obs_shape):
                raise EvoError(f"observation field {f.name!r} should have shape {(n, *f.obs_shape)}, got {x.shape}")
            out.append(x[:, -1] if f.hist_len else x)
        return out

    def final_frames(self, final_obs: Any, final_mask: np.ndarray | None, rows: np.ndarray, n: int) -> list[np.ndarray]:
        """The newest frames of the final observations of cars ``rows`` (ended episodes) of an ``n``-car step.

        ``final_obs`` is a vector env's ``infos["final_obs"]``: a batched observation valid where
        ``final_mask``, or Gymnasium's object array of per-car observations (``final_mask`` None).
        """
        if final_obs is None:
            raise EvoError(f"replay memory: cars {rows.tolist()} ended an episode but got no final_obs")
        if final_mask is not None and not np.asarray(final_mask, bool)[rows].all():
            missing = rows[~np.asarray(final_mask, bool)[rows]]
            raise EvoError(f"replay memory: final_mask has no final observation for ended cars {missing.tolist()}")
        if isinstance(final_obs, np.ndarray) and final_obs.dtype == object:
            per_car = [final_obs[c] for c in rows.tolist()]  # Gymnasium's per-car format: only the ended cars
            if any(r is None for r in per_car):
                raise EvoError("replay memory: final_obs holds None for a car whose episode ended")
            if self.flat:
                stacked: Any = np.stack(per_car)
            else:
                stacked = tuple(np.stack([r[e] for r in per_car]) for e in range(self.n_entries))
            return self.frames(stacked, rows.size)
        return [f[rows] for f in self.frames(final_obs, n)]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (saved with the memory)."""
        return {
            "fields": [[f.name, list(f.shape), f.dtype, f.hist_len] for f in self.fields],
            "act_buf_len": self.act_buf_len,
            "act_dim": self.act_dim,
            "flat": self.flat,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ObsLayout:
        fields = tuple(
            ObsField(str(n), tuple(int(s) for s in shape), str(dt), int(h)) for n, shape, dt, h in d["fields"]
        )
        return cls(fields, int(d["act_buf_len"]), int(d["act_dim"]), bool(d["flat"]))
