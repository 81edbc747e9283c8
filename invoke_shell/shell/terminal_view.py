"""Pictures in the terminal, so a user never has to leave the shell to look.

`!show` draws with term-image, which picks the kitty or iTerm2 image protocol where the
terminal has one and true-colour half-blocks elsewhere. The live `--preview` is drawn inside the
prompt's bottom toolbar, as half-block text with prompt_toolkit styles, since an image protocol
cannot live inside prompt_toolkit's layout. Over a pipe or with TERM=dumb nothing is drawn.
Both are sized to the terminal by one pure function, `fit_cells`.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image


def can_draw() -> bool:
    return sys.__stdout__ is not None and sys.__stdout__.isatty() and os.environ.get("TERM", "") not in ("", "dumb")


def terminal_size() -> tuple[int, int]:
    """Columns and lines of the terminal itself: COLUMNS/LINES exported by a shell go stale
    when the window is resized, so they count only when there is no terminal to ask."""
    try:
        size = os.get_terminal_size(sys.__stdout__.fileno()) if sys.__stdout__ is not None else None
    except (OSError, ValueError):
        size = None
    size = size or shutil.get_terminal_size()
    return size.columns, size.lines


GRAPHICS = ("KittyImage", "ITerm2Image")  # term-image styles that draw real pixels


@dataclass(frozen=True)
class Cells:
    """Where a picture goes: `columns` x `rows` character cells, the picture drawn `scale` times
    its size. With an image protocol the scale is a whole number when it is above 1, so every
    image pixel is a square block of screen pixels (no blur); with half-blocks a cell holds one
    pixel across and two down."""

    columns: int
    rows: int
    scale: float


def fit_cells(
    picture: tuple[int, int],
    terminal: tuple[int, int],
    cell_px: tuple[int, int] | None = None,
    share: float = 1.0,
) -> Cells:
    """The cells for a `picture` (width, height in pixels) in a `terminal` (columns, lines): as
    wide as the terminal allows less a margin, no taller than `share` of its lines less the
    prompt's, aspect ratio kept. `cell_px` (width, height of a cell in pixels) means an image
    protocol draws real pixels; None means half-blocks, whose pixels are square when a cell is
    twice as tall as wide."""
    w, h = picture
    columns = max(4, terminal[0] - 2)
    rows = max(2, int(terminal[1] * share) - 3)  # the path line, the prompt and one spare
    if cell_px is None:
        scale = min(columns / w, 2 * rows / h)
        return Cells(max(1, round(w * scale)), max(1, round(h * scale / 2)), scale)
    cw, ch = cell_px
    scale = min(columns * cw / w, rows * ch / h)
    if scale >= 1:
        scale = float(int(scale))
    return Cells(max(1, math.ceil(w * scale / cw)), max(1, math.ceil(h * scale / ch)), scale)


def fitted(image: Image.Image, cells: Cells, cell_px: tuple[int, int] | None) -> Image.Image:
    """The picture at exactly the pixels `cells` shows, so term-image does no resampling of its
    own: whole-number enlargements repeat pixels (a 64x64 drawing stays crisp), reductions
    average them. With an image protocol the rest of the last cell is left transparent."""
    w, h = max(1, round(image.width * cells.scale)), max(1, round(image.height * cells.scale))
    enlarging = cells.scale >= 1
    resized = image.convert("RGB").resize((w, h), Image.Resampling.NEAREST if enlarging else Image.Resampling.BOX)
    if cell_px is None:
        return resized.resize((cells.columns, cells.rows * 2), Image.Resampling.NEAREST)
    canvas = Image.new("RGBA", (cells.columns * cell_px[0], cells.rows * cell_px[1]), (0, 0, 0, 0))
    canvas.paste(resized, (0, 0))
    return canvas


def render(image: Image.Image, share: float = 1.0) -> str:
    """The picture as text for the terminal at hand, sized to it (see fit_cells)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # term-image warns when it must guess the terminal's traits
        from term_image.image import auto_image_class
        from term_image.utils import get_cell_size

        style = auto_image_class()
        cell_px = get_cell_size() if style.__name__ in GRAPHICS else None
        cells = fit_cells(image.size, terminal_size(), cell_px, share)
        picture = style(fitted(image, cells, cell_px))
        picture.set_size(width=cells.columns, height=cells.rows)
        return str(picture)


PREVIEW_SHARE = 0.4  # of the terminal's lines: the live preview leaves room for the output above


def toolbar_rows(image: Image.Image, width: int | None = None) -> list[tuple[str, str]]:
    """prompt_toolkit fragments drawing `image` in upper-half blocks, two pixels per cell, sized
    to the terminal (`width` columns when given), in the xterm 256-colour palette."""
    if width is None:
        width = fit_cells(image.size, terminal_size(), None, PREVIEW_SHARE).columns
    h = max(2, round(image.height * width / image.width / 2) * 2)
    enlarging = width >= image.width
    px = xterm_colours(
        np.asarray(
            image.convert("RGB").resize((width, h), Image.Resampling.NEAREST if enlarging else Image.Resampling.BOX)
        )
    )
    rows: list[tuple[str, str]] = []
    for y in range(0, h, 2):
        for x in range(width):
            top, bottom = px[y, x], px[y + 1, x]
            colours = f"fg:#{top[0]:02x}{top[1]:02x}{top[2]:02x} bg:#{bottom[0]:02x}{bottom[1]:02x}{bottom[2]:02x}"
            rows.append((colours + " noreverse", "▀"))  # the toolbar style is reversed
        rows.append(("", "\n"))
    return rows


def _xterm_palette() -> np.ndarray:
    """The 240 colours of xterm's 256 that prompt_toolkit maps RGB to (the 6x6x6 cube, 24 greys)."""
    levels = np.array([0x00, 0x5F, 0x87, 0xAF, 0xD7, 0xFF])
    cube = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 3)
    greys = np.repeat(8 + 10 * np.arange(24), 3).reshape(-1, 3)
    return np.concatenate([cube, greys]).astype(np.int32)


XTERM = _xterm_palette()


def xterm_colours(px: np.ndarray) -> np.ndarray:
    """Each pixel as its nearest xterm colour. prompt_toolkit draws in 256 colours by default and
    finds the nearest one for each new RGB value, in Python, as it parses each new style: a
    denoising preview's ever-new colours cost the interface thread ~10 s in a 120-step line and
    slowed the image 2.6x. Snapped here, a line's preview uses a few dozen colours, known after
    the first frames."""
    flat = px.reshape(-1, 1, 3).astype(np.int32)
    nearest = ((flat - XTERM[None]) ** 2).sum(-1).argmin(1)
    snapped: np.ndarray = XTERM[nearest].reshape(px.shape).astype(np.uint8)
    return snapped
