"""Tracks: blocks, validation, the generator, built-in tracks, .track files, centreline import."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from conftest import strip

from evo_rl.errors import TrackError
from evo_rl.sim.blocks import (
    CELL,
    Block,
    Pose,
    blocks_code,
    build_track,
    cell_center,
    parse_blocks,
    place,
)
from evo_rl.sim.catalog import BUILTIN, get_track, list_tracks
from evo_rl.sim.generate import block_catalogue, generate, generate_track
from evo_rl.sim.track import Track, candidate_pairs, segment_distances

ALL_BLOCKS = [Block("straight", n) for n in (1, 2, 5)] + [
    Block(kind, size, side)
    for kind, sizes in (("curve", (1, 2, 3)), ("sbend", (2, 3)), ("hairpin", (1, 2)))
    for size in sizes
    for side in (1, -1)
]


def circumradii(points: np.ndarray) -> np.ndarray:
    """Radius of the circle through each point and its two neighbours (plain Python)."""
    out = []
    for a, b, c in zip(points[:-2], points[1:-1], points[2:], strict=True):
        ab, bc, ca = math.dist(a, b), math.dist(b, c), math.dist(c, a)
        area2 = abs((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]))
        out.append(math.inf if area2 < 1e-9 else ab * bc * ca / (2 * area2))
    return np.array(out)


def sample_centre(track: Track, step: float) -> np.ndarray:
    s = np.arange(0.0, track.s[-1], step)
    return np.stack([np.interp(s, track.s, track.center[:, 0]), np.interp(s, track.s, track.center[:, 1])], axis=1)


# --------------------------------------------------------------------------- blocks


def walk_pieces(block: Block, step: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Integrate the block's centre line from (0, 0) heading +x in small steps: points and headings."""
    x, y, th = 0.0, 0.0, 0.0
    pts, headings = [(x, y)], [th]
    for length, curvature in block.pieces():
        n = max(1, int(round(length / step)))
        h = length / n
        for _ in range(n):
            # midpoint heading keeps the integration second-order accurate
            mid = th + 0.5 * h * curvature
            x, y = x + h * math.cos(mid), y + h * math.sin(mid)
            th += h * curvature
            pts.append((x, y))
            headings.append(th)
    return np.array(pts), np.array(headings)


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=lambda b: b.code)
def test_block_geometry_matches_its_grid_exit_and_footprint(block: Block) -> None:
    pts, heading = walk_pieces(block)
    cells, nxt = place(block, Pose((0, 0), 0))
    assert np.allclose(pts[-1], nxt.entry_point(), atol=1e-6)
    assert abs(math.remainder(heading[-1] - 0.5 * math.pi * nxt.heading, 2 * math.pi)) < 1e-9
    assert len(set(cells)) == len(cells)
    # both walls (20 m road) stay inside the block's cells
    normal = np.stack([-np.sin(heading), np.cos(heading)], axis=1)
    for wall in (pts + 10.0 * normal, pts - 10.0 * normal):
        for p in wall:
            inside = any(
                abs(p[0] - cell_center(c)[0]) <= CELL / 2 + 1e-4 and abs(p[1] - cell_center(c)[1]) <= CELL / 2 + 1e-4
                for c in cells
            )
            assert inside, (block.code, p)


def test_block_radii() -> None:
    assert [Block("curve", k, 1).radius for k in (1, 2, 3)] == [16.0, 48.0, 80.0]
    assert [Block("sbend", n, 1).radius for n in (2, 3)] == [40.0, 80.0]
    assert [Block("hairpin", k, -1).radius for k in (1, 2)] == [16.0, 32.0]
    assert Block("straight", 3).radius == math.inf


def test_parse_blocks_round_trip_and_errors() -> None:
    code = "S4 L1 R2 ZL2 ZR3 HL1 HR2 L3"
    assert blocks_code(parse_blocks(code)) == code
    assert parse_blocks("s2 hl1") == [Block("straight", 2), Block("hairpin", 1, 1)]
    with pytest.raises(TrackError, match=r"block 1 'X3' is not a block code"):
        parse_blocks("S1 X3")
    with pytest.raises(TrackError, match=r"block 0 'L4'.*sizes 1\.\.3"):
        parse_blocks("L4")
    with pytest.raises(TrackError, match=r"sizes 2\.\.3"):
        parse_blocks("ZL1")


