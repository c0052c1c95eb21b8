"""Record laps: the fastest laps :mod:`evo_rl.sim.planner` has driven, a harder target than the reference lap.

A planner lap costs a minute or more, so records are computed once and stored:

- the built-in tracks' records ship with EVO RL in ``evo_rl/data/records.json``
  (written by ``evo-rl tracks record NAME --write`` with the default config);
- records of other tracks (``.track`` files, generated tracks, or the built-in ones with
  another car) go to a cache file, ``$EVO_RL_RECORDS`` if set, else
  ``$XDG_CACHE_HOME/evo_rl/records.json`` (``~/.cache/evo_rl/records.json``).

A record holds for one track geometry (:func:`track_key`) and one car, simulator step and
controls (:func:`config_key`): :func:`record_lap_time` returns None for any other combination.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evo_rl.config import EvoConfig
from evo_rl.errors import EvoError
from evo_rl.sim.track import Track

if TYPE_CHECKING:
    from evo_rl.sim.planner import PlannerLap

PACKAGE_RECORDS = Path(__file__).resolve().parent.parent / "data" / "records.json"
FORMAT = 1  # version of the records file layout


@dataclass
class Record:
    """One record lap."""

    track: str  # track name
    lap_time: float  # s, the record
    reference_lap_time: float  # s, the reference lap of the same car, for comparison
    wall_contacts: int  # control steps of the lap with a wall contact
    planner: dict[str, Any]  # the PlannerSettings that drove it
    plan_seconds: float  # wall-clock seconds the planner took
    date: str  # ISO date it was driven
    track_key: str  # the track's geometry (track_key)
    config_key: str  # the car, simulator step and controls (config_key)


def track_key(track: Track) -> str:
    """A digest of the track's geometry, start, finish and checkpoints."""
    from evo_rl.sim.reference_lap import _track_key

    return _track_key(track)


def config_key(cfg: EvoConfig) -> str:
    """A digest of what a lap time depends on beside the track: car, ``sim.dt``, ``sim.substeps``, controls."""
    what = {
        "car": cfg.car.model_dump(mode="json"),
        "dt": cfg.sim.dt,
        "substeps": cfg.sim.substeps,
        "controls": cfg.env.controls,
    }
    return hashlib.sha1(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


def cache_path() -> Path:
    """The cache file of records of other tracks: ``$EVO_RL_RECORDS``, else under ``$XDG_CACHE_HOME``."""
    if os.environ.get("EVO_RL_RECORDS"):
        return Path(os.environ["EVO_RL_RECORDS"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "evo_rl" / "records.json"


def load_records(path: Path) -> list[Record]:
    """The records in ``path`` (none if the file does not exist)."""
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text())
        rows = data["records"]
        return [Record(**row) for row in rows]
    except (ValueError, KeyError, TypeError) as e:
        raise EvoError(f"records file {path} is not a valid records file ({type(e).__name__}: {e}); delete it") from e


def save_records(path: Path, records: list[Record]) -> None:
    """Write ``records`` to ``path`` atomically (one record per line, sorted by track name)."""
    rows = sorted(records, key=lambda r: (r.track, r.config_key))
    lines = ",\n".join("    " + json.dumps(asdict(r), sort_keys=True) for r in rows)
    text = f'{{\n  "format": {FORMAT},\n  "records": [\n{lines}\n  ]\n}}\n'
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _resolve(track: str | Path | Track) -> Track:
    if isinstance(track, Track):
        return track
    from evo_rl.sim.catalog import get_track

    return get_track(track)


def find_record(track: str | Path | Track, cfg: EvoConfig | None = None) -> Record | None:
    """The fastest stored record of ``track`` (a Track, a built-in name or a ``.track`` path) for ``cfg``
    (the default config if None), from the shipped records and the cache; None if there is none."""
    t = _resolve(track)
    tk, ck = track_key(t), config_key(cfg or EvoConfig())
    found = [r for path in (PACKAGE_RECORDS, cache_path()) for r in load_records(path)]
    match = [r for r in found if r.track_key == tk and r.config_key == ck]
    return min(match, key=lambda r: r.lap_time) if match else None


def record_lap_time(track: str | Path | Track | None, cfg: EvoConfig | None = None) -> float | None:
    """The record lap time of ``track`` for ``cfg``'s car, step and controls, s; None where none is known."""
    if track is None:
        return None
    record = find_record(track, cfg)
    return record.lap_time if record is not None else None


def new_record(track: Track, cfg: EvoConfig, lap: PlannerLap) -> Record:
    """A :class:`Record` of a finished planner lap ``lap`` of ``track`` driven with ``cfg``."""
    if lap.lap.lap_time is None:
        raise EvoError(f"track {track.name!r}: the planner did not finish, so there is no record lap")
    return Record(
        track=track.name,
        lap_time=round(float(lap.lap.lap_time), 3),
        reference_lap_time=round(float(lap.lap.reference_lap_time), 3),
        wall_contacts=int(lap.lap.wall_contacts),
        planner=asdict(lap.settings),
        plan_seconds=round(float(lap.plan_seconds), 1),
        date=datetime.date.today().isoformat(),
        track_key=track_key(track),
        config_key=config_key(cfg),
    )


def store_record(record: Record, path: Path) -> bool:
    """Put ``record`` in ``path`` unless a record there of the same track and config is as fast.

    Returns whether it was written (a slower record never replaces a faster one).
    """
    records = load_records(path)
    same = [r for r in records if r.track_key == record.track_key and r.config_key == record.config_key]
    if same and min(r.lap_time for r in same) <= record.lap_time:
        return False
    rest = [r for r in records if r not in same]
    save_records(path, [*rest, record])
    return True
