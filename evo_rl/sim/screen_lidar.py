"""TMRL's screenshot LIDAR: 19 beams walked pixel by pixel over a TrackMania screenshot to the black road borders.

TMRL's ``TM20LIDAR`` observation is not measured in the game's 3D world but on a screenshot of the game
window in the cockpit view (camera 3, car hidden), on plain road whose borders are black. This module
computes the same figures from any ``[H, W, 3]`` uint8 picture (or an ``[H, W]`` grey one), so that the
simulator's cockpit view (:mod:`evo_rl.sim.cockpit`) or a captured screen gives the observation TMRL
computes.

Where the figures come from (trackmania-rl/tmrl, MIT):

- ``tmrl/custom/utils/tools.py`` at commit ``b202bd801514b847dad39b560f000d9bc6cd1ffd`` (the same code is
  in ``tmrl/custom/tm/utils/tools.py`` at ``d2dcaac9c396f24f13e8d71edcc65e0c5e79d63b``): class ``Lidar``
  (``_set_axis_lidar``, ``lidar_20``) and ``armin``;
- ``tmrl/config/config_constants.py`` at ``b202bd801514b847dad39b560f000d9bc6cd1ffd``:
  ``LIDAR_BLACK_THRESHOLD = [55, 55, 55]`` ("[55, 55, 55] for basic road, [88, 88, 88] for tiny road");
- ``tmrl/custom/custom_gym_interfaces.py`` at ``01fd87f329a7bab70a6f26025cd9c3b44afb76ff``:
  ``TM2020InterfaceLidar.grab_lidar_speed_and_data`` passes ``window_interface.screenshot()[:, :, :3]``
  (the window's BGR pixels, alpha dropped) straight to ``lidar_20``: no resize, no grey conversion;
- ``readme/get_started.md``: the TM20LIDAR window (and game resolution) is 958 x 488 pixels.

The figures, for an image of ``H`` rows and ``W`` columns:

- origin (TMRL's ``road_point``): row ``44 * H // 49``, column ``W // 2``; (438, 479) in the 488 x 958 window;
- 19 beams at ``angle`` = 90°, 100°, ..., 270° (``range(90, 280, 10)``); a beam steps ``dist`` = 20, 21, 22,
  ... pixels from the origin (start offset 20) to pixel ``(int(row0 + dist * cos(angle)),
  int(col0 + dist * sin(angle)))`` (Python floats, truncated), and ends before the first pixel with
  ``row <= 0``, ``col <= 0`` or ``col >= W - 1``. So beam 0 (90°) points right along the origin's row,
  beam 9 (180°) straight up, beam 18 (270°) left: TMRL's beams run right to left;
- a pixel is a border when every channel is below 55 (TMRL compares BGR pixels with ``[55, 55, 55]``; the
  three thresholds are equal, so RGB gives the same result; a grey pixel is a border when below 55);
- a beam's value is the index, along its pixel list, of its first border pixel, i.e. ``dist - 20``; a beam
  that meets no border gives the last index (``len - 1``); at 488 x 958 that is 417 for beam 9 and 457 for
  beams 0 and 18;
- float32, no normalisation: the interface returns these counts and TMRL's LIDAR preprocessor
  (``obs_preprocessor_tm_lidar_act_in_obs``) only flattens the history.

TMRL works on the window's own pixels and never resizes for the LIDAR, so neither does this module: a
picture of another size gets TMRL's beams for that size (``Lidar`` rebuilds its axes when the size
changes), as long as every beam has at least one pixel (TMRL would fail on an empty beam; here it is an
:class:`EvoError`).
"""

from __future__ import annotations

import math
from functools import cache

import numba
import numpy as np

from evo_rl.errors import EvoError
from evo_rl.sim.kernels import PARALLEL_CARS, car_loop

WINDOW_HEIGHT = 488  # px, TMRL's TM20LIDAR window (readme/get_started.md)
WINDOW_WIDTH = 958  # px
ORIGIN_NUM, ORIGIN_DEN = 44, 49  # origin row = ORIGIN_NUM * H // ORIGIN_DEN; origin column = W // 2
ANGLES_DEG = tuple(range(90, 280, 10))  # the 19 beam angles, degrees: 90 right, 180 up, 270 left
BEAMS = len(ANGLES_DEG)  # 19
START_OFFSET = 20  # px from the origin to a beam's first pixel (TMRL's min_dist)
BLACK_THRESHOLD = 55  # a pixel whose every channel is below this is a road border (LIDAR_BLACK_THRESHOLD)


def origin(height: int, width: int) -> tuple[int, int]:
    """TMRL's beam origin ``(row, column)`` in a ``height`` x ``width`` picture: (438, 479) in its window."""
    return ORIGIN_NUM * height // ORIGIN_DEN, width // 2


