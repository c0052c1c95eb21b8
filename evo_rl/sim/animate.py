"""Animated GIF of a recorded lap: top view, speed-coloured trace, the car and a HUD."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from evo_rl.errors import EvoError
from evo_rl.sim.render import GRASS, TopView, speed_colors
from evo_rl.sim.track import Track

HOLD_LAST = 2.0  # s the last frame stays on screen
TRANSPARENT = 255  # palette index of "unchanged since the previous frame" (frames use 255 colours)


def animate_lap(
    track: Track,
    xy: np.ndarray,
    yaw: np.ndarray,
    speeds: np.ndarray,
    out: str | Path,
    dt: float = 0.05,
    fps: float = 10.0,
    gears: np.ndarray | None = None,
    times: np.ndarray | None = None,
    title: str | None = None,
    lap_time: float | None = None,
    reference_lap_time: float | None = None,
    size: int = 640,
) -> Path:
    """Write a GIF of a lap recorded every ``dt`` seconds and return its path.

    ``xy [T, 2]``, ``yaw [T]``, ``speeds [T]`` (m/s) and optionally ``gears [T]`` and
    ``times [T]`` (race time, s) are the car's states. Frames are taken ``fps`` times
    per second of lap time and played in real time; the trace is coloured by speed
    (blue slow, red fast). ``lap_time`` and ``reference_lap_time`` go in the HUD.
    """
    out = Path(out)
    if out.suffix.lower() != ".gif":
        raise EvoError(f"animation {out}: write a .gif file")
    xy = np.asarray(xy, np.float64)
    n = len(xy)
    if n == 0 or len(yaw) != n or len(speeds) != n:
        raise EvoError(f"animate_lap needs matching xy, yaw and speeds with at least one state, got {n} states")
    if not fps > 0:
        raise EvoError(f"fps must be positive, got {fps}")
    every = max(1, int(round(1.0 / (fps * dt))))  # steps between frames
    times = np.arange(n) * dt if times is None else np.asarray(times, np.float64)
    speeds = np.asarray(speeds, np.float64)
    vmax = max(float(speeds.max()), 1.0)
    colors = [(int(r), int(g), int(b)) for r, g, b in speed_colors(0.5 * (speeds[1:] + speeds[:-1]), vmax)]  # [T-1]

    view = TopView(track, size=size)
    px = view.to_px(xy)  # [T, 2]
    width = max(3, int(round(1.5 * view.scale)))
    car_length, car_width = max(4.5, 14 / view.scale), max(2.0, 7 / view.scale)
    header = title or track.name
    if reference_lap_time is not None:
        header += f"   reference {reference_lap_time:.2f} s"
    # the HUD lives in a band under the track, so it never hides the car
    base = view.draw_base()
    band = 3 * _line_height(view) + 14
    canvas = Image.new("RGB", (base.width, base.height + band), GRASS)  # the trace is drawn on it as the lap goes
    canvas.paste(base, (0, 0))
    _draw_legend(canvas, view, vmax, (base.width - view.margin - 215, base.height + 4 + 2 * _line_height(view)))
    text_at = (view.margin, base.height + 4)

    # one palette for every frame, taken from the whole lap drawn at once
    full = canvas.copy()
    _draw_segments(full, px, colors, 0, n - 1, width)
    view.draw_car(full, xy[-1], float(yaw[-1]), length=car_length, width=car_width)
    view.draw_text(full, [header], xy=text_at)
    palette = full.quantize(colors=255, method=Image.Quantize.MEDIANCUT)

    frames: list[Image.Image] = []
    indices = list(range(0, n, every))
    if indices[-1] != n - 1:
        indices.append(n - 1)
    drawn = 0
    for i in indices:
        _draw_segments(canvas, px, colors, drawn, i, width)
        drawn = i
        frame = canvas.copy()
        view.draw_car(frame, xy[i], float(yaw[i]), length=car_length, width=car_width)
        status = f"{speeds[i] * 3.6:4.0f} km/h"
        if gears is not None:
            status += f"   gear {int(gears[i]) + 1}"
        clock = f"time {times[i]:6.2f} s"
        if i == n - 1 and lap_time is not None:
            clock = f"lap time {lap_time:.2f} s"
        view.draw_text(frame, [header, status, clock], xy=text_at)
        frames.append(frame.quantize(palette=palette, dither=Image.Dither.NONE))
    frames = _deltas(frames)
    step_ms = int(round(1000 * every * dt))
    durations = [step_ms] * len(frames)
    durations[-1] = int(1000 * HOLD_LAST)
    out.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(
        out,
        save_all=True,
        append_images=frames[1:],
        duration=durations,
        loop=0,
        transparency=TRANSPARENT,
        disposal=1,
        optimize=False,
    )
    return out


def _deltas(frames: list[Image.Image]) -> list[Image.Image]:
    """Frames after the first keep only the pixels that changed; the rest become :data:`TRANSPARENT`.

    Shown over the previous frame (GIF disposal 1), they give the same pictures in a
    fraction of the bytes: only the car, the new trace and the HUD change.
    """
    palette = frames[0].getpalette() or []
    out = [frames[0]]
    prev = np.asarray(frames[0])  # [H, W] palette indices
    for frame in frames[1:]:
        cur = np.asarray(frame)
        delta = np.where(cur == prev, np.uint8(TRANSPARENT), cur).astype(np.uint8)  # [H, W]
        img = Image.frombytes("P", frame.size, delta.tobytes())
        img.putpalette(palette)
        out.append(img)
        prev = cur
    return out


def _draw_segments(
    img: Image.Image, px: np.ndarray, colors: list[tuple[int, int, int]], start: int, stop: int, width: int
) -> None:
    """Draw trace segments ``start .. stop-1`` (points ``px [T, 2]``) on ``img`` in place."""
    draw = ImageDraw.Draw(img)
    for k in range(start, stop):
        draw.line([tuple(px[k]), tuple(px[k + 1])], fill=colors[k], width=width)


def _line_height(view: TopView) -> int:
    """Pixels between two HUD lines, as :meth:`TopView.draw_text` spaces them by default."""
    return int(int(np.clip(max(view.width, view.height) / 50, 12, 20)) * 1.25)


def _draw_legend(img: Image.Image, view: TopView, vmax: float, xy: tuple[int, int]) -> None:
    """A speed colour bar, 0 to ``vmax`` m/s, with its ends labelled in km/h."""
    x, y = xy
    bar = speed_colors(np.linspace(0.0, vmax, 120), vmax)  # [120, 3]
    draw = ImageDraw.Draw(img)
    for k, rgb in enumerate(bar):
        draw.line([(x + 20 + k, y + 6), (x + 20 + k, y + 16)], fill=tuple(int(c) for c in rgb))
    view.draw_text(img, ["0"], xy=(x + 6, y + 2), size=12)
    view.draw_text(img, [f"{vmax * 3.6:.0f} km/h"], xy=(x + 144, y + 2), size=12)
