"""Pictures made of pictures.

`labelled_sheet` is the one builder for every labelled sheet: sweep sheets (a value per row
and column), contact sheets of a sampler's steps (x_t above x0, a label per step) and the
embedded model's evaluation strips (a prompt per row, a strength per column). The unlabelled
`-n ... -g` grid is tiles with a small gap, shaped to leave no cell empty where it can.
Sheets are returned, never written here.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

LINE = 11  # height of one line of Pillow's default font, with a pixel of air
PAD = 4
GAP = 4  # pixels of white between the tiles of a grid or a sweep sheet


@functools.cache
def font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default()


def drawing(im: Image.Image) -> ImageDraw.ImageDraw:
    """A Draw with Pillow's default font loaded once: each new Draw loads its own (~0.4 ms), a
    tenth of the intermediates writer's time per step."""
    draw = ImageDraw.Draw(im)
    draw.font = font()
    return draw


def spaced(label: str) -> str:
    """A label as drawn: the default font's space is 2 px, which ran `-A ddim` together as
    `-Addim`; two spaces read as one."""
    return label.replace(" ", "  ")


def labelled_sheet(
    rows: Sequence[Sequence[Image.Image | None]],
    col_labels: Sequence[str] = (),
    row_labels: Sequence[str] = (),
    min_tile: int = 0,
    gap: int = 0,
) -> Image.Image:
    """Tiles in rows (None leaves a cell empty), each column and row labelled; labels may hold
    several lines. Tiles are scaled up by a whole factor (no blur) until they are `min_tile` wide,
    `gap` white pixels apart (a sweep's tiles of one background otherwise run together)."""
    first = next(im for row in rows for im in row if im is not None)
    scale = max(1, -(-min_tile // first.width))
    tw, th = first.width * scale, first.height * scale
    left = row_labels_width(row_labels)
    top = col_labels_height(col_labels)
    cols = max(len(row) for row in rows)
    sheet = Image.new("RGB", (left + cols * (tw + gap) - gap, top + len(rows) * (th + gap) - gap), (255, 255, 255))
    draw = drawing(sheet)
    for c, label in enumerate(col_labels):
        draw.multiline_text((left + c * (tw + gap) + 2, 2), spaced(label), fill=(0, 0, 0), spacing=0)
    draw_row_labels(sheet, row_labels, top, th, gap)
    for r, row in enumerate(rows):
        for c, im in enumerate(row):
            if im is not None:
                tile = im.convert("RGB").resize((tw, th), Image.Resampling.NEAREST)
                sheet.paste(tile, (left + c * (tw + gap), top + r * (th + gap)))
    return sheet


def row_labels_width(row_labels: Sequence[str]) -> int:
    """Pixels left of the first column: the widest row label and its padding (none: 0)."""
    measure = drawing(Image.new("RGB", (1, 1)))
    return max((int(measure.multiline_textbbox((0, 0), spaced(t))[2]) for t in row_labels), default=-2 * PAD) + 2 * PAD


def col_labels_height(col_labels: Sequence[str]) -> int:
    """Pixels above the first row: the tallest column label and its padding (none: 0)."""
    return max((t.count("\n") + 1 for t in col_labels), default=0) * LINE + (PAD if col_labels else 0)


def draw_row_labels(sheet: Image.Image, row_labels: Sequence[str], top: int, tile_height: int, gap: int = 0) -> None:
    """Each row's label left of its tiles, centred on them."""
    draw = drawing(sheet)
    for r, text in enumerate(row_labels):
        lines = text.count("\n") + 1
        y = top + r * (tile_height + gap) + (tile_height - lines * LINE) // 2
        draw.multiline_text((PAD, y), spaced(text), fill=(0, 0, 0), spacing=0)


def labelled_tiles(
    rows: Sequence[Sequence[Image.Image | None]], labels: Sequence[Sequence[str]], min_tile: int = 0
) -> Image.Image:
    """Tiles in rows, each with its own label above it (a band per row of tiles)."""
    bands = [
        labelled_sheet([row], row_labels, min_tile=min_tile, gap=GAP)
        for row, row_labels in zip(rows, labels, strict=True)
    ]
    sheet = Image.new("RGB", (max(b.width for b in bands), sum(b.height for b in bands)), (255, 255, 255))
    top = 0
    for band in bands:
        sheet.paste(band, (0, top))
        top += band.height
    return sheet


def grid_shape(count: int) -> tuple[int, int]:
    """Rows and columns for `count` tiles: the fewest empty cells, then the squarest, at least as
    wide as tall and at most three times (8 images: 2 x 4, not 3 x 3 with a hole)."""
    shapes = [(math.ceil(count / cols), cols) for cols in range(1, count + 1)]
    fitting = [(r, c) for r, c in shapes if r <= c <= 3 * r]
    return min(fitting, key=lambda rc: (rc[0] * rc[1] - count, abs(rc[1] - rc[0])))


def grid(images: Sequence[Image.Image]) -> Image.Image:
    """The images in rows, as square as the count allows, with a small white gap between tiles;
    cells past the last image stay white."""
    rows, cols = grid_shape(len(images))
    w, h = images[0].size
    sheet = Image.new("RGB", (cols * w + (cols - 1) * GAP, rows * h + (rows - 1) * GAP), (255, 255, 255))
    for i, image in enumerate(images):
        sheet.paste(image.convert("RGB"), ((i % cols) * (w + GAP), (i // cols) * (h + GAP)))
    return sheet
