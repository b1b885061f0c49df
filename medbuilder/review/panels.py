"""Grids of image panels (an image, heat maps over it) drawn straight into one PNG with Pillow.

The saliency grids have one row per case and three panels a row; drawn as matplotlib axes they
cost about 0.1 s a row (axes, ticks, the Agg canvas), most of the report's figure time. Here a
panel is the image's own pixels: grey, or blended with a heat map in matplotlib's "jet" colours
at the alpha matplotlib's overlay used, so the pictures look as before.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont

HEAT_ALPHA = 0.45
PANEL_PX = 192  # each panel is scaled to this size along its longer side
GAP = 4
LABEL_W = 112  # the left column with each row's truth, answer and score
TITLE_H = 36  # the figure title and the column titles above the first row
_JET = (colormaps["jet"](np.linspace(0.0, 1.0, 256))[:, :3] * 255).astype(np.uint8)


def to_byte(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (clipped; NaN as 0) as 0..255 integers."""
    return np.round(np.nan_to_num(np.clip(values, 0.0, 1.0)) * 255).astype(np.uint8)


def panel(grey: np.ndarray, heat: np.ndarray | None = None) -> np.ndarray:
    """(H, W, 3) uint8: the grey image in [0, 1], with `heat` in [0, 1] blended over it in jet colours."""
    rgb = np.repeat(to_byte(grey)[..., None], 3, axis=2)
    if heat is None:
        return rgb
    blended = (1.0 - HEAT_ALPHA) * rgb + HEAT_ALPHA * _JET[to_byte(heat)]
    return np.round(blended).astype(np.uint8)


def _scaled(rgb: np.ndarray) -> Image.Image:
    picture = Image.fromarray(rgb)
    scale = PANEL_PX / max(picture.size)
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    return picture.resize(size, Image.Resampling.BILINEAR)


def grid_png(rows: list[list[np.ndarray]], row_labels: list[str], column_titles: list[str], title: str,
             path: Path) -> Path:
    """One PNG: `title`, the column titles, then each row's label and panels (same-size RGB arrays)."""
    scaled = [[_scaled(p) for p in row] for row in rows]
    cell_w = max(p.width for row in scaled for p in row)
    cell_h = max(p.height for row in scaled for p in row)
    columns = max(len(row) for row in scaled)
    width = LABEL_W + columns * (cell_w + GAP)
    height = TITLE_H + len(scaled) * (cell_h + GAP)
    canvas = Image.new("RGB", (width, height), "white")
    draw, font = ImageDraw.Draw(canvas), ImageFont.load_default(size=12)
    draw.text((width // 2, 2), title, fill="black", font=font, anchor="ma")
    for col, name in enumerate(column_titles):
        draw.text((LABEL_W + col * (cell_w + GAP) + cell_w // 2, TITLE_H - 4), name, fill="black", font=font,
                  anchor="md")
    for r, (row, label) in enumerate(zip(scaled, row_labels)):
        top = TITLE_H + r * (cell_h + GAP)
        draw.multiline_text((4, top + cell_h // 2), label, fill="black", font=font, anchor="lm")
        for col, picture in enumerate(row):
            canvas.paste(picture, (LABEL_W + col * (cell_w + GAP), top))
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, optimize=False)
    return path