def test_build_track_layout() -> None:
    t = build_track("S5 L1 S5", "t", n_checkpoints=0)
    # back of start, start line, end of the straight run, 12 arc steps of 7.5°, finish line, run-off end
    assert t.n_quads == 16
    assert t.start == 1 and t.finish == 15
    np.testing.assert_allclose(t.center[1], [8.0, 0.0])
    np.testing.assert_allclose(t.center[2], [6 * CELL, 0.0])
    # the centre of the curve cell's arc: radius 16 around the cell corner
    arc = t.center[2:15]
    np.testing.assert_allclose(np.linalg.norm(arc - [6 * CELL, 16.0], axis=1), 16.0)
    # finish line 16 m into the finish block, run-off block after it
    np.testing.assert_allclose(t.center[15], [6 * CELL + 16, 16 + 5 * CELL + 16])
    np.testing.assert_allclose(t.center[16], [6 * CELL + 16, 16 + 7 * CELL])
    np.testing.assert_allclose(np.linalg.norm(t.left - t.right, axis=1), 20.0)


def test_build_track_checkpoints_at_block_joints() -> None:
    t = build_track("S3 R1 S2 L2 S3", "t", n_checkpoints=3)
    assert len(t.checkpoints) == 3
    for k in t.checkpoints:  # joints are middles of cell edges: one coordinate on a cell edge, the other a centre
        x, y = t.center[k]
        assert math.isclose(x % CELL, 0.0, abs_tol=1e-9) or math.isclose(y % CELL, CELL / 2, abs_tol=1e-9)
    with pytest.raises(TrackError, match="only 4 block joints"):
        build_track("S3 R1 S2", "t", n_checkpoints=5)


def test_build_track_overlap_is_named() -> None:
    with pytest.raises(TrackError, match=r"block 7 \(S2\) overlaps block 4 \(L2\) at grid cell"):
        build_track("S3 L1 S2 L2 S1 HL1 S2", "t")


# --------------------------------------------------------------------------- validation


def test_segment_distances_against_sampling() -> None:
    rng = np.random.default_rng(0)
    p1, p2, q1, q2 = (rng.uniform(-10, 10, (120, 2)) for _ in range(4))
    got = segment_distances(p1, p2, q1, q2)
    u = np.linspace(0, 1, 201)[:, None]
    for k in range(120):
        a = p1[k] + u * (p2[k] - p1[k])  # [201, 2]
        b = q1[k] + u * (q2[k] - q1[k])
        sampled = np.min(np.linalg.norm(a[:, None] - b[None], axis=2))
        step = 0.5 * max(np.linalg.norm(p2[k] - p1[k]), np.linalg.norm(q2[k] - q1[k])) / 200
        assert got[k] <= sampled + 1e-9
        assert sampled <= got[k] + 2 * step


def test_candidate_pairs_against_brute_force() -> None:
    rng = np.random.default_rng(1)
    a = rng.uniform(0, 200, (250, 2))
    b = a + rng.normal(0, 15, (250, 2))
    i, j = candidate_pairs(a, b, 3.0)
    lo, hi = np.minimum(a, b) - 3.0, np.maximum(a, b) + 3.0
    want = {(p, q) for p in range(250) for q in range(p + 1, 250) if (lo[p] <= hi[q]).all() and (lo[q] <= hi[p]).all()}
    assert set(zip(i.tolist(), j.tolist(), strict=True)) == want


@pytest.mark.parametrize("name", list(BUILTIN))
def test_builtin_tracks_validate(name: str) -> None:
    t = get_track(name)
    t.validate()
    assert t is get_track(name)  # cached
    assert t.name == name and len(t.checkpoints) == BUILTIN[name].checkpoints
    assert np.all(np.diff(t.s) > 0)


def test_builtin_track_sizes() -> None:
    assert list_tracks()[:2] == ["evo-test", "evo-mini"] and len(list_tracks()) >= 5
    assert 1300 <= get_track("evo-test").length <= 2200
    assert 400 <= get_track("evo-mini").length <= 700
    # hand-designed block lists: the geometry never changes
    assert get_track("evo-test").n_quads == 149
    assert get_track("evo-test").length == pytest.approx(1571.979, abs=1e-3)


def test_get_track_errors(tmp_path: Path) -> None:
    with pytest.raises(TrackError, match="unknown track 'nope'; built-in tracks: evo-test"):
        get_track("nope")
    with pytest.raises(TrackError, match="does not exist"):
        get_track(str(tmp_path / "missing.track"))


