"""Where results land. Every file the program writes is named and written here (the per-step
intermediates by step_files.py, in the folder named here).

<outdir>/img-samples/NNNNNN.SEED.png          an image, its command in three metadata chunks
<outdir>/img-samples/NNNNNN.SEED.mask.png     an inpainted image's mask (white: repainted)
<outdir>/img-samples/NNNNNN.SEED.grid.png     -n ... -g; .sweep.png for a sweep's labelled sheet
<outdir>/img-samples/invoke_log.md            one line per file: time, name, command
<outdir>/img-samples/intermediates/NNNNNN.SEED/   per-step latents and previews
<outdir>/schedules/SAMPLER.STEPS[.fSTRENGTH].png  !schedule plots

Nothing is ever overwritten and no name ever holds half a file: a file is written under a
hidden temporary name in its own folder and then linked to its name, which fails if the name
exists. The six-digit number continues across restarts and is unique even between shells
writing into one folder at once: a writer claims number N by creating `.NNNNNN.tmp`
exclusively (one holder at a time), checks that no `NNNNNN.*` appeared meanwhile, writes the
picture into the claim and links it to `NNNNNN.SEED.png` before letting the claim go.
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import secrets
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from invoke_shell.errors import UsageError
from invoke_shell.files import metadata
from invoke_shell.files.metadata import ModelInfo
from invoke_shell.line.requests import ImageRequest

SHEET_KEY = "invoke-sheet"  # a labelled sheet's layout, as JSON
_NUMBERED = re.compile(r"^(\d{6})\.")
LOG_NAME = "invoke_log.md"
_WHERE_HINT = "choose a folder you can write to: -o DIR for a line, --outdir DIR at launch"
_WHY = {
    errno.ENOSPC: ("the disk is full", "free some space, or write elsewhere: -o DIR for a line"),
    errno.EDQUOT: ("the disk quota is used up", "free some space, or write elsewhere: -o DIR for a line"),
    errno.EROFS: ("the file system is read-only", _WHERE_HINT),
    errno.EACCES: ("permission denied", _WHERE_HINT),
    errno.EPERM: ("permission denied", _WHERE_HINT),
}


class WriteError(UsageError):
    """A file could not be written (full disk, read-only or unwritable folder): nothing half
    written is left under its name."""


def samples_dir(outdir: Path) -> Path:
    return outdir / "img-samples"


def intermediates_dir(image_path: Path) -> Path:
    return image_path.parent / "intermediates" / image_path.name.removesuffix(".png")


def prepare_outdir(outdir: Path) -> bool:
    """Before any picture is computed: make <outdir>/img-samples and prove a file can be created
    there. True when the folder is new. Raises WriteError naming the problem."""
    folder = samples_dir(outdir)
    for p in (outdir, folder):
        if p.exists() and not p.is_dir():
            raise WriteError(f"{p} is a file, not a folder", _WHERE_HINT)
    new = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".probe.{secrets.token_hex(4)}.tmp"  # a read-only mount passes access checks
        probe.touch(exist_ok=False)
        probe.unlink()
    except OSError as e:
        raise write_error(f"cannot save images in {folder}", e) from None
    return new


def write_image(
    outdir: Path, req: ImageRequest, image: Image.Image, model: ModelInfo, steps_run: int, schedule_steps: int
) -> tuple[Path, str | None]:
    """One generated image with its command in all three chunks, and its line in the log.
    Returns the file and, when the log could not take its line, a note saying so."""
    chunks = metadata.png_chunks(req, model, steps_run, schedule_steps)
    path = _write_png(samples_dir(outdir), req.seed, image, chunks)
    return path, _log_or_note(outdir, chunks["Dream"], path)  # the command is written once, read here


def mask_path(image_path: Path) -> Path:
    """Where an inpainted image's mask lies: beside it, NNNNNN.SEED.mask.png."""
    return image_path.with_name(image_path.name.removesuffix(".png") + ".mask.png")


def write_mask(image_path: Path, mask: Image.Image) -> Path:
    """The mask an image was inpainted with (white: repainted), beside the image."""
    path = mask_path(image_path)
    try:
        _atomic(path, lambda tmp: mask.save(tmp, format="PNG"))
    except OSError as e:
        raise write_error(f"could not save the mask {path.name}", e) from None
    return path


def write_sheet(
    outdir: Path, seed: int, image: Image.Image, command: str, suffix: str, layout: dict[str, Any] | None = None
) -> tuple[Path, str | None]:
    """A grid or labelled sheet, storing the command of the whole line (which `!fetch` brings back
    whole, sweeps and -n included) and what each cell shows (`invoke-sheet`: the file of each
    image, a labelled sheet's labels)."""
    chunks = {"Dream": command, SHEET_KEY: json.dumps(layout or {})}
    path = _write_png(samples_dir(outdir), seed, image, chunks, suffix=suffix)
    return path, _log_or_note(outdir, command, path)


