"""Reading the files a line names (init images), with errors a user can act on.

An init image is loaded as a viewer shows it: EXIF rotation applied, 16-bit grey scaled to 8
bits, the colour under transparency kept, the first frame of an animation. Every way a file
can fail is one UsageError naming it; Pillow's pixel limit against decompression bombs stays.
"""

from __future__ import annotations

import re
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from invoke_shell.errors import UsageError, escaped

MIN_SIDE = 8  # the model works in 8x8 blocks: below that there is no picture to start from
# what Pillow raises on a damaged or hostile file: the file's fault, never a bug here
BROKEN = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    struct.error,
    zlib.error,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
)
_ALPHA_MODES = ("RGBA", "LA", "PA", "La", "RGBa")
_WIDE_GREY = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # 16-bit grey; Pillow keeps PNG's as I;16
_PIXELS = re.compile(r"\((\d+) pixels\)")


def open_image(path: Path) -> Image.Image:
    """Image.open, with Pillow's decompression-bomb warning (over MAX_IMAGE_PIXELS) made an
    error like its bomb error (twice that): a picture that large is refused, not warned about."""
    with warnings.catch_warnings():  # only around the header read, so the global filter is held briefly
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        return Image.open(path)


def failure(e: BaseException, path: Path, what: str) -> UsageError:
    """The one message for an exception in BROKEN; `what` names the file ("init image x.png")."""
    if isinstance(e, FileNotFoundError):
        return UsageError(f"{what} does not exist", "check the path (tab completes paths)")
    if isinstance(e, IsADirectoryError):
        return UsageError(f"{what} is a folder", "give one image file")
    if isinstance(e, PermissionError):
        return UsageError(f"{what} cannot be read: permission denied", "check the file's permissions")
    if isinstance(e, Image.DecompressionBombError | Image.DecompressionBombWarning):
        m = _PIXELS.search(str(e))
        size = f"{int(m.group(1)):,} pixels" if m else "too many pixels"
        return UsageError(
            f"{what} has {size}, more than the {Image.MAX_IMAGE_PIXELS or 0:,} that are safe to open "
            "(it could be a decompression bomb)",
            "scale it down first, e.g. to 2048 pixels on its long side",
        )
    if isinstance(e, ValueError) and "Decompressed Data Too Large" in str(e):
        return UsageError(
            f"{what} has a compressed text chunk that inflates past {PngImagePlugin.MAX_TEXT_CHUNK:,} bytes "
            "(a decompression bomb?)",
            "strip its metadata, or save the picture again with another program",
        )
    if isinstance(e, UnidentifiedImageError):
        return UsageError(
            f"{what} {_what_it_is(path)}", "use a PNG, JPEG or WebP file (renaming a file does not convert it)"
        )
    reason = escaped(str(e), 80)
    return UsageError(f"{what} is damaged or cut short ({reason})", "save or copy the picture again")


def _what_it_is(path: Path) -> str:
    try:
        with path.open("rb") as f:
            head = f.read(512)
    except OSError:
        head = b"\0"
    if not head:
        return "is empty (0 bytes)"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = "\0"  # a UTF-8 character cut at byte 512 is rare enough to call binary
    if "\0" not in text and text.strip():
        return "is not an image: it holds text"
    return "is not an image Pillow can read"


def check_init_path(path: str) -> Path:
    """The quick checks, at parse time on the shell thread: the file is there, is an image
    Pillow reads, not too large and not too small. Decoding waits for load_init_image."""
    p = Path(path).expanduser()
    what = f"init image {escaped(path)}"
    if not p.exists():
        raise UsageError(f"{what} does not exist", "check the path after -I (tab completes paths)")
    if p.is_dir():
        raise UsageError(f"{what} is a folder", "give one image file after -I")
    if not p.is_file():  # a FIFO or device would block or never end
        raise UsageError(f"{what} is not a regular file", "give an image file after -I")
    if p.stat().st_size == 0:
        raise UsageError(f"{what} is empty (0 bytes)", "the file was not saved completely: save or copy it again")
    try:
        with open_image(p) as im:
            size = im.size
            im.verify()  # PNG: every chunk's checksum, so a cut-short file is found now
    except BROKEN as e:
        raise failure(e, p, what) from None
    if min(size) < MIN_SIDE:
        raise UsageError(
            f"{what} is {size[0]}x{size[1]} pixels, too small to start from",
            f"give a picture at least {MIN_SIDE}x{MIN_SIDE} (the model works in {MIN_SIDE}x{MIN_SIDE} blocks)",
        )
    return p


def load_init_image(path: str, width: int, height: int) -> tuple[Image.Image, str | None]:
    """The init image as RGB at the request's size, and a note on what was done to it (resized,
    transparency ignored, first frame of an animation), or None."""
    p = check_init_path(path)
    what = f"init image {escaped(path)}"
    parts = []
    try:
        with open_image(p) as im:
            if getattr(im, "is_animated", False):
                parts.append("is animated: its first frame is used")
            upright = ImageOps.exif_transpose(im) or im  # as a viewer shows it (phones store the rotation apart)
            rgb, transparency = _to_rgb(upright)
    except BROKEN as e:
        raise failure(e, p, what) from None
    if transparency:
        parts.append(transparency)
    if rgb.size != (width, height):
        parts.insert(0, f"resized from {rgb.width}x{rgb.height} to {width}x{height}")
        rgb = rgb.resize((width, height), Image.Resampling.LANCZOS)
    return rgb, ("init image " + "; ".join(parts)) if parts else None


def _to_rgb(im: Image.Image) -> tuple[Image.Image, str | None]:
    """8-bit RGB, and a note when transparent pixels were flattened to their underlying colour."""
    if im.mode in _WIDE_GREY:  # Pillow's own convert clips to 255: nearly every pixel turns white
        grey = np.clip(np.asarray(im, dtype=np.float64) / 257, 0, 255).round().astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB"), None
    if im.mode not in _ALPHA_MODES and "transparency" not in im.info:
        return im.convert("RGB"), None
    rgba = np.asarray(im.convert("RGBA"))  # through RGBA: a palette's transparent index keeps its colour
    rgb = Image.fromarray(np.ascontiguousarray(rgba[..., :3]), "RGB")
    alpha = rgba[..., 3]
    if alpha.min() == 255:
        return rgb, None
    clear = alpha == 0
    if clear.any() and not rgba[..., :3][clear].any():
        return rgb, (
            "has transparent pixels whose colour was erased (black under them): img2img starts from black "
            "there; fill the background first if that is not what you want"
        )
    return rgb, "has transparent pixels: their underlying colour is used (transparency is ignored)"
