"""Reading the files a line names (init images), with errors a user can act on."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError

from invoke_shell.errors import UsageError


def check_init_path(path: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise UsageError(f"init image {path} does not exist", "check the path after -I (tab completes paths)")
    if p.is_dir():
        raise UsageError(f"init image {path} is a folder", "give one image file after -I")
    try:
        with Image.open(p) as im:
            im.verify()
    except (UnidentifiedImageError, OSError, SyntaxError):
        raise UsageError(f"init image {path} is not an image Pillow can read", "use a PNG or JPEG file") from None
    return p


def load_init_image(path: str, width: int, height: int) -> tuple[Image.Image, str | None]:
    """The init image as RGB at the request's size, and a note when it had to be resized."""
    p = check_init_path(path)
    with Image.open(p) as im:
        im.load()
        rgb = im.convert("RGB")
    if rgb.size == (width, height):
        return rgb, None
    note = f"init image resized from {rgb.width}x{rgb.height} to {width}x{height}"
    return rgb.resize((width, height), Image.Resampling.LANCZOS), note
