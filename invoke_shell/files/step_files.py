"""Per-step intermediates, written beside the generation rather than in its way.

A chosen step passes through two hands. A thread in this process turns it into pictures (the
fast previewer, torch code that lets go of the GIL while it computes) and plain arrays; a
writer process, spawned once per session with no torch in it, writes the files and draws the
animation frames and the contact sheet. That drawing (text, GIF quantizing, pasting) holds the
GIL: on a thread it slowed the UNet's Python loop by ~15 % on the embedded model; in its own
process it runs on the other core and costs the generation only the hand-over.

The files go to a hidden folder under intermediates/, which takes the image's name once
everything is written; an old folder of that name is never reused.
"""

from __future__ import annotations

import multiprocessing
import os
import secrets
import shutil
import signal
import threading
import zlib
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from PIL import Image

from invoke_shell.files import intermediates
from invoke_shell.files.outputs import WriteError, intermediates_dir, write_error

if TYPE_CHECKING:
    from invoke_shell.engines.generate import StepState

T = TypeVar("T")
_DIED = ("the intermediates writer process stopped", "run the line again (a new writer starts)")


class StepWriter:
    """The render thread and the writer process a session shares. The process starts with the
    first step handed to it; if it dies, the next line starts a new one."""

    def __init__(self) -> None:
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="invoke-steps")
        self._process: ProcessPoolExecutor | None = None
        self._starting = threading.Lock()

    def process(self) -> ProcessPoolExecutor:
        # under a lock: two threads asking at once (a benchmark beside the render thread) made two
        # processes, and a folder opened in one was finished in the other
        with self._starting:
            if self._process is None:
                # spawn, not fork: forking a process that holds torch's thread pools can hang the child
                ctx = multiprocessing.get_context("spawn")
                self._process = ProcessPoolExecutor(1, mp_context=ctx, initializer=_ignore_ctrl_c)
            return self._process

    def lost(self) -> None:
        """The process died: forget it (the next line starts another)."""
        with self._starting:
            if self._process is not None:
                self._process.shutdown(wait=False, cancel_futures=True)
                self._process = None

    def shutdown(self) -> None:
        self.thread.shutdown(wait=True)
        if self._process is not None:
            self._process.shutdown(wait=True)


class Finishing:
    """A finished folder's files, once the writer process has written them all."""

    def __init__(self, handed: Future[Future[list[str]]], files: StepFiles) -> None:
        self._handed, self._files = handed, files

    def result(self) -> list[Path]:
        try:
            return [Path(p) for p in self._handed.result().result()]
        except BrokenProcessPool:
            self._files.writer_died()
            raise WriteError(*_DIED) from None


class StepFiles:
    """One image's per-step files: `step` hands each chosen step over as it comes, `finish`
    names the folder after the image once it has a name, `abandon` removes it."""

    def __init__(self, samples: Path, render: intermediates.Render, writer: StepWriter) -> None:
        self.render, self.writer = render, writer
        self.folder = samples / "intermediates" / f".steps-{secrets.token_hex(4)}.tmp"
        try:
            self.folder.mkdir(parents=True)
        except OSError as e:
            raise write_error(f"could not make {self.folder.parent}", e) from None
        self._handed: list[Future[Future[None]]] = []
        self.writer.thread.submit(self._send, open_folder, str(self.folder))

    @property
    def steps(self) -> int:
        return len(self._handed)

    def step(self, state: StepState, pictures: tuple[Image.Image, Image.Image | None] | None = None) -> None:
        """Write a step's files; `pictures` (x_t, x0) when they were made already, else `render`."""
        self._handed.append(self.writer.thread.submit(self._hand_over, state, pictures))

    def finish(self, image_path: Path) -> Finishing:
        final = str(intermediates_dir(image_path))
        return Finishing(self.writer.thread.submit(self._send, finish_folder, str(self.folder), final), self)

    def abandon(self) -> None:
        try:
            self.writer.thread.submit(self._send, abandon_folder, str(self.folder)).result().result()
        except (BrokenProcessPool, WriteError):  # it died, now or before: the folder goes here
            self.writer_died()

    def writer_died(self) -> None:
        """The writer process died: a new one for the next line, and this folder goes."""
        self.writer.lost()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _hand_over(self, s: StepState, pictures: tuple[Image.Image, Image.Image | None] | None) -> Future[None]:
        """On the render thread: the step's pictures and arrays, to the writer process."""
        xt, x0 = pictures or self.render(s)
        tensors = {"latents": s.latents.detach().float().cpu().numpy()}
        if s.denoised is not None:
            tensors["denoised"] = s.denoised.detach().float().cpu().numpy()
        return self._send(write_step, str(self.folder), intermediates.StepInfo.of(s), tensors, xt, x0)

    def _send(self, fn: Callable[..., T], *args: object) -> Future[T]:
        try:
            return self.writer.process().submit(fn, *args)
        except BrokenProcessPool:
            self.writer.lost()
            failed: Future[T] = Future()
            failed.set_exception(WriteError(*_DIED))
            return failed


