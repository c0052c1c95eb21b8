"""TMRL's screenshot LIDAR (evo_rl.sim.screen_lidar) against a plain per-beam loop, and the cockpit view it reads."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import straight_track

from evo_rl.bench.capture import run_capture, time_lidar
from evo_rl.errors import EvoError
from evo_rl.sim import screen_lidar as sl
from evo_rl.sim.cockpit import cockpit_view
from evo_rl.sim.screen_lidar import screen_lidar, screen_lidar_batch
from evo_rl.sim.world import World

H, W = 488, 958  # TMRL's TM20LIDAR window
RIGHT, MIDDLE, LEFT = slice(0, 9), 9, slice(10, 19)  # TMRL's beams run right (90°) to left (270°)


def reference_screen_lidar(image: np.ndarray) -> np.ndarray:
    """The oracle: TMRL's Lidar.lidar_20 written out as one plain Python loop per beam."""
    img = image if image.ndim == 3 else image[:, :, None]
    h, w = img.shape[0], img.shape[1]
    row0, col0 = 44 * h // 49, w // 2
    out = []
    for angle in range(90, 280, 10):
        d_row, d_col = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        dist, count, found = 20, 0, -1
        while True:
            r, c = int(row0 + dist * d_row), int(col0 + dist * d_col)
            if r <= 0 or c <= 0 or c >= w - 1:
                break
            if all(int(v) < 55 for v in img[r, c]):
                found = count
                break
            count += 1
            dist += 1
        out.append(found if found >= 0 else count - 1)
    return np.array(out, np.float32)


def road(h: int = H, w: int = W, tone: int = 100) -> np.ndarray:
    return np.full((h, w, 3), tone, np.uint8)


# --------------------------------------------------------------------------- TMRL's constants


def test_constants_are_tmrls() -> None:
    assert (sl.WINDOW_HEIGHT, sl.WINDOW_WIDTH) == (488, 958)
    assert sl.ANGLES_DEG == (90, 100, 110, 120, 130, 140, 150, 160, 170, 180, 190, 200, 210, 220, 230, 240, 250,
                             260, 270)  # fmt: skip
    assert sl.BEAMS == 19
    assert sl.START_OFFSET == 20
    assert sl.BLACK_THRESHOLD == 55
    assert sl.origin(488, 958) == (438, 479)
    assert sl.origin(128, 256) == (114, 128)


def test_no_border_gives_the_last_index() -> None:
    d = screen_lidar(road())
    assert d.dtype == np.float32 and d.shape == (19,)
    assert d[MIDDLE] == 417  # rows 418 .. 1 straight up
    assert d[0] == 457  # columns 499 .. 956 to the right
    assert d[18] == 458  # columns 459 .. 1 to the left
    np.testing.assert_array_equal(d, reference_screen_lidar(road()))


def test_a_border_at_known_pixels() -> None:
    img = road()
    img[300, :] = 0  # a black row: the middle beam walks up from row 418
    img[:, 700] = (10, 20, 30)  # a black column: beam 0 walks right from column 499
    d = screen_lidar(img)
    assert d[MIDDLE] == 418 - 300
    assert d[0] == 700 - 499
    np.testing.assert_array_equal(d, reference_screen_lidar(img))


def test_threshold_is_strict_and_needs_every_channel() -> None:
    for px, dark in [((54, 54, 54), True), ((55, 55, 55), False), ((0, 0, 55), False), ((55, 0, 0), False)]:
        img = road()
        img[300, :] = px
        assert bool(screen_lidar(img)[MIDDLE] == 118) is dark, px


# --------------------------------------------------------------------------- against the oracle