def save_copy(
    target: Path,
    req: ImageRequest,
    image: Image.Image,
    model: ModelInfo,
    steps_run: int,
    schedule_steps: int,
    folder: bool = False,
) -> Path:
    """!save: an image with its three chunks at a path of the user's, or numbered into a folder
    (`folder`: the path was typed with a trailing slash, and is made if missing). An existing
    file is never replaced; no log line (the PNG carries its command)."""
    chunks = metadata.png_chunks(req, model, steps_run, schedule_steps)
    if folder or target.is_dir():
        return _write_png(target, req.seed, image, chunks)
    if target.suffix.lower() != ".png":
        raise UsageError(f"{target} is not a folder and its name does not end in .png", "e.g. !save ~/keep/cat.png")
    exists = UsageError(f"{target} already exists; it is never overwritten", "give another file name, or a folder")
    if target.exists() or target.is_symlink():
        raise exists
    if not target.parent.is_dir():
        raise UsageError(f"folder {target.parent} does not exist", "create it first, or give a folder that exists")
    data = _png_bytes(image, chunks)
    try:
        _atomic(target, lambda tmp: _write_bytes(tmp, data))
    except FileExistsError:  # made by someone else since the check above
        raise exists from None
    except OSError as e:
        raise write_error(f"could not save {target}", e) from None
    return target


def write_plot(outdir: Path, name: str, image: Image.Image) -> Path:
    """A plot (e.g. !schedule's); the same settings give the same name, so it is replaced
    (atomically: the old plot stays whole until the new one is)."""
    folder = outdir / "schedules"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _atomic(folder / name, lambda tmp: image.save(tmp, format="PNG"), replace=True)
    except OSError as e:
        raise write_error(f"could not save the plot {folder / name}", e) from None
    return folder / name


def next_number(folder: Path) -> int:
    """One past the highest number in the folder or its intermediates (a folder left there by
    an image since deleted still holds its number)."""
    names = [*_names(folder), *_names(folder / "intermediates")]
    return max((int(m.group(1)) for name in names if (m := _NUMBERED.match(name))), default=0) + 1


def _names(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):  # a file named intermediates holds no numbers
        return []


def _write_png(folder: Path, seed: int, image: Image.Image, chunks: dict[str, str], suffix: str = "") -> Path:
    data = _png_bytes(image, chunks)  # encoded before any file exists: a failure leaves nothing
    name = f"the picture of seed {seed}"  # for the message, until a number is tried
    try:
        folder.mkdir(parents=True, exist_ok=True)
        n = next_number(folder)
        while True:
            path = folder / f"{n:06d}.{seed}{suffix}.png"
            name = path.name
            if _write_numbered(folder, n, path, data):
                return path
            n += 1
    except OSError as e:
        raise write_error(f"could not save {name} in {folder}", e) from None


def _write_numbered(folder: Path, n: int, path: Path, data: bytes) -> bool:
    """Write `data` as number n, or return False when n is taken (then try n + 1)."""
    claim = folder / f".{n:06d}.tmp"
    try:
        f = open(claim, "xb")  # exclusive: while it exists no other writer can hold number n
    except FileExistsError:
        return False
    try:
        with f:
            # another shell may have finished number n between our count and our claim
            free = not any(name.startswith(f"{n:06d}.") for name in os.listdir(folder))
            if free:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())  # the bytes are on disk before the name points at them
        if free:
            _publish(claim, path)
        return free
    except FileExistsError:  # the exact name made by something that does not claim numbers
        return False
    finally:
        claim.unlink(missing_ok=True)


def _atomic(path: Path, write: Callable[[Path], object], replace: bool = False) -> None:
    """Write through a hidden temporary name in the same folder, then give it its name: the
    name never holds a partial file, and the temporary one is removed whatever happens."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        write(tmp)
        if replace:
            os.replace(tmp, path)
        else:
            _publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _publish(tmp: Path, path: Path) -> None:
    """Give a finished file its name; FileExistsError if the name is taken (never replaced)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links (FAT, some network shares)
        if path.exists() or path.is_symlink():
            raise FileExistsError(errno.EEXIST, "File exists", str(path)) from None
        os.rename(tmp, path)


def _png_bytes(image: Image.Image, chunks: dict[str, str]) -> bytes:
    info = PngInfo()
    for key, value in chunks.items():
        if value.isascii():
            info.add_text(key, value)
        else:
            info.add_itxt(key, value)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_error(what: str, e: OSError) -> WriteError:
    if isinstance(e, NotADirectoryError | FileExistsError) and e.filename:
        path = Path(os.fsdecode(e.filename))
        file = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), path)
        return WriteError(f"{what}: {file} is a file, not a folder", _WHERE_HINT)
    why, hint = _WHY.get(e.errno or 0, ((e.strerror or str(e)).lower(), _WHERE_HINT))
    return WriteError(f"{what}: {why}", hint)


def _log_or_note(outdir: Path, command: str, path: Path) -> str | None:
    try:
        append_log(outdir, command, path)
    except WriteError as e:
        return f"{path.name} is saved, but not listed in {LOG_NAME}: {e.message}"
    return None


def append_log(outdir: Path, command: str, path: Path) -> None:
    """One line appended to invoke_log.md, never through a symbolic link (which could point
    anywhere). One write call with O_APPEND: lines of shells sharing the log never interleave."""
    log = samples_dir(outdir) / LOG_NAME
    stamp = datetime.now().isoformat(timespec="seconds")
    line = f"* {stamp} `{path.name}`: `{command}`\n".encode()
    linked = WriteError(f"{log} is a symbolic link; the log is not written through it", "replace it with a file")
    if log.is_symlink():  # also where O_NOFOLLOW does not exist (Windows)
        raise linked
    try:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
    except OSError as e:
        raise (linked if e.errno == errno.ELOOP else write_error(f"could not add to {log}", e)) from None
    try:
        os.write(fd, line)
    except OSError as e:
        raise write_error(f"could not add to {log}", e) from None
    finally:
        os.close(fd)