# ---- in the writer process: each open folder's frames, kept until the folder is finished


@dataclass
class _Folder:
    # each step: its info, whether it has an x0, its contact-sheet column, its GIF frame
    frames: list[tuple[intermediates.StepInfo, bool, Image.Image, Image.Image]] = field(default_factory=list)
    encoding: list[Future[None]] = field(default_factory=list)  # the steps' PNGs being written
    failed: OSError | None = None  # a step could not be written: finishing reports it

    def written(self) -> None:
        """Wait for the PNGs; the first that failed becomes the folder's failure."""
        for png in self.encoding:
            try:
                png.result()
            except OSError as e:
                self.failed = self.failed or e
        self.encoding.clear()


_open: dict[str, _Folder] = {}
# previews and sheets: fast beats small (run-length deflate: as fast as level 1 alone, 5-10 % smaller)
_FAST_PNG: dict[str, Any] = {"compress_level": 1, "compress_type": zlib.Z_RLE}
_encoders: ThreadPoolExecutor | None = None


def _encode(im: Image.Image, path: str) -> Future[None]:
    """A step's PNG, encoded on a thread: zlib lets go of the GIL, so on a machine with cores to
    spare a full-size model's 512-px previews (36 ms each on this project's CPU) keep up."""
    global _encoders
    if _encoders is None:
        _encoders = ThreadPoolExecutor(max(1, min(4, (os.cpu_count() or 2) - 1)))
    return _encoders.submit(im.save, path, "PNG", **_FAST_PNG)


def _ignore_ctrl_c() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the line in the shell, not its writer


def write_step(
    folder: str, s: intermediates.StepInfo, tensors: dict[str, np.ndarray], xt: Image.Image, x0: Image.Image | None
) -> None:
    from safetensors.numpy import save_file

    f = _open.get(folder)
    if f is None or f.failed is not None:  # None: this process replaced one that died
        return
    stem = os.path.join(folder, f"step_{s.step:03d}")
    tags = {"step": str(s.step), "timestep": f"{s.timestep:.3f}", "sigma": f"{s.sigma:.5f}"}
    tags["preview_scale"] = repr(s.preview_scale)
    try:
        save_file(tensors, stem + ".safetensors", metadata=tags)  # in a folder no one else sees yet
    except OSError as e:
        f.failed = e
        return
    f.encoding += [_encode(xt, stem + ".xt.png"), *([_encode(x0, stem + ".x0.png")] if x0 is not None else [])]
    frame = (s, xt, x0)  # the encoders only read the pictures
    f.frames.append((s, x0 is not None, intermediates.sheet_column(frame), intermediates.animation_frame(frame)))


def finish_folder(folder: str, final: str) -> list[str]:
    """The contact sheet and the animation, then the folder takes its name; the files' paths."""
    f = _open.pop(folder, None)
    if f is None:  # the process that held its steps died and this one replaced it
        shutil.rmtree(folder, ignore_errors=True)
        raise WriteError(*_DIED)
    f.written()
    try:
        if f.failed is not None:
            raise f.failed
        # each step's column and frame were drawn as it came: what is left is pasting and encoding,
        # the GIF beside the sheet (both encoders let go of the GIL; the shell is only waiting)
        anim = [gif for *_, gif in f.frames]
        with ThreadPoolExecutor(1) as beside:
            gif = beside.submit(
                anim[0].save,
                Path(folder, "steps.gif"),
                "GIF",
                save_all=True,
                append_images=anim[1:],
                duration=250,
                loop=0,
            )
            sheet = intermediates.contact_sheet([column for _, _, column, _ in f.frames])
            sheet.save(Path(folder, "contact_sheet.png"), "PNG", **_FAST_PNG)
            gif.result()
        if os.path.exists(final):
            raise WriteError(
                f"{final} already exists: intermediates are never written into an old folder",
                "move or delete that folder",
            )
        os.rename(folder, final)
    except OSError as e:
        shutil.rmtree(folder, ignore_errors=True)
        raise write_error(f"could not write the intermediates in {final}", e) from None
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    names = [f"step_{s.step:03d}{ext}" for s, has_x0, _, _ in f.frames for ext in _exts(has_x0)]
    return [os.path.join(final, n) for n in [*names, "contact_sheet.png", "steps.gif"]]


def open_folder(folder: str) -> None:
    _open[folder] = _Folder()


def abandon_folder(folder: str) -> None:
    f = _open.pop(folder, None)
    if f is not None:
        f.written()  # nothing may still be writing into the folder
    shutil.rmtree(folder, ignore_errors=True)


def _exts(with_x0: bool) -> tuple[str, ...]:
    return (".safetensors", ".xt.png", ".x0.png") if with_x0 else (".safetensors", ".xt.png")