@pytest.mark.parametrize("shape", [(H, W), (128, 256), (61, 100), (H, W // 2)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_the_plain_loop_on_random_pictures(shape: tuple[int, int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    h, w = shape
    img = rng.integers(55, 256, (h, w, 3), dtype=np.uint8)
    dark = rng.random((h, w)) < 0.004  # sparse borders, so beams run a few hundred pixels
    img[dark] = rng.integers(0, 55, (int(dark.sum()), 3), dtype=np.uint8)
    img[rng.random((h, w)) < 0.01, rng.integers(0, 3)] = 20  # one dark channel only: not a border
    np.testing.assert_array_equal(screen_lidar(img), reference_screen_lidar(img))
    noise = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)  # dense: many beams stop at once
    np.testing.assert_array_equal(screen_lidar(noise), reference_screen_lidar(noise))


def test_grey_equals_rgb_and_the_loop() -> None:
    rng = np.random.default_rng(3)
    grey = np.where(rng.random((H, W)) < 0.003, 30, 120).astype(np.uint8)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    np.testing.assert_array_equal(screen_lidar(grey), screen_lidar(rgb))
    np.testing.assert_array_equal(screen_lidar(grey), reference_screen_lidar(grey))


def test_batch_out_and_strided_input() -> None:
    rng = np.random.default_rng(4)
    imgs = np.where(rng.random((3, H, W, 1)) < 0.003, 0, 200).astype(np.uint8).repeat(3, axis=3)
    batch = screen_lidar_batch(imgs)
    assert batch.shape == (3, 19) and batch.dtype == np.float32
    for k in range(3):
        np.testing.assert_array_equal(batch[k], reference_screen_lidar(imgs[k]))
    np.testing.assert_array_equal(screen_lidar_batch(imgs[:, :, :, 0]), batch)  # grey batch
    out = np.zeros(19, np.float32)
    assert screen_lidar(imgs[1], out=out) is not None
    np.testing.assert_array_equal(out, batch[1])
    bgr = imgs[2, :, :, ::-1]  # a strided view (BGR order): same beams
    np.testing.assert_array_equal(screen_lidar(bgr), batch[2])


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (np.zeros((H, W, 4), np.uint8), r"\[H, W, 3\] or \[H, W\]"),
        (np.zeros((H, W, 1), np.uint8), r"\[H, W, 3\] or \[H, W\]"),
        (np.zeros(W, np.uint8), r"\[H, W, 3\] or \[H, W\]"),
        (np.zeros((H, W, 3), np.float32), "uint8"),
        (np.zeros((20, 40, 3), np.uint8), "too small"),
    ],
)
def test_bad_pictures_raise(image: np.ndarray, match: str) -> None:
    with pytest.raises(EvoError, match=match):
        screen_lidar(image)


def test_bad_batches_and_outputs_raise() -> None:
    with pytest.raises(EvoError, match=r"\[N, H, W, 3\] or \[N, H, W\]"):
        screen_lidar_batch(road()[:, :, 0])  # one grey picture is not a batch
    with pytest.raises(EvoError, match=r"shape \(19,\)"):
        screen_lidar(road(), out=np.zeros(20, np.float32))
    with pytest.raises(EvoError, match="float32"):
        screen_lidar(road(), out=np.zeros(19, np.float64))


# --------------------------------------------------------------------------- the simulator's cockpit view


@pytest.fixture(scope="module")
def world() -> World:
    return World(straight_track(), 1)  # 12 m wide, along +x, start 2 m after x = 50


def lidar_at(world: World, lateral: float = 0.0, yaw: float = 0.0) -> np.ndarray:
    world.reset(lateral=np.array([lateral]), yaw=np.array([yaw]))
    view = cockpit_view(world)
    assert view.shape == (1, H, W, 3) and view.dtype == np.uint8
    d = screen_lidar(view[0])
    np.testing.assert_array_equal(d, reference_screen_lidar(view[0]))
    return d


def test_cockpit_view_beams_follow_the_road_edges(world: World) -> None:
    centre = lidar_at(world)
    np.testing.assert_allclose(centre[RIGHT], centre[LEFT][::-1], atol=2)  # centred: symmetric to the pixel
    assert centre[MIDDLE] == 417  # straight ahead the road runs into the haze: no border
    assert np.all(centre[2:9] < 417) and np.all(centre[10:17] < 417)  # the side beams meet the borders
    left = lidar_at(world, lateral=3.0)  # 3 m nearer the left border
    assert np.all(left[LEFT] <= centre[LEFT]) and left[LEFT].sum() < centre[LEFT].sum() - 200
    assert np.all(left[RIGHT] >= centre[RIGHT])
    right = lidar_at(world, lateral=-3.0)
    assert np.all(right[RIGHT] <= centre[RIGHT]) and right[RIGHT].sum() < centre[RIGHT].sum() - 200
    assert np.all(right[LEFT] >= centre[LEFT])
    np.testing.assert_allclose(right[RIGHT], left[LEFT][::-1], atol=2)  # mirror images, to the pixel


