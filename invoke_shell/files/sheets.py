"""Pictures made of pictures.

`labelled_sheet` is the one builder for every labelled sheet: sweep sheets (a value per row
and column), contact sheets of a sampler's steps (x_t above x0, a label per step) and the
embedded model's evaluation strips (a prompt per row, a strength per column). The unlabelled
`-n ... -g` grid is diffusers' own `make_image_grid`. Sheets are returned, never written here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from PIL import Image, ImageDraw

LINE = 11  # height of one line of Pillow's default font, with a pixel of air
PAD = 4


def labelled_sheet(
    rows: Sequence[Sequence[Image.Image | None]],
    col_labels: Sequence[str] = (),
    row_labels: Sequence[str] = (),
    min_tile: int = 0,
) -> Image.Image:
    """Tiles in rows (None leaves a cell empty), each column and row labelled; labels may hold
    several lines. Tiles are scaled up by a whole factor (no blur) until they are `min_tile` wide."""
    first = next(im for row in rows for im in row if im is not None)
    scale = max(1, -(-min_tile // first.width))
    tw, th = first.width * scale, first.height * scale
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left = max((int(measure.multiline_textbbox((0, 0), t)[2]) for t in row_labels), default=-2 * PAD) + 2 * PAD
    top = max((t.count("\n") + 1 for t in col_labels), default=0) * LINE + (PAD if col_labels else 0)
    cols = max(len(row) for row in rows)
    sheet = Image.new("RGB", (left + cols * tw, top + len(rows) * th), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for c, label in enumerate(col_labels):
        draw.multiline_text((left + c * tw + 2, 2), label, fill=(0, 0, 0), spacing=0)
    for r, row in enumerate(rows):
        if r < len(row_labels):
            lines = row_labels[r].count("\n") + 1
            draw.multiline_text(
                (PAD, top + r * th + (th - lines * LINE) // 2), row_labels[r], fill=(0, 0, 0), spacing=0
            )
        for c, im in enumerate(row):
            if im is not None:
                sheet.paste(im.convert("RGB").resize((tw, th), Image.Resampling.NEAREST), (left + c * tw, top + r * th))
    return sheet


def grid(images: Sequence[Image.Image]) -> Image.Image:
    """The images side by side in rows, as square as the count allows (empty cells black)."""
    from diffusers.utils import make_image_grid

    cols = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    blank = Image.new("RGB", images[0].size)
    sheet: Image.Image = make_image_grid([*images, *[blank] * (rows * cols - len(images))], rows, cols)
    return sheet
