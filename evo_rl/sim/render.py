"""Top views of a track with Pillow: road, walls, lines and gates, racing line, speed traces.

:class:`TopView` fixes the mapping from plane metres to pixels for one track and image
size (y up in the picture), draws the static base image once, and draws traces and
cars on copies of it, so animations reuse one mapping and one base.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from evo_rl.sim.track import Track

GRASS = (38, 52, 40)
ROAD = (92, 94, 100)
WALL = (235, 235, 235)
START = (40, 200, 90)
FINISH = (230, 50, 50)
CHECKPOINT = (70, 150, 255)
RACING_LINE = (255, 215, 0)
TEXT = (245, 245, 245)
# speed colour map anchors, slow to fast: blue, cyan, green, yellow, red
_SPEED_COLORS = np.array([(40, 70, 255), (0, 200, 230), (40, 210, 60), (250, 220, 0), (240, 40, 30)], dtype=np.float64)


def speed_colors(speeds: np.ndarray, vmax: float | None = None) -> np.ndarray:
    """RGB colours ``[K, 3]`` uint8 for ``speeds`` ``[K]``: blue at 0 through green to red at ``vmax``."""
    v = np.asarray(speeds, dtype=np.float64)
    top = float(vmax) if vmax else max(float(v.max(initial=0.0)), 1e-9)
    x = np.clip(v / top, 0.0, 1.0) * (len(_SPEED_COLORS) - 1)  # [K]
    lo = np.minimum(x.astype(np.int64), len(_SPEED_COLORS) - 2)
    frac = (x - lo)[:, None]
    return np.round(_SPEED_COLORS[lo] * (1 - frac) + _SPEED_COLORS[lo + 1] * frac).astype(np.uint8)


class TopView:
    """Maps a track's plane coordinates to pixels of a ``size``-pixel image (longest side).

    ``view.width`` x ``view.height`` is the image size, ``view.scale`` the pixels per metre.
    """

    def __init__(self, track: Track, size: int = 900, margin: int = 20) -> None:
        self.track = track
        pts = np.concatenate([track.left, track.right])  # [2(M+1), 2]
        self.lo = pts.min(axis=0)
        extent = np.maximum(pts.max(axis=0) - self.lo, 1e-6)
        self.margin = margin
        self.scale = (size - 2 * margin) / float(extent.max())
        self.width = int(np.ceil(extent[0] * self.scale)) + 2 * margin
        self.height = int(np.ceil(extent[1] * self.scale)) + 2 * margin
        self._font: ImageFont.ImageFont | ImageFont.FreeTypeFont | None = None

    def to_px(self, xy: np.ndarray) -> np.ndarray:
        """Pixel coordinates ``[K, 2]`` (float) of plane points ``xy`` ``[K, 2]``; y grows upwards in metres."""
        xy = np.asarray(xy, dtype=np.float64)
        px = self.margin + (xy[..., 0] - self.lo[0]) * self.scale
        py = self.height - self.margin - (xy[..., 1] - self.lo[1]) * self.scale
        return np.stack([px, py], axis=-1)

    def _line_width(self, metres: float, least: int = 1) -> int:
        return max(least, int(round(metres * self.scale)))

    def draw_base(self, racing_line: np.ndarray | None = None, racing_speed: np.ndarray | None = None) -> Image.Image:
        """The track: road, walls, start line (green), checkpoint gates (blue), finish line (red).

        ``racing_line`` ``[K, 2]`` adds a polyline, coloured by ``racing_speed`` ``[K]`` (m/s) if given.
        """
        t = self.track
        img = Image.new("RGB", (self.width, self.height), GRASS)
        draw = ImageDraw.Draw(img)
        left, right = self.to_px(t.left), self.to_px(t.right)
        for k in range(t.n_quads):
            quad = [tuple(left[k]), tuple(left[k + 1]), tuple(right[k + 1]), tuple(right[k])]
            draw.polygon(quad, fill=ROAD, outline=ROAD)
        gate_w = self._line_width(1.2, least=2)
        for k in t.checkpoints:
            draw.line([tuple(left[k]), tuple(right[k])], fill=CHECKPOINT, width=gate_w)
        draw.line([tuple(left[t.start]), tuple(right[t.start])], fill=START, width=gate_w + 1)
        draw.line([tuple(left[t.finish]), tuple(right[t.finish])], fill=FINISH, width=gate_w + 1)
        if racing_line is not None:
            if racing_speed is not None:
                self.draw_trace(img, racing_line, racing_speed, width=max(2, gate_w - 1))
            else:
                draw.line([tuple(p) for p in self.to_px(racing_line)], fill=RACING_LINE, width=max(1, gate_w - 1))
        wall_w = self._line_width(0.8, least=2)
        outline = np.concatenate([left, right[::-1], left[:1]])  # closed wall loop, caps included
        draw.line([tuple(p) for p in outline], fill=WALL, width=wall_w, joint="curve")
        return img

    def draw_trace(
        self,
        img: Image.Image,
        xy: np.ndarray,
        speeds: np.ndarray | None = None,
        vmax: float | None = None,
        width: int = 2,
    ) -> Image.Image:
        """Draw the path ``xy`` ``[K, 2]`` on ``img`` (in place), each segment coloured by ``speeds`` ``[K]``."""
        draw = ImageDraw.Draw(img)
        px = self.to_px(xy)
        if len(px) < 2:
            return img
        if speeds is None:
            draw.line([tuple(p) for p in px], fill=RACING_LINE, width=width, joint="curve")
            return img
        colors = speed_colors(0.5 * (np.asarray(speeds[1:]) + np.asarray(speeds[:-1])), vmax)  # [K-1, 3]
        for k in range(len(px) - 1):
            draw.line([tuple(px[k]), tuple(px[k + 1])], fill=tuple(int(c) for c in colors[k]), width=width)
        return img

    def draw_car(
        self,
        img: Image.Image,
        pos: np.ndarray,
        yaw: float,
        color: tuple[int, int, int] = (255, 60, 60),
        length: float = 4.5,
        width: float = 2.0,
    ) -> Image.Image:
        """Draw a car at plane position ``pos`` ``[2]`` with heading ``yaw`` as a filled box (in place).

        The box is at least 6 x 3 pixels so cars stay visible on large tracks.
        """
        length = max(length, 6 / self.scale)
        width = max(width, 3 / self.scale)
        c, s = np.cos(yaw), np.sin(yaw)
        fwd, side = np.array([c, s]) * length / 2, np.array([-s, c]) * width / 2
        p = np.asarray(pos, dtype=np.float64)
        corners = self.to_px(np.stack([p + fwd + side, p + fwd - side, p - fwd - side, p - fwd + side]))  # [4, 2]
        ImageDraw.Draw(img).polygon([tuple(q) for q in corners], fill=color, outline=(0, 0, 0))
        return img

    def draw_text(
        self, img: Image.Image, lines: list[str], xy: tuple[int, int] = (8, 6), size: int | None = None
    ) -> Image.Image:
        """Write ``lines`` at pixel ``xy`` (top-left), one below the other, outlined in black.

        ``size`` is the font height in pixels; by default it grows with the image (12 to 20).
        """
        if self._font is None or size is not None:
            size = size or int(np.clip(max(self.width, self.height) / 50, 12, 20))
            try:
                self._font = ImageFont.load_default(size=size)
            except TypeError:  # Pillow < 10.1: fixed-size bitmap font
                self._font = ImageFont.load_default()
        draw = ImageDraw.Draw(img)
        x, y = xy
        step = int(self._font.size * 1.25) if hasattr(self._font, "size") else 14
        for line in lines:
            draw.text((x, y), line, fill=TEXT, font=self._font, stroke_width=2, stroke_fill=(0, 0, 0))
            y += step
        return img