def test_validate_rejects_each_broken_rule() -> None:
    t = get_track("evo-test")
    L, R = t.left, t.right

    def bad(match: str, left=L, right=R, width=20.0, start=t.start, finish=t.finish, cps=t.checkpoints) -> None:
        with pytest.raises(TrackError, match=match):
            Track("x", left, right, width, start, finish, cps).validate()

    bad(r"quad 0 is reversed", left=R, right=L)
    moved = L.copy()
    moved[41] += 1.5 * (L[42] - L[41])
    bad(r"quad 4[01] is not convex", left=moved)
    nan = L.copy()
    nan[7, 1] = np.nan
    bad(r"left\[7\] is not finite", left=nan)
    dup = R.copy()
    dup[30] = dup[31]
    bad(r"quad 30 is degenerate: its right wall has zero length", right=dup)
    bad(r"width must be a positive", width=0.0)
    bad(r"finish < M = 149", finish=149)
    bad(r"strictly increasing", cps=t.checkpoints[::-1])
    bad(r"strictly between start", cps=[t.start])
    bad(r"at least 3 cross-sections", left=L[:2], right=R[:2])


def test_validate_wall_clearance() -> None:
    # a U-turn: straights along y = -r and y = +r joined by a half circle of radius r
    def u_turn(r: float) -> np.ndarray:
        th = np.linspace(-np.pi / 2, np.pi / 2, 41)
        back = np.stack([np.linspace(-100, 0, 21), np.full(21, -r)], axis=1)
        return np.concatenate([back[:-1], np.stack([r * np.cos(th), r * np.sin(th)], axis=1), back[::-1][1:] * [1, -1]])

    strip(u_turn(16.0), 20.0).validate()  # inner walls 12 m apart
    with pytest.raises(TrackError, match=r"walls of quads \d+ and \d+ are 2\.0 m apart \(< 4 m\)"):
        strip(u_turn(11.0), 20.0).validate()
    strip(u_turn(11.0), 20.0).validate(clearance=1.5)
    # a straight that runs into the side of an earlier part of the track
    path = np.concatenate([np.stack([np.linspace(0, 200, 11), np.zeros(11)], axis=1),
                           np.stack([np.full(10, 200.0), np.linspace(20, 200, 10)], axis=1),
                           np.stack([np.linspace(180, 100, 5), np.full(5, 200.0)], axis=1),
                           np.stack([np.full(10, 100.0), np.linspace(180, -40, 10)], axis=1)])  # fmt: skip
    with pytest.raises(TrackError, match=r"walls of quads \d+ and \d+ cross near"):
        strip(path, 10.0).validate()


# --------------------------------------------------------------------------- generator


def test_generator_is_deterministic() -> None:
    a, b, c = generate_track(11), generate_track(11), generate_track(12)
    np.testing.assert_array_equal(a.left, b.left)
    np.testing.assert_array_equal(a.right, b.right)
    np.testing.assert_array_equal(a.checkpoints, b.checkpoints)
    assert a.left.shape != c.left.shape or not np.array_equal(a.left, c.left)


def test_generator_valid_over_many_seeds() -> None:
    for seed in range(50):
        t, blocks = generate(seed, n_blocks=12, n_checkpoints=3)
        t.validate()
        assert len(blocks) == 12 and len(t.checkpoints) == 3
        assert all(not (p.kind == q.kind == "straight") for p, q in zip(blocks[:-1], blocks[1:], strict=True))


def test_generator_knobs() -> None:
    short = [generate_track(s, n_blocks=4).length for s in range(8)]
    long = [generate_track(s, n_blocks=32).length for s in range(8)]
    assert min(long) > max(short)
    for min_radius in (40.0, 48.0, 80.0):
        for seed in range(6):
            t, blocks = generate(seed, n_blocks=10, min_radius=min_radius)
            assert all(b.radius >= min_radius for b in blocks)
            assert circumradii(t.center).min() >= min_radius * (1 - 1e-9)
    tight = [circumradii(generate_track(s, n_blocks=16).center).min() for s in range(6)]
    assert min(tight) == pytest.approx(16.0)
    t = generate_track(3, n_blocks=10, n_checkpoints=7, width=14.0)
    assert len(t.checkpoints) == 7 and t.width == 14.0
    assert all(b.radius - 14.0 / 2 >= 4.0 for b in block_catalogue(0.0, 14.0))


def test_generator_errors() -> None:
    with pytest.raises(TrackError, match="leaves no curve blocks"):
        generate_track(0, min_radius=100.0)
    with pytest.raises(TrackError, match="n_checkpoints must be between 0 and n_blocks = 4"):
        generate_track(0, n_blocks=4, n_checkpoints=5)
    with pytest.raises(TrackError, match=r"width must be in \(0, 24\]"):
        generate_track(0, width=30.0)


