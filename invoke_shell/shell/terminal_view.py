"""Pictures in the terminal, so a user never has to leave the shell to look.

`!show` draws with term-image, which picks the kitty or iTerm2 image protocol where the
terminal has one and true-colour half-blocks elsewhere. The live `--preview` is drawn inside the
prompt's bottom toolbar, as half-block text with prompt_toolkit styles, since an image protocol
cannot live inside prompt_toolkit's layout. Over a pipe or with TERM=dumb nothing is drawn.
"""

from __future__ import annotations

import os
import shutil
import sys
import warnings

import numpy as np
from PIL import Image


def can_draw() -> bool:
    return sys.__stdout__ is not None and sys.__stdout__.isatty() and os.environ.get("TERM", "") not in ("", "dumb")


def render(image: Image.Image, width: int = 32) -> str:
    """The picture as text for the terminal at hand, `width` columns wide at most."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # term-image warns when it must guess the terminal's traits
        from term_image.image import AutoImage

        picture = AutoImage(image.convert("RGB"))
        picture.set_size(width=max(4, min(width, shutil.get_terminal_size().columns - 2)))
        return str(picture)


def toolbar_rows(image: Image.Image, width: int = 16) -> list[tuple[str, str]]:
    """prompt_toolkit fragments drawing `image` in upper-half blocks: two pixels per cell."""
    h = max(2, round(image.height * width / image.width / 2) * 2)
    px = np.asarray(image.convert("RGB").resize((width, h), Image.Resampling.BILINEAR))
    rows: list[tuple[str, str]] = []
    for y in range(0, h, 2):
        for x in range(width):
            top, bottom = px[y, x], px[y + 1, x]
            colours = f"fg:#{top[0]:02x}{top[1]:02x}{top[2]:02x} bg:#{bottom[0]:02x}{bottom[1]:02x}{bottom[2]:02x}"
            rows.append((colours + " noreverse", "▀"))  # the toolbar style is reversed
        rows.append(("", "\n"))
    return rows
