"""Track drawing (TopView) and the ``evo-rl tracks`` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evo_rl.cli import main
from evo_rl.sim.catalog import get_track, list_tracks
from evo_rl.sim.render import FINISH, ROAD, START, TopView, speed_colors
from evo_rl.sim.track import Track


def test_top_view_mapping() -> None:
    t = get_track("evo-mini")
    view = TopView(t, size=500, margin=20)
    assert max(view.width, view.height) == 500
    pts = np.concatenate([t.left, t.right])
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    corners = view.to_px(np.array([lo, hi]))
    # lower-left corner of the track at the bottom-left margin, y up in metres is y down in pixels
    np.testing.assert_allclose(corners[0], [20, view.height - 20])
    assert corners[1][1] >= 20 - 1e-9 and corners[1][0] <= view.width - 20 + 1e-9
    np.testing.assert_allclose(view.to_px(lo + [10.0, 10.0]) - corners[0], [10 * view.scale, -10 * view.scale])


def test_draw_base_colours() -> None:
    t = get_track("evo-mini")
    view = TopView(t, size=600)
    img = view.draw_base()
    assert img.size == (view.width, view.height) and img.mode == "RGB"
    px = img.load()
    # middle of the first long quad is road; the start and finish lines have their colours
    mid = view.to_px(0.5 * (t.center[1] + t.center[2]) + [0.0, 3.0])
    assert px[int(mid[0]), int(mid[1])] == ROAD
    for k, color in ((t.start, START), (t.finish, FINISH)):
        x, y = view.to_px(t.center[k] + 0.3 * (t.left[k] - t.center[k]))
        assert px[int(round(x)), int(round(y))] == color
    with_line = view.draw_base(racing_line=t.center, racing_speed=np.linspace(0, 80, len(t.center)))
    assert np.any(np.asarray(with_line) != np.asarray(img))
    view.draw_trace(img, t.center[:5], np.arange(5.0))
    view.draw_car(img, t.center[3], 0.0)
    view.draw_text(img, ["evo-mini"])


def test_speed_colors() -> None:
    c = speed_colors(np.array([0.0, 40.0, 80.0, 200.0]), vmax=80.0)
    assert c.dtype == np.uint8 and c.shape == (4, 3)
    assert tuple(c[0]) == (40, 70, 255) and tuple(c[2]) == (240, 40, 30) and tuple(c[3]) == tuple(c[2])
    assert tuple(c[1]) == (40, 210, 60)


def test_cli_list_json(capsys: pytest.CaptureFixture) -> None:
    assert main(["tracks", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == list_tracks()
    test = rows[0]
    assert test["name"] == "evo-test" and test["checkpoints"] == 5
    assert 1300 <= test["length_m"] <= 2200 and 35 <= test["lap_time_s"] <= 60
    mini = rows[1]
    assert 12 <= mini["lap_time_s"] <= 22
    assert main(["tracks", "list"]) == 0
    assert "evo-hairpins" in capsys.readouterr().out


def test_cli_show_writes_png(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "t.png"
    assert main(["tracks", "show", "evo-mini", "--out", str(out), "--size", "400"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["track"] == "evo-mini" and summary["lap_time_s"] > 0
    with Image.open(out) as img:
        assert max(img.size) >= 400 and img.mode == "RGB"
    assert main(["tracks", "show", "evo-mini", "--out", str(tmp_path / "t.jpg")]) == 2
    assert "write a .png file" in capsys.readouterr().err
    assert main(["tracks", "show", "no-such-track", "--out", str(out)]) == 2
    assert "unknown track 'no-such-track'" in capsys.readouterr().err


def test_cli_generate_writes_a_loadable_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "g.track"
    args = ["tracks", "generate", "--seed", "3", "--blocks", "8", "--min-radius", "40", "--checkpoints", "3"]
    assert main([*args, "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    t = Track.load(out)
    assert summary["name"] == "g" == t.name and summary["quads"] == t.n_quads and len(t.checkpoints) == 3
    assert len(summary["blocks"].split()) == 8 and "L1" not in summary["blocks"].split()
    again = tmp_path / "g2.track"
    assert main([*args, "--out", str(again), "--name", "g"]) == 0
    assert again.read_text() == out.read_text()
    assert main(["tracks", "show", str(out), "--out", str(tmp_path / "g.png"), "--no-line"]) == 0
    assert (tmp_path / "g.png").is_file()
    assert main(["tracks", "generate", "--seed", "1", "--min-radius", "100", "--out", str(out)]) == 2
    assert "leaves no curve blocks" in capsys.readouterr().err
