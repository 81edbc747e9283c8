"""Where each image of a line goes on its labelled sheet, and what the labels say.

A line's images are the product of its axes, first axis slowest: the groups of a prompt
template (`{red|blue}`, `__colors__`), then a sweep's comma lists, then `-n`'s images. With one
or two axes the sheet has a labelled column per value (and a labelled row per value of the first
axis); with more, or when `--random_prompts` drew some of a template's prompts, it is a grid of
tiles, each labelled with all its values. The plan is stored in the sheet's own metadata, so what
a sheet shows can be read back without looking at its pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from invoke_shell.line.requests import ImageRequest, LineRequest
from invoke_shell.line.switches import BY_NAME
from invoke_shell.line.templates import Expansion

if TYPE_CHECKING:
    from PIL import Image

LABEL = 28  # characters of one value shown on a sheet


@dataclass(frozen=True)
class SheetPlan:
    cells: tuple[tuple[int | None, ...], ...]  # image index per cell, row by row
    col_labels: tuple[str, ...]
    row_labels: tuple[str, ...]
    tile_labels: tuple[tuple[str, ...], ...] = ()  # per row, per cell: when the axes are not rows x columns
    suffix: str = ".sweep"

    def record(self, files: list[str]) -> dict[str, Any]:
        """The layout as the sheet's metadata stores it: what each cell shows, and its file."""
        cells = [[files[i] if i is not None else None for i in row] for row in self.cells]
        if self.tile_labels:
            return {"tiles": [list(r) for r in self.tile_labels], "files": cells}
        return {"columns": list(self.col_labels), "rows": list(self.row_labels), "files": cells}

    def draw(
        self, images: list[Image.Image], files: list[str], first_column: tuple[Image.Image, str] | None = None
    ) -> tuple[Image.Image, dict[str, Any]]:
        """The sheet and its record. `first_column` (a picture and its path) heads every row of a
        rows x columns sheet: the init image a strength sweep starts from."""
        from invoke_shell.files.sheets import GAP, labelled_sheet, labelled_tiles

        cells = [[images[i] if i is not None else None for i in row] for row in self.cells]
        record = self.record(files)
        if self.tile_labels:
            return labelled_tiles(cells, self.tile_labels, min_tile=128), record
        col_labels = self.col_labels
        if first_column is not None:
            picture, path = first_column
            cells = [[picture, *row] for row in cells]
            col_labels, record["first_column"] = ("init image", *col_labels), path
        return labelled_sheet(cells, col_labels, self.row_labels, min_tile=128, gap=GAP), record


def plan(line: LineRequest, images: list[ImageRequest], expansion: Expansion | None) -> SheetPlan | None:
    """The sheet of a line, or None when the line writes no labelled sheet (one prompt, no sweep)."""
    per_prompt = len(images) // len(expansion.prompts) if expansion else len(images)
    base = _base_axis(line, images[:per_prompt])
    if expansion is None or len(expansion.prompts) * per_prompt <= 1:
        if not line.sweep:
            return None
        return _rows_and_columns([_switch_axis(name, values) for name, values in line.sweep], ".sweep")
    if expansion.axes:
        axes = [[_short(v) for v in values] for _, values in expansion.axes]
        if base:
            axes += base
        if len(axes) <= 2:
            return _rows_and_columns(axes, ".prompts")
        labels = [tuple(_short(v) for v in expansion.labels[k]) for k in range(len(expansion.prompts))]
    else:  # drawn or whole-template expansions: each prompt labelled by its own values
        labels = [tuple(_short(v) for v in values) for values in expansion.labels]
    tiles = []
    for k, prompt_labels in enumerate(labels):
        for j in range(per_prompt):
            values = prompt_labels + tuple(axis[_position(j, base, a)] for a, axis in enumerate(base))
            if line.vary_seed:  # each prompt has its own seed: show it
                values += (f"{BY_NAME['seed'].flag} {images[k * per_prompt + j].seed}",)
            tiles.append("\n".join(values))
    return _tiles(tiles)


def _base_axis(line: LineRequest, images: list[ImageRequest]) -> list[list[str]]:
    """The axes of one prompt's images: a sweep's lists, or -n's images."""
    if line.sweep:
        return [_switch_axis(name, values) for name, values in line.sweep]
    if len(images) <= 1:
        return []
    if line.variation_amount or line.vary_seed:
        return [[f"image {i + 1}" for i in range(len(images))]]
    return [[f"{BY_NAME['seed'].flag} {im.seed}" for im in images]]


def _position(j: int, axes: list[list[str]], a: int) -> int:
    """Which value of axis `a` image `j` of one prompt has (first axis slowest)."""
    inner = math.prod(len(axis) for axis in axes[a + 1 :])
    return (j // inner) % len(axes[a])


def _switch_axis(name: str, values: tuple[Any, ...]) -> list[str]:
    sw = BY_NAME[name]
    return [f"{sw.flag} {sw.text(v)}" for v in values]


def _rows_and_columns(axes: list[list[str]], suffix: str) -> SheetPlan:
    cols = axes[-1]
    rows = axes[0] if len(axes) == 2 else []
    n_rows = max(len(rows), 1)
    cells = tuple(tuple(r * len(cols) + c for c in range(len(cols))) for r in range(n_rows))
    return SheetPlan(cells, tuple(cols), tuple(rows), suffix=suffix)


def _tiles(labels: list[str]) -> SheetPlan:
    from invoke_shell.files.sheets import grid_shape

    _, cols = grid_shape(len(labels))  # as a -g grid: 3 prompts side by side, not 2x2 with a hole
    lines = max(t.count("\n") + 1 for t in labels)
    padded = [t + "\n" * (lines - 1 - t.count("\n")) for t in labels]  # every band the same height
    cells, tile_labels = [], []
    for start in range(0, len(labels), cols):
        row = list(range(start, min(start + cols, len(labels))))
        cells.append(tuple(row))
        tile_labels.append(tuple(padded[i] for i in row))
    return SheetPlan(tuple(cells), (), (), tuple(tile_labels), suffix=".prompts")


def _short(text: str) -> str:
    return text if len(text) <= LABEL else text[: LABEL - 3] + "..."
