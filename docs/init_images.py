"""Remake docs/init_images.png from the README's init-image session, run through invoke-shell.

    python docs/init_images.py

Draws the session's input files with Pillow (a doodle with a transparent background, a 300x200
sketch, a mask), runs the session's lines with `invoke-shell --from_file` in a scratch folder on
the embedded model, and lays the inputs and outputs side by side, each labelled, at twice their
size. Run it again whenever the embedded model changes, so the picture shows what it draws.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

from invoke_shell.files.sheets import GAP, LINE, PAD, drawing, spaced

LINES = """\
a red circle on a green background -I doodle.png -f 0.8 -S 1
a yellow square on a blue background -I sketch.png --fit -f 0.9 -S 2
a red circle on a blue background -S 3
a white circle on a blue background -I -1 -M disc.png -f 1 -S 3
a red circle on a blue background -I -2 --outcrop right 32 -f 1 -S 3
a red circle on a blue background --hires_fix -S 3
"""


def inputs(folder: Path) -> None:
    doodle = Image.new("RGBA", (64, 64), (0, 0, 0, 0))  # colour erased under the transparency
    ImageDraw.Draw(doodle).ellipse((18, 18, 46, 46), fill=(220, 30, 30, 255))
    doodle.save(folder / "doodle.png")
    sketch = Image.new("RGB", (300, 200), (30, 60, 220))
    ImageDraw.Draw(sketch).rectangle((60, 100, 130, 170), fill=(240, 220, 40))
    sketch.save(folder / "sketch.png")
    disc = Image.new("L", (64, 64), 0)  # white: repaint there (where seed 3 draws its circle)
    ImageDraw.Draw(disc).ellipse((12, 12, 52, 52), fill=255)
    disc.save(folder / "disc.png")


def checkered(im: Image.Image, cell: int = 8) -> Image.Image:
    """An RGBA picture over grey checks, as image viewers show transparency."""
    board = Image.new("RGB", im.size, (200, 200, 200))
    draw = ImageDraw.Draw(board)
    for y in range(0, im.height, cell):
        for x in range(0, im.width, cell):
            if (x // cell + y // cell) % 2:
                draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill=(150, 150, 150))
    board.paste(im, mask=im.getchannel("A"))
    return board


def strip(tiles: list[tuple[str, Image.Image, int]]) -> Image.Image:
    """Pictures of different sizes side by side, top-aligned, each with its label above it and
    enlarged by its own whole factor (a hires pass is already twice the size)."""
    tiles = [(label, im.resize((im.width * k, im.height * k), Image.Resampling.NEAREST)) for label, im, k in tiles]
    top = LINE + PAD
    width = sum(im.width for _, im in tiles) + GAP * (len(tiles) - 1)
    sheet = Image.new("RGB", (width, top + max(im.height for _, im in tiles)), (255, 255, 255))
    draw, x = drawing(sheet), 0
    for label, im in tiles:
        draw.text((x + 2, 2), spaced(label), fill=(0, 0, 0))
        sheet.paste(im, (x, top))
        x += im.width + GAP
    return sheet


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        inputs(folder)
        (folder / "session.txt").write_text(LINES)
        shell = Path(sys.executable).with_name("invoke-shell")
        subprocess.run([str(shell), "--from_file", "session.txt", "--outdir", "out"], cwd=folder, check=True)
        made = sorted((folder / "out" / "img-samples").glob("0*.png"))
        out = {int(p.name[:6]): p for p in made if not p.name.endswith(".mask.png")}
        tiles = [
            ("doodle.png", checkered(Image.open(folder / "doodle.png")), 2),
            ("transparency inpaint", Image.open(out[1]), 2),
            ("300x200 --fit", Image.open(out[2]), 2),
            ("txt2img", Image.open(out[3]), 2),
            ("-M disc.png", Image.open(out[4]), 2),
            ("--outcrop right 32", Image.open(out[5]), 2),
            ("--hires_fix (128x128)", Image.open(out[6]), 1),
        ]
        target = Path(__file__).with_name("init_images.png")
        strip(tiles).save(target)
        print(f"wrote {target}")


if __name__ == "__main__":
    main()