def test_generator_never_returns_an_invalid_track(monkeypatch: pytest.MonkeyPatch) -> None:
    real_validate = Track.validate
    calls = []

    def flaky_validate(self: Track, clearance: float = 4.0) -> None:
        calls.append(self.n_quads)
        if len(calls) <= 2:
            raise TrackError("walls of quads 1 and 9 cross")
        real_validate(self, clearance)

    monkeypatch.setattr(Track, "validate", flaky_validate)
    t = generate_track(5, n_blocks=6)
    assert len(calls) == 3  # two layouts dropped, the third returned
    real_validate(t)

    def broken_validate(self: Track, clearance: float = 4.0) -> None:
        raise TrackError("quad 3 is not convex")

    monkeypatch.setattr(Track, "validate", broken_validate)
    with pytest.raises(
        TrackError, match=r"seed 5: no valid track of 6 blocks in 4 attempts \(.*quad 3 is not convex\)"
    ):
        generate_track(5, n_blocks=6, max_attempts=4)


# --------------------------------------------------------------------------- files


def test_save_load_round_trip(tmp_path: Path) -> None:
    for t in (get_track("evo-test"), generate_track(4, n_blocks=6, width=13.3)):
        path = tmp_path / f"{t.name}.track"
        t.save(path)
        u = Track.load(path)
        assert (u.name, u.width, u.height, u.start, u.finish) == (t.name, t.width, t.height, t.start, t.finish)
        np.testing.assert_array_equal(u.left, t.left)
        np.testing.assert_array_equal(u.right, t.right)
        np.testing.assert_array_equal(u.checkpoints, t.checkpoints)
        assert get_track(str(path)).n_quads == t.n_quads


def test_load_accepts_comments_and_blank_lines(tmp_path: Path) -> None:
    t = get_track("evo-mini")
    t.save(tmp_path / "a.track")
    lines = (tmp_path / "a.track").read_text().splitlines()
    lines.insert(1, "# made by hand")
    lines.insert(4, "")
    lines[5] += "  # metres"
    (tmp_path / "b.track").write_text("\n".join(lines) + "\n")
    np.testing.assert_array_equal(Track.load(tmp_path / "b.track").left, t.left)


MALFORMED = [
    (lambda L: L.__setitem__(0, "evo-rl-track 2"), r"line 1: unsupported format version '2'"),
    (lambda L: L.__setitem__(0, "hello world"), r"line 1: expected the header 'evo-rl-track 1'"),
    (lambda L: L.__setitem__(2, "width wide"), r"line 3: width must be a number, found 'wide'"),
    (lambda L: L.__setitem__(3, "height nan"), r"line 4: height must be finite"),
    (lambda L: L.__setitem__(2, "widht 20"), r"line 3: unknown key 'widht'"),
    (lambda L: L.insert(3, "width 3"), r"line 4: duplicate key 'width' \(first given on line 3\)"),
    (lambda L: L.pop(3), r"missing header key\(s\) height"),
    (lambda L: L.__setitem__(4, "start 1.5"), r"line 5: start must be an integer"),
    (lambda L: L.__setitem__(6, "checkpoints 3 x"), r"line 7: checkpoints must be integers"),
    (lambda L: L.__setitem__(10, "1 2 3"), r"line 11: expected a cross-section 'lx ly rx ry' \(4 numbers\), found 3"),
    (lambda L: L.__setitem__(10, "1 2 x 4"), r"line 11: cross-section values must be numbers"),
    (lambda L: L.__setitem__(10, "1 2 inf 4"), r"line 11: cross-section values must be finite"),
    (lambda L: L.__setitem__(6, "checkpoints 30 3"), r"strictly increasing.*checkpoints on line 7"),
    (lambda L: L.__delitem__(slice(12, None)), r"finish < M = 4.*finish on line 6"),
    (lambda L: L.__setitem__(12, "0 0 0 0"), r"quad 4 is degenerate.*cross-section k is on line 8 \+ k"),
    (lambda L: L.__delitem__(slice(8, None)), r"needs at least 3 cross-section lines, found 1"),
    (lambda L: L.clear(), r"is empty"),
]


