"""Reading the files a line names (init images, masks), with errors a user can act on.

An init image is loaded as a viewer shows it: EXIF rotation applied, 16-bit grey scaled to 8
bits, the colour under transparency kept, the first frame of an animation. `prepare_init`
brings it to the line's size (resize modes, --fit, --outcrop) and says where to repaint
(transparent pixels, the outcrop strips, a -M mask). Every way a file can fail is one
UsageError naming it; Pillow's pixel limit against decompression bombs stays.
"""

from __future__ import annotations

import re
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from invoke_shell.errors import UsageError, escaped
from invoke_shell.line.requests import round8
from invoke_shell.line.switches import SIDES, Outcrop

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


def check_init_path(path: str, kind: str = "init image", flag: str = "-I") -> Path:
    """The quick checks, at parse time on the shell thread: the file is there, is an image
    Pillow reads, not too large and not too small. Decoding waits for prepare_init."""
    p = Path(path).expanduser()
    what = f"{kind} {escaped(path)}"
    if not p.exists():
        if flag == "-I" and path.isdigit():  # "-I 1" meant as "my first image"
            raise UsageError(
                f"{what} does not exist",
                "images made this session are counted back: -I -1 is the last one, -I -2 the one before; "
                "a file needs its path",
            )
        raise UsageError(f"{what} does not exist", f"check the path after {flag} (tab completes paths)")
    if p.is_dir():
        raise UsageError(f"{what} is a folder", f"give one image file after {flag}")
    if not p.is_file():  # a FIFO or device would block or never end
        raise UsageError(f"{what} is not a regular file", f"give an image file after {flag}")
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
    """The init image as RGB stretched to width x height, and a note on what was done to it
    (resized, transparent pixels, first frame of an animation), or None."""
    init = prepare_init(path, width, height)
    return init.image, ("; ".join(init.notes) or None)


TRANSPARENT_BELOW = 128  # alpha under this is a hole to paint; above, a (soft) edge of the picture


@dataclass(frozen=True)
class InitPicture:
    """An init image made ready for the engine: RGB at the output size, and where to paint."""

    image: Image.Image
    mask: Image.Image | None  # "L" at the same size, 255 where the picture is repainted; None: img2img
    notes: tuple[str, ...]  # what was done to it, each a whole sentence for ">> "

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size