def test_facing_the_wall_gives_a_short_middle_beam_growing_with_distance(world: World) -> None:
    cam = world.camera_cfg
    focal = (W / 2) / math.tan(math.radians(cam.fov_deg) / 2)
    middle = []
    for lateral in (3.0, 0.0, -3.0):  # facing the left wall (yaw +90°) from 3, 6 and 9 m
        d = lidar_at(world, lateral=lateral, yaw=math.pi / 2)
        metres = 6.0 - lateral
        foot_row = cam.horizon * H + focal * cam.eye_height / metres  # row of the wall's foot
        assert abs(d[MIDDLE] - (438 - 20 - foot_row)) <= 1.0
        middle.append(float(d[MIDDLE]))
    assert middle[1] < 0.3 * 417
    assert middle[0] < middle[1] < middle[2]


def test_cockpit_view_grey_rows_and_palette(world: World) -> None:
    three = World(straight_track(), 3)
    three.reset(lateral=np.array([2.0, 0.0, -2.0]))
    views = cockpit_view(three)
    np.testing.assert_array_equal(cockpit_view(three, rows=np.array([2])), views[2:3])
    np.testing.assert_array_equal(cockpit_view(three, rows=np.array([True, False, True])), views[[0, 2]])
    grey = cockpit_view(three, grey=True)
    assert grey.shape == (3, H, W) and grey.flags.c_contiguous
    np.testing.assert_array_equal(screen_lidar_batch(grey), screen_lidar_batch(views))
    packed = np.unique(views.reshape(-1, 3).astype(np.int64) @ np.array([65536, 256, 1]))
    tones = np.stack([packed // 65536, packed // 256 % 256, packed % 256], axis=1)  # [K, 3] distinct colours
    assert len(tones) == 3  # sky, road, border
    assert int(np.all(tones < 55, axis=1).sum()) == 1  # only the border is dark
    small = cockpit_view(three, width=256, height=128)
    assert small.shape == (3, 128, 256, 3)
    with pytest.raises(EvoError, match="rows"):
        cockpit_view(three, rows=np.array([3]))
    with pytest.raises(EvoError, match="width and height"):
        cockpit_view(three, width=4)


# --------------------------------------------------------------------------- the capture bench


def test_time_lidar_and_run_capture() -> None:
    seen: list[np.ndarray] = []
    res = time_lidar(road, 4, after=lambda d: seen.append(d.copy()))
    assert res["frames"] == 4 and (res["height"], res["width"]) == (H, W)
    assert len(seen) == 4 + 3 and np.all(seen[-1] == screen_lidar(road()))
    assert set(res["lidar_ms"]) == {"mean", "p99"}
    with pytest.raises(EvoError, match="frames"):
        time_lidar(road, 0)
    out = run_capture(frames=3, width=256, height=128)
    json.dumps(out)
    assert out["bench"] == "capture" and out["track"] == "evo-test" and (out["width"], out["height"]) == (256, 128)
    assert out["render_ms"]["mean"] > 0 and out["lidar_ms"]["p99"] >= out["lidar_ms"]["mean"]


def test_tmrl_lidar_kind_in_the_simulator_is_the_screen_lidar_of_its_cockpit_view() -> None:
    from evo_rl.config import EvoConfig, LidarConfig
    from evo_rl.envs import VecTrackEnv

    track = straight_track()
    world = World(track, 3, lidar=LidarConfig(kind="tmrl"))
    world.reset(lateral=np.array([-2.0, 0.0, 2.0]))
    expected = np.stack([screen_lidar(view) for view in cockpit_view(world)])  # [3, 19] px
    np.testing.assert_array_equal(world.lidar(), expected)
    rows = world.lidar(out=np.zeros((3, 19), np.float32), rows=np.array([False, True, False]))
    np.testing.assert_array_equal(rows[1], expected[1])
    assert (rows[[0, 2]] == 0).all()
    # the environment's observation space bounds it, in pixels
    cfg = EvoConfig()
    cfg.lidar.kind = "tmrl"
    env = VecTrackEnv(cfg, n_envs=2, track=track)
    obs, _ = env.reset(seed=0)
    assert env.single_observation_space[1].shape == (4, 19)
    assert env.single_observation_space[1].high.max() == sl.max_distance()
    assert env.single_observation_space.contains(tuple(part[0] for part in obs))