@cache
def beam_pixels(height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pixels every beam visits, in order: ``(rows [T] int64, cols [T] int64, starts [19 + 1] int64)``.

    Beam ``b`` visits ``(rows[k], cols[k])`` for ``k`` in ``starts[b] .. starts[b + 1] - 1``. The pixel
    positions are computed with Python's ``math`` and ``int`` exactly as TMRL does, so they match its
    axes bit for bit. Cached per size (read-only arrays). Raises :class:`EvoError` when a beam would have
    no pixel (pictures of fewer than 24 rows or 43 columns).
    """
    row0, col0 = origin(height, width)
    rows: list[int] = []
    cols: list[int] = []
    starts = [0]
    for angle in ANGLES_DEG:
        d_row = math.cos(math.radians(angle))
        d_col = math.sin(math.radians(angle))
        dist = START_OFFSET
        while True:
            r = int(row0 + dist * d_row)
            c = int(col0 + dist * d_col)
            if r <= 0 or c <= 0 or c >= width - 1:
                break
            rows.append(r)
            cols.append(c)
            dist += 1
        if len(rows) == starts[-1]:
            raise EvoError(
                f"a {height} x {width} picture is too small for TMRL's LIDAR: the {angle}° beam has no pixel "
                f"{START_OFFSET} px from the origin {(row0, col0)}; TMRL's window is {WINDOW_HEIGHT} x {WINDOW_WIDTH}"
            )
        starts.append(len(rows))
    out = (np.array(rows, np.int64), np.array(cols, np.int64), np.array(starts, np.int64))
    for a in out:
        a.flags.writeable = False
    return out


def max_distance(height: int = WINDOW_HEIGHT, width: int = WINDOW_WIDTH) -> float:
    """The largest value a beam reports on a ``height`` x ``width`` picture (a beam that meets no border), px."""
    starts = beam_pixels(height, width)[2]
    return float(np.diff(starts).max() - 1)


@numba.njit(cache=True)
def _beams_one(
    i: int, images: np.ndarray, rows: np.ndarray, cols: np.ndarray, starts: np.ndarray, out: np.ndarray
) -> None:
    """Beams of picture ``i`` of ``images [N, H, W, C]`` into ``out[i]`` (float32 pixel indices)."""
    n_ch = images.shape[3]
    for b in range(starts.shape[0] - 1):
        lo = starts[b]
        hi = starts[b + 1]
        found = hi - lo - 1  # no border: the last index, as TMRL's armin
        for k in range(lo, hi):
            dark = True
            for ch in range(n_ch):
                if images[i, rows[k], cols[k], ch] >= BLACK_THRESHOLD:
                    dark = False
                    break
            if dark:
                found = k - lo
                break
        out[i, b] = found


@car_loop(PARALLEL_CARS)
def _beams_all(images: np.ndarray, rows: np.ndarray, cols: np.ndarray, starts: np.ndarray, out: np.ndarray) -> None:
    """Beams of every picture of ``images [N, H, W, C]`` into ``out [N, 19]``."""
    for i in numba.prange(images.shape[0]):
        _beams_one(i, images, rows, cols, starts, out)


def _as_batch(images: np.ndarray, batched: bool) -> np.ndarray:
    """``images`` as ``[N, H, W, C]`` uint8 (a view), or EvoError naming the shapes accepted."""
    a = np.asarray(images)
    want = "[N, H, W, 3] or [N, H, W]" if batched else "[H, W, 3] or [H, W]"
    lead = 1 if batched else 0
    if a.dtype != np.uint8:
        raise EvoError(f"screen_lidar needs uint8 pictures {want} (RGB/BGR or grey), got dtype {a.dtype}")
    if a.ndim == lead + 2:
        a = a[..., None]
    elif a.ndim != lead + 3 or a.shape[-1] != 3:
        raise EvoError(
            f"screen_lidar needs uint8 pictures {want} (RGB/BGR or grey; TMRL's window is "
            f"{WINDOW_HEIGHT} x {WINDOW_WIDTH}), got shape {a.shape}"
        )
    return a if batched else a[None]


def _output(out: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """``out`` checked against ``shape`` float32 (or a new array), as ``[N, 19]``."""
    if out is None:
        out = np.empty(shape, np.float32)
    elif out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise EvoError(
            f"screen_lidar(out=...) needs a C-contiguous float32 array of shape {shape}, got {out.dtype} {out.shape}"
        )
    return out.reshape(-1, BEAMS)


def screen_lidar(image: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """TMRL's 19 LIDAR beams ``[19]`` float32 (pixels beyond the start offset) of one picture.

    ``image`` is ``[H, W, 3]`` uint8 (RGB or BGR: the threshold is the same in every channel) or ``[H, W]``
    grey; beam 0 points right, beam 9 up, beam 18 left (see the module docstring). ``out`` ``[19]``
    float32 is written in place when given.
    """
    batch = _as_batch(image, batched=False)  # [1, H, W, C]
    res = _output(out, (BEAMS,))  # [1, 19] float32, pixels (a view of the result)
    rows, cols, starts = beam_pixels(batch.shape[1], batch.shape[2])
    _beams_all.serial(batch, rows, cols, starts, res)
    return res.reshape(BEAMS)


def screen_lidar_batch(images: np.ndarray, out: np.ndarray | None = None, threads: int = 0) -> np.ndarray:
    """:func:`screen_lidar` of every picture of ``images`` ``[N, H, W, 3]`` or ``[N, H, W]`` uint8: ``[N, 19]``.

    Batches of at least :data:`~evo_rl.sim.kernels.PARALLEL_CARS` pictures run on numba's threads
    (``threads`` > 0 caps them).
    """
    batch = _as_batch(images, batched=True)  # [N, H, W, C]
    n = batch.shape[0]
    res = _output(out, (n, BEAMS))  # [N, 19] float32, pixels
    rows, cols, starts = beam_pixels(batch.shape[1], batch.shape[2])
    _beams_all(n, batch, rows, cols, starts, res, threads=threads)
    return res
