"""The saliency grids drawn with Pillow (medbuilder/review/panels.py): the overlay is matplotlib's jet at the
alpha the old matplotlib figure used, and the PNG holds every panel where the layout says."""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from PIL import Image

from medbuilder.review import panels


def test_an_overlay_is_the_grey_image_blended_with_jet():
    rng = np.random.default_rng(0)
    grey, heat = rng.random((40, 30)), rng.random((40, 30))
    got = panels.panel(grey, heat).astype(float)
    grey_rgb = np.repeat(np.round(grey * 255)[..., None], 3, axis=2)
    jet = colormaps["jet"](np.round(heat * 255).astype(int) / 255.0)[..., :3] * 255
    expected = (1 - panels.HEAT_ALPHA) * grey_rgb + panels.HEAT_ALPHA * jet
    assert got.shape == (40, 30, 3) and np.abs(got - expected).max() <= 1.5
    plain = panels.panel(grey)
    assert (plain[..., 0] == plain[..., 2]).all() and (plain[..., 0] == np.round(grey * 255)).all()
    assert (panels.panel(np.full((4, 4), np.nan))[..., 0] == 0).all() and panels.panel(np.full((4, 4), 7.0)).max() == 255


def test_the_grid_holds_each_panel_at_its_place(tmp_path):
    rows = [[panels.panel(np.full((64, 64), v)) for v in (0.0, 0.5, 1.0)] for _ in range(2)]
    path = panels.grid_png(rows, ["yes -> yes\nscore 0.98", "no -> yes\nscore 0.61"], ["image", "GradCAM", "occlusion"],
                           "false-positive (most confident)", tmp_path / "grid.png")
    picture = np.asarray(Image.open(path).convert("RGB"))
    cell = panels.PANEL_PX
    assert picture.shape == (panels.TITLE_H + 2 * (cell + panels.GAP), panels.LABEL_W + 3 * (cell + panels.GAP), 3)
    for row in range(2):
        top = panels.TITLE_H + row * (cell + panels.GAP)
        for col, value in enumerate((0, 128, 255)):
            left = panels.LABEL_W + col * (cell + panels.GAP)
            assert (picture[top + 5:top + cell - 5, left + 5:left + cell - 5] == value).all()
    label_column = picture[panels.TITLE_H:, :panels.LABEL_W]
    assert (label_column < 128).any()  # the labels were written
