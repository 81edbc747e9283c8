"""Where results land: numbered PNGs with their metadata, and the command log.

<outdir>/img-samples/NNNNNN.SEED.png, the six-digit number continuing across restarts.
Files are created exclusively, so nothing already written is ever overwritten.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo

_NUMBERED = re.compile(r"^(\d{6})\.")


def samples_dir(outdir: Path) -> Path:
    return outdir / "img-samples"


def next_number(folder: Path) -> int:
    if not folder.exists():
        return 1
    numbers = [int(m.group(1)) for p in folder.iterdir() if (m := _NUMBERED.match(p.name))]
    return max(numbers, default=0) + 1


def write_png(outdir: Path, seed: int, image: Image.Image, chunks: dict[str, str], suffix: str = "") -> Path:
    folder = samples_dir(outdir)
    folder.mkdir(parents=True, exist_ok=True)
    info = PngInfo()
    for key, value in chunks.items():
        info.add_itxt(key, value) if not value.isascii() else info.add_text(key, value)
    n = next_number(folder)
    while True:
        path = folder / f"{n:06d}.{seed}{suffix}.png"
        try:
            with open(path, "xb") as f:  # exclusive: never overwrite
                image.save(f, format="PNG", pnginfo=info)
            return path
        except FileExistsError:
            n += 1


def grid(images: list[Image.Image]) -> Image.Image:
    """The images side by side in rows, as square as the count allows."""
    cols = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    w, h = images[0].size
    sheet = Image.new("RGB", (cols * w, rows * h), (0, 0, 0))
    for i, im in enumerate(images):
        sheet.paste(im, ((i % cols) * w, (i // cols) * h))
    return sheet


def append_log(outdir: Path, command: str, path: Path) -> None:
    log = samples_dir(outdir) / "invoke_log.md"
    stamp = datetime.now().isoformat(timespec="seconds")
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"* {stamp} `{path.name}`: `{command}`\n")
