"""Pictures in the terminal: !show, and the live --preview in the toolbar."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from invoke_shell.shell.terminal_view import fit_cells, fitted, toolbar_rows


def test_toolbar_preview_is_half_blocks_with_the_picture_colours():
    img = Image.new("RGB", (64, 64), (255, 0, 0))
    img.paste((0, 0, 255), (0, 32, 64, 64))  # bottom half blue
    rows = toolbar_rows(img, width=16)
    cells = [(style, text) for style, text in rows if text == "▀"]
    assert len(cells) == 16 * 8  # 16 columns, 16 pixel rows, two per cell
    assert cells[0][0].startswith("fg:#ff0000 bg:#ff0000")
    assert cells[-1][0].startswith("fg:#0000ff bg:#0000ff")
    assert sum(text == "\n" for _, text in rows) == 8


def test_show_over_a_pipe_draws_nothing_and_says_so(make_shell, tmp_path):
    shell = make_shell()
    shell.handle("a red circle -S 1 -s 2")
    shell.lines.clear()
    shell.handle("!show")
    assert shell.lines == [
        f">> not drawing {tmp_path / 'out' / 'img-samples' / '000001.1.png'}: "
        "the output is not a terminal that shows pictures"
    ]
    shell.lines.clear()
    shell.handle("!show -3")
    assert "this session has made 1 image(s)" in shell.lines[0]


def test_preview_fills_the_toolbar_while_the_image_is_made(make_shell):
    import threading
    import time

    shell = make_shell()
    run = threading.Thread(target=shell.handle, args=("a red circle -S 2 -s 500 --preview",))
    run.start()
    end = time.time() + 60
    while not isinstance(shell.toolbar(), list):  # the picture appears after the first step
        assert time.time() < end and run.is_alive(), "no preview in the toolbar"
        time.sleep(0.02)
    rows = shell.toolbar()
    assert any(text == "▀" for _, text in rows) and "running" in rows[-1][1]
    assert shell.worker.cancel_running()
    run.join(timeout=60)
    assert shell.worker.status().preview is None and isinstance(shell.toolbar(), str)  # gone once it stops


@pytest.mark.parametrize(
    ("picture", "terminal", "cell_px", "cells"),
    [
        # half-blocks (one pixel across, two down per cell): as large as the lines allow
        ((64, 64), (200, 50), None, (94, 47)),  # was 32x16 whatever the terminal
        ((64, 64), (80, 24), None, (42, 21)),
        ((600, 350), (200, 50), None, (161, 47)),  # the !schedule plot: was 32x10
        ((1024, 224), (200, 50), None, (198, 22)),  # a wide contact sheet: the width limits
        ((64, 64), (200, 50), (10, 20), (90, 45)),  # kitty/iTerm2: 14x whole pixels, 896 px
        ((64, 64), (80, 24), (9, 18), (36, 18)),  # 5x: 320 px in 21 lines of 18 px
        ((2048, 1024), (80, 24), (9, 18), (78, 20)),  # larger than the screen: reduced, not by whole steps
    ],
)
def test_pictures_fill_the_terminal_keeping_their_shape(picture, terminal, cell_px, cells):
    got = fit_cells(picture, terminal, cell_px)
    assert (got.columns, got.rows) == cells
    assert got.columns <= terminal[0] - 2 and got.rows <= terminal[1] - 3  # the prompt stays on screen
    ratio = picture[0] / picture[1]
    if cell_px is None:  # a cell is 1x2 pixels: columns / (2 rows) is the picture's aspect ratio
        assert abs(got.columns / (2 * got.rows) - ratio) < 0.05 * ratio
    else:
        assert got.scale < 1 or got.scale == int(got.scale)  # enlarged: each pixel a whole square
        assert got.columns * cell_px[0] >= picture[0] * got.scale > (got.columns - 1) * cell_px[0]


def test_graphics_enlarge_by_whole_pixels_and_pad_the_last_cell():
    img = Image.new("RGB", (64, 64), (0, 0, 255))
    img.putpixel((0, 0), (255, 0, 0))
    cells = fit_cells(img.size, (200, 50), (10, 20))
    shown = fitted(img, cells, (10, 20))
    assert shown.size == (900, 900) and cells.scale == 14
    px = np.asarray(shown)
    assert (px[:14, :14, :3] == (255, 0, 0)).all() and (px[14, 14, :3] == (0, 0, 255)).all()
    assert (px[:896, :896, 3] == 255).all() and (px[896:, :, 3] == 0).all()  # transparent past the picture


def test_half_blocks_get_exactly_the_pixels_the_cells_show():
    img = Image.new("RGB", (64, 64), (0, 0, 255))
    cells = fit_cells(img.size, (200, 50))
    assert fitted(img, cells, None).size == (cells.columns, 2 * cells.rows)


def test_live_preview_takes_a_share_of_the_lines(monkeypatch):
    import invoke_shell.shell.terminal_view as view

    monkeypatch.setattr(view, "terminal_size", lambda: (200, 50))
    rows = toolbar_rows(Image.new("RGB", (64, 64), (255, 0, 0)))
    assert sum(text == "\n" for _, text in rows) == 17  # 40 % of 50 lines less 3: was 8 in any terminal
    assert sum(text == "▀" for _, text in rows) == 34 * 17


def test_live_preview_colours_are_snapped_to_the_xterm_palette():
    """prompt_toolkit looks up every new colour in Python: a preview of ever-new colours made a
    120-step line 2.6x slower. Snapped, a gradient draws in a handful of colours."""
    from invoke_shell.shell.terminal_view import xterm_colours

    assert xterm_colours(np.array([[[100, 100, 100], [250, 10, 130]]], dtype=np.uint8)).tolist() == [
        [[98, 98, 98], [255, 0, 135]]
    ]
    ramp = np.linspace(0, 255, 64, dtype=np.uint8)
    img = Image.fromarray(
        np.stack([np.tile(ramp, (64, 1)), np.tile(ramp[:, None], (1, 64)), np.full((64, 64), 90, np.uint8)], -1)
    )
    styles = {style for style, text in toolbar_rows(img, width=32) if text == "▀"}
    colours = {part[3:] for style in styles for part in style.split() if part.startswith(("fg:", "bg:"))}
    assert len(colours) <= 36 + 24  # a 6 x 6 slice of the colour cube, and greys
    assert len(styles) <= 2 * 32 * 16 / 4  # whole runs of a cell repeat: the styles' cache is hit