def prepare_init(
    path: str,
    width: int,
    height: int,
    *,
    native: tuple[int, int] | None = None,
    resize_mode: str = "just",
    fit: bool = False,
    outcrop: Outcrop = (),
    own_size: bool = False,
    mask_path: str | None = None,
    invert_mask: bool = False,
) -> InitPicture:
    """Read an init image as a viewer shows it and bring it to the size the line asks for.

    Without `fit` it becomes width x height by `resize_mode` (AUTOMATIC1111's: just stretches,
    crop scales to cover and cuts the overflow, fill scales to fit and fills the border from the
    image's edge). With `fit` it is scaled to fit inside width x height keeping its aspect ratio,
    and its size, rounded down to the latent grid, is the output's. With `own_size` (-U with -I)
    or `outcrop` it keeps its own size (or the fitted one); with `outcrop` its canvas then grows
    by the strips. Transparent pixels, the
    strips and a mask's white (black with `invert_mask`) are what the engine repaints.
    """
    p = check_init_path(path)
    notes = []
    try:
        with open_image(p) as im:
            if getattr(im, "is_animated", False):
                notes.append("init image is animated: its first frame is used")
            upright = ImageOps.exif_transpose(im) or im  # as a viewer shows it (phones store the rotation apart)
            rgb, alpha = _to_rgb(upright)
    except BROKEN as e:
        raise failure(e, p, f"init image {escaped(path)}") from None
    what = "init image"  # notes come under the line that named it
    source = rgb.size
    if fit:
        scale = min(width / source[0], height / source[1])
        size = (max(8, int(source[0] * scale) // 8 * 8), max(8, int(source[1] * scale) // 8 * 8))
        notes.append(
            f"{what} ({source[0]}x{source[1]}) fitted inside {width}x{height} keeping its shape: "
            f"made at {size[0]}x{size[1]} (sides rounded down to multiples of 8)"
        )
        mode = "just"
    elif outcrop or own_size:
        size = (round8(source[0]), round8(source[1]))
        if size != source:
            notes.append(f"{what} is {source[0]}x{source[1]}: rounded to {size[0]}x{size[1]} (multiples of 8)")
        mode = "just"
    else:
        size, mode = (width, height), resize_mode
        if size != source:
            how = {"just": "", "crop": " (cropped to fill)", "fill": " (fitted, border filled from its edge)"}[mode]
            notes.append(f"{what} resized from {source[0]}x{source[1]} to {width}x{height}{how}")
    if native is not None and (source[0] < min(size[0], native[0]) or source[1] < min(size[1], native[1])):
        notes.append(
            f"{what} is {source[0]}x{source[1]}, smaller than the {native[0]}x{native[1]} the model was "
            f"trained at: upscaled (Lanczos) to {size[0]}x{size[1]} before encoding, so expect it soft"
        )
    image = resize(rgb, size, mode)
    hole = None
    if alpha is not None:
        hole = resize(Image.fromarray(alpha, "L"), size, mode).point(lambda a: 255 if a < TRANSPARENT_BELOW else 0)
        notes.append(_transparency_note(what, rgb, alpha, hole))
    if outcrop:
        image, hole, strips = _grow(image, hole, outcrop)
        notes.append(f"{what}: canvas grown from {size[0]}x{size[1]} to {image.width}x{image.height} ({strips})")
    if mask_path is not None:
        mask, note = _read_mask(mask_path, image.size, invert_mask)
        if note:
            notes.append(note)
        hole = mask if hole is None else Image.fromarray(np.maximum(np.asarray(hole), np.asarray(mask)))
    if hole is not None and not np.asarray(hole).any():
        notes.append(f"{what}: nothing is left to repaint (no transparent pixels, the mask is all black)")
    return InitPicture(image, hole, tuple(notes))


def resize(image: Image.Image, size: tuple[int, int], mode: str) -> Image.Image:
    """`image` at `size` by one of RESIZE_MODES (Lanczos throughout)."""
    w, h = size
    lanczos = Image.Resampling.LANCZOS
    if mode == "just" or image.size == size:
        return image if image.size == size else image.resize(size, lanczos)
    cover = mode == "crop"
    scale = (max if cover else min)(w / image.width, h / image.height)
    sw, sh = max(1, round(image.width * scale)), max(1, round(image.height * scale))
    scaled = np.asarray(image.resize((sw, sh), lanczos))
    if cover:  # cut the overflow, centred
        top, left = (sh - h) // 2, (sw - w) // 2
        return Image.fromarray(np.ascontiguousarray(scaled[top : top + h, left : left + w]), image.mode)
    top, left = (h - sh) // 2, (w - sw) // 2  # fill: the border repeats the image's edge pixels
    pad = [(top, h - sh - top), (left, w - sw - left)] + [(0, 0)] * (scaled.ndim - 2)
    return Image.fromarray(np.pad(scaled, pad, mode="edge"), image.mode)


def _grow(image: Image.Image, hole: Image.Image | None, outcrop: Outcrop) -> tuple[Image.Image, Image.Image, str]:
    """The canvas grown by each strip (pixels rounded up to multiples of 8), the strips filled
    from the image's edge (the start of the picture there) and marked to be painted."""
    amounts = {side: -(-px // 8) * 8 for side, px in outcrop}
    top, bottom, left, right = (amounts.get(side, 0) for side in SIDES)
    pixels = np.pad(np.asarray(image), [(top, bottom), (left, right), (0, 0)], mode="edge")
    old = np.asarray(hole) if hole is not None else np.zeros((image.height, image.width), np.uint8)
    grown = np.pad(old, [(top, bottom), (left, right)], constant_values=255)
    shown = ", ".join(
        f"{side} {px}" + (f" (rounded up from {dict(outcrop)[side]})" if px != dict(outcrop)[side] else "")
        for side, px in amounts.items()
    )
    return Image.fromarray(pixels, "RGB"), Image.fromarray(grown, "L"), shown


def _read_mask(path: str, size: tuple[int, int], invert: bool) -> tuple[Image.Image, str | None]:
    """A mask picture as 0/255 at `size`: white (light) is repainted, or black with `invert`;
    transparent parts of a mask count as black."""
    p = check_init_path(path, "mask", "-M")
    try:
        with open_image(p) as im:
            upright = ImageOps.exif_transpose(im) or im
            rgb, alpha = _to_rgb(upright)
    except BROKEN as e:
        raise failure(e, p, f"mask {escaped(path)}") from None
    what = "mask"
    grey = np.asarray(rgb.convert("L"), dtype=np.float32)
    if alpha is not None:
        grey = (grey * alpha.astype(np.float32) / 255).astype(np.float32)
    mask = Image.fromarray(grey.round().astype(np.uint8), "L")
    note = None
    if mask.size != size:
        note = f"{what} is {mask.width}x{mask.height}: resized to {size[0]}x{size[1]}, the init image's size"
        mask = mask.resize(size, Image.Resampling.LANCZOS)
    return mask.point(lambda v: 0 if (v >= 128) == invert else 255), note


def _transparency_note(what: str, rgb: Image.Image, alpha: np.ndarray, hole: Image.Image) -> str:
    share = np.asarray(hole).mean() / 2.55
    clear = alpha == 0
    if clear.any() and not np.asarray(rgb)[clear].any():
        return (
            f"{what} has transparent pixels whose colour was erased (black under them): they are repainted "
            f"({share:.0f} % of the picture) starting from black; fill them with a colour first to start from it"
        )
    return (
        f"{what} has transparent pixels: they are repainted ({share:.0f} % of the picture) starting from "
        "the colour under them, the rest is kept"
    )


def _to_rgb(im: Image.Image) -> tuple[Image.Image, np.ndarray | None]:
    """8-bit RGB (the colour under transparent pixels kept), and the alpha channel when some
    pixel is not opaque."""
    if im.mode in _WIDE_GREY:  # Pillow's own convert clips to 255: nearly every pixel turns white
        grey = np.clip(np.asarray(im, dtype=np.float64) / 257, 0, 255).round().astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB"), None
    if im.mode not in _ALPHA_MODES and "transparency" not in im.info:
        return im.convert("RGB"), None
    rgba = np.asarray(im.convert("RGBA"))  # through RGBA: a palette's transparent index keeps its colour
    rgb = Image.fromarray(np.ascontiguousarray(rgba[..., :3]), "RGB")
    alpha = rgba[..., 3]
    return rgb, (None if alpha.min() == 255 else np.ascontiguousarray(alpha))