@pytest.mark.parametrize("mutate,match", MALFORMED)
def test_malformed_files_name_the_line(tmp_path: Path, mutate, match: str) -> None:
    get_track("evo-mini").save(tmp_path / "ok.track")
    lines = (tmp_path / "ok.track").read_text().splitlines()
    mutate(lines)
    bad = tmp_path / "bad.track"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(TrackError, match=match) as e:
        Track.load(bad)
    assert str(bad) in str(e.value)


def test_save_rejects_unsaveable_names(tmp_path: Path) -> None:
    t = get_track("evo-mini")
    bad = Track("a # b", t.left, t.right, t.width, t.start, t.finish, t.checkpoints)
    with pytest.raises(TrackError, match="without '#'"):
        bad.save(tmp_path / "x.track")


# --------------------------------------------------------------------------- centreline import


@pytest.mark.parametrize("name", ["evo-test", "evo-technical", "evo-hairpins"])
def test_from_centreline_round_trip(name: str) -> None:
    t = get_track(name)
    pts = sample_centre(t, 2.0)
    u = Track.from_centreline(pts, t.width, name="copy", n_checkpoints=3)
    u.validate()
    assert u.name == "copy" and len(u.checkpoints) == 3
    assert abs(u.s[-1] - t.s[-1]) / t.s[-1] < 0.03
    assert abs(u.length - (u.s[-1] - 12.0)) < 3.5  # start 6 m in, finish 6 m before the end (within a spacing)
    np.testing.assert_allclose(np.linalg.norm(u.left - u.right, axis=1).min(), t.width, rtol=1e-9)
    # the walls lie width / 2 from the imported centre line (within the smoothing's corner cutting)
    dist = np.min(np.linalg.norm(u.center[:, None] - pts[None], axis=2), axis=1)
    assert dist.max() < 1.5


def test_from_centreline_game_positions_duplicates_and_noise() -> None:
    t = get_track("evo-mini")
    pts = sample_centre(t, 3.0)
    game = np.stack([pts[:, 0], np.full(len(pts), 42.0), pts[:, 1]], axis=1)  # (x, y_up, z)
    a = Track.from_centreline(game, 20.0)
    assert a.height == 42.0
    b = Track.from_centreline(np.repeat(pts, 3, axis=0), 20.0)  # a car standing still repeats positions
    np.testing.assert_allclose(b.left, a.left, atol=1e-9)
    noisy = pts + np.random.default_rng(0).normal(0.0, 0.3, pts.shape)
    c = Track.from_centreline(noisy, 20.0)
    assert abs(c.length - a.length) / a.length < 0.01


def test_from_centreline_refuses_folds_and_crossings() -> None:
    # west along y = 0, a half circle of radius 8 around (0, 8), back east along y = 16
    phi = np.linspace(0.0, np.pi, 60)
    hairpin = np.concatenate([np.stack([np.linspace(60, 0, 30), np.zeros(30)], axis=1)[:-1],
                              np.stack([-8 * np.sin(phi), 8 - 8 * np.cos(phi)], axis=1),
                              np.stack([np.linspace(0, 60, 30), np.full(30, 16.0)], axis=1)[1:]])  # fmt: skip
    with pytest.raises(TrackError, match=r"turns with radius [\d.]+ m at input point \d+, s = \d+ m.*width / 2 = 10 m"):
        Track.from_centreline(hairpin, 20.0)
    Track.from_centreline(hairpin, 10.0, smoothing=0.0)  # radius 8 > 5 and 6 m between the straights: fine
    u = np.linspace(0.1, 2 * np.pi - 0.1, 500)
    eight = np.stack([200 * np.cos(u), 200 * np.sin(u) * np.cos(u)], axis=1) / (1 + np.sin(u)[:, None] ** 2)
    with pytest.raises(TrackError, match=r"crosses itself: near input point \d+, s = \d+ m and input point \d+"):
        Track.from_centreline(eight, 20.0)


def test_from_centreline_input_errors() -> None:
    with pytest.raises(TrackError, match=r"\[N, 2\] plane points or \[N, 3\] game positions"):
        Track.from_centreline(np.zeros((10, 4)), 20.0)
    with pytest.raises(TrackError, match="point 3 is not finite"):
        Track.from_centreline(np.array([[0, 0], [1, 0], [2, 0], [np.inf, 0], [4, 0]]), 20.0)
    with pytest.raises(TrackError, match=r"centreline is 10\.0 m long"):
        Track.from_centreline(np.stack([np.linspace(0, 10, 11), np.zeros(11)], axis=1), 20.0)
    with pytest.raises(TrackError, match="at least 2 distinct points"):
        Track.from_centreline(np.zeros((5, 2)), 20.0)
