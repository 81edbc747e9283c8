"""Per-step intermediates, written beside the generation rather than in its way.

The generation's thread only copies a chosen step's latents and sends them down a pipe: on the
embedded model, whose sampler loop is Python-bound on one core, any work in this process (a
preview decoder's torch call, pickling pictures, a process pool's helper threads waking) holds
the GIL the loop needs, and cost the line 10-20 %. A writer process, spawned once per session,
does the rest on the other core: it decodes the fast previews with the model's previewer (sent
once), writes the files, draws the animation frames and the contact sheet. The exact VAE
pictures (`--intermediates_decode vae`) need the model, so they are made here and sent along.

The files go to a hidden folder under intermediates/, which takes the image's name once
everything is written; an old folder of that name is never reused.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import queue
import secrets
import shutil
import signal
import threading
import weakref
import zlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from invoke_shell.files import intermediates
from invoke_shell.files.outputs import WriteError, intermediates_dir, write_error

if TYPE_CHECKING:
    import torch

    from invoke_shell.engines.generate import StepState
    from invoke_shell.engines.previews import Previewer

Pictures = tuple[Image.Image, Image.Image | None]  # a step's x_t and x0 pictures


class WriterDied(WriteError):
    def __init__(self) -> None:
        super().__init__("the intermediates writer process stopped", "run the line again (a new writer starts)")


class StepWriter:
    """The writer process a session shares and the pipe to it. The process starts with the
    first folder opened; if it dies, the next line starts a new one."""

    def __init__(self) -> None:
        self._sending = threading.Lock()  # one start, one message at a time
        self._reading = threading.Lock()
        self._conn: Connection | None = None
        self._process: BaseProcess | None = None
        self._answers: dict[int, tuple[bool, Any]] = {}
        self._tokens = itertools.count()
        self._previewers: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()  # sent this process
        self._copier: ThreadPoolExecutor | None = None
        self._warm: Any = None  # set by the writer process once it has torch, to draw previews

    def copier(self) -> ThreadPoolExecutor:
        """The thread that copies a GPU's steps to the CPU and sends them, in order."""
        with self._sending:
            if self._copier is None:
                self._copier = ThreadPoolExecutor(1, thread_name_prefix="invoke-steps-copy")
            return self._copier

    def process(self) -> BaseProcess:
        """The writer process, started if it is not running."""
        with self._sending:
            return self._started()[1]

    def _started(self) -> tuple[Connection, BaseProcess]:
        if self._conn is None or self._process is None:
            # spawn, not fork: forking a process that holds torch's thread pools can hang the child
            ctx = multiprocessing.get_context("spawn")
            here, there = ctx.Pipe()
            self._warm = ctx.Event()
            process = ctx.Process(target=_serve, args=(there, self._warm), name="invoke-steps", daemon=True)
            process.start()
            there.close()  # the child holds its end: its death is end-of-file here
            self._conn, self._process = here, process
            self._previewers = weakref.WeakKeyDictionary()
        return self._conn, self._process

    def send(self, *message: object) -> Connection:
        """Send a message (a few microseconds: no thread here wakes for it); the connection it went down."""
        with self._sending:
            self._started()
            return self._send(message)

    def _send(self, message: tuple[object, ...]) -> Connection:
        conn, _ = self._started()
        try:
            conn.send(message)
        except OSError:
            self._forget()
            raise WriterDied() from None
        return conn

    def previewer(self, previewer: Previewer) -> int | None:
        """The writer process's key for this previewer, sent to it the first time; None while the
        writer is still loading torch (about a second after it starts): the shell draws then."""
        with self._sending:
            self._started()  # a new process has none of the old one's
            if not self._warm.is_set():
                return None
            key = self._previewers.get(previewer)
            if key is None:
                key = self._previewers[previewer] = next(self._tokens)
                self._send(("previewer", key, previewer))
            return key

    def ask(self, *message: object) -> tuple[Connection, int]:
        """Send a message that gets an answer: what `answer` waits for."""
        token = next(self._tokens)
        return self.send(message[0], token, *message[1:]), token

    def answer(self, asked: tuple[Connection, int]) -> Any:
        """The writer's answer to `ask`, or its error raised here."""
        conn, token = asked
        with self._reading:
            while token not in self._answers:
                if conn is not self._conn:  # the process that was asked died and was replaced
                    raise WriterDied()
                try:
                    got, ok, value = conn.recv()
                except (EOFError, OSError):
                    self.lost()
                    raise WriterDied() from None
                self._answers[got] = (ok, value)
            ok, value = self._answers.pop(token)
        if not ok:
            raise value
        return value

    def ready(self, timeout: float) -> bool:
        """Wait until the writer can draw previews (it loads torch once its first folder is
        written): for benchmarks, which time the steady state."""
        with self._sending:
            self._started()
        return bool(self._warm.wait(timeout))

    def cpu_seconds(self) -> float:
        """CPU time the writer process has used (for benchmarks)."""
        return float(self.answer(self.ask("cpu")))

    def lost(self) -> None:
        """The process died: forget it (the next line starts another)."""
        with self._sending:
            self._forget()

    def _forget(self) -> None:
        if self._conn is not None:
            self._conn.close()
        if self._process is not None:
            self._process.join(timeout=1)
        self._conn = self._process = None

    def shutdown(self) -> None:
        """Let the writer finish what it was sent, then stop it."""
        if self._copier is not None:
            self._copier.shutdown(wait=True)
        with self._sending:
            if self._conn is None or self._process is None:
                return
            try:
                self._conn.send(("stop",))
            except OSError:
                pass
            self._process.join()
            self._conn.close()
            self._conn = self._process = None


class Finishing:
    """A finished folder's files, once the writer process has written them all."""

    def __init__(self, files: StepFiles, asked: tuple[Connection, int] | None, error: WriteError | None) -> None:
        self._files, self._asked, self._error = files, asked, error

    def result(self) -> list[Path]:
        if self._asked is None:
            assert self._error is not None
            raise self._error
        try:
            return [Path(p) for p in self._files.writer.answer(self._asked)]
        except WriterDied:
            self._files.gone()
            raise


class StepFiles:
    """One image's per-step files: `step` hands each chosen step over as it comes, `finish`
    names the folder after the image once it has a name, `abandon` removes it. A writer that
    dies never stops the image: its steps are dropped and `finish` reports it."""

    def __init__(self, samples: Path, previewer: Previewer, writer: StepWriter) -> None:
        self.writer, self._previewer = writer, previewer
        self.folder = samples / "intermediates" / f".steps-{secrets.token_hex(4)}.tmp"
        self.steps = 0  # handed over
        self._error: WriteError | None = None  # the image is still made; finishing reports it
        self._copying: Future[None] | None = None  # the last step copied from a GPU on the writer's thread
        self._draws_here = True  # the previews, while the writer cannot draw them yet
        try:
            self.folder.mkdir(parents=True)
            key = self.writer.previewer(previewer)
            self._draws_here = key is None
            self.writer.send("open", str(self.folder), key)
        except OSError as e:
            self._error = write_error(f"could not make {self.folder.parent}", e)
        except WriterDied as e:
            self._error = e
            self.gone()

    def step(self, state: StepState, pictures: Pictures | None = None) -> None:
        """Send a step; `pictures` (x_t, x0) when they were made already, else the writer makes
        them with the model's previewer. A GPU's latents are copied on a thread: the copy waits
        for the GPU to finish the step, and the generation should not."""
        self.steps += 1
        if state.latents.device.type == "cpu":
            self._send_step(state, pictures)
        else:
            self._copying = self.writer.copier().submit(self._send_step, state, pictures)

    def _send_step(self, state: StepState, pictures: Pictures | None) -> None:
        if self._error is not None:
            return
        if pictures is None and self._draws_here:  # a session's first such line: the writer is starting
            pictures = draw(self._previewer, state.latents, state.denoised, state.preview_scale)
        tensors = {"latents": state.latents.detach().float().cpu().numpy()}
        if state.denoised is not None:
            tensors["denoised"] = state.denoised.detach().float().cpu().numpy()
        try:
            self.writer.send("step", str(self.folder), intermediates.StepInfo.of(state), tensors, pictures)
        except WriterDied as e:
            self._error = e
            self.gone()

    def _sent(self) -> None:
        """Wait until the steps copied on the thread are sent (the finish must come after them)."""
        if self._copying is not None:
            self._copying.result()

    def finish(self, image_path: Path) -> Finishing:
        self._sent()
        if self._error is not None:
            return Finishing(self, None, self._error)
        try:
            return Finishing(
                self, self.writer.ask("finish", str(self.folder), str(intermediates_dir(image_path))), None
            )
        except WriterDied as e:
            self.gone()
            return Finishing(self, None, e)

    def abandon(self) -> None:
        self._sent()
        try:
            if self._error is None:
                self.writer.answer(self.writer.ask("abandon", str(self.folder)))
        except WriterDied:
            pass
        self.gone()

    def gone(self) -> None:
        """The folder goes (abandoned, or its writer died)."""
        shutil.rmtree(self.folder, ignore_errors=True)


# ---- in the writer process: each open folder's frames, kept until the folder is finished


@dataclass
class _Folder:
    previewer: Previewer | None  # what draws the steps that come without pictures (None: they all come with)
    # each step: its info, whether it has an x0, its contact-sheet column, its GIF frame
    frames: list[tuple[intermediates.StepInfo, bool, Image.Image, Image.Image]] = field(default_factory=list)
    encoding: list[Future[None]] = field(default_factory=list)  # the steps' PNGs being written
    failed: OSError | None = None  # a step could not be written: finishing reports it
    summary: list[Future[None]] = field(default_factory=list)  # the contact sheet and the GIF being made
    summarised: int = 0  # of these many steps

    def written(self) -> None:
        """Wait for the PNGs and the summary; the first that failed becomes the folder's failure."""
        for job in [*self.encoding, *self.summary]:
            try:
                job.result()
            except OSError as e:
                self.failed = self.failed or e
        self.encoding.clear()

    def summarise(self, folder: str) -> None:
        """The contact sheet and the animation of the steps so far, on two threads: started with the
        last step, they are drawn while the shell decodes and saves the image (each step's column
        and frame were drawn as it came: what is left is pasting and encoding, and both encoders
        let go of the GIL)."""
        wait(self.summary)  # an earlier summary (a step came after the "last"): it is redrawn over
        anim = [gif for *_, gif in self.frames]
        columns = [column for _, _, column, _ in self.frames]
        gif = dict(save_all=True, append_images=anim[1:], duration=250, loop=0)
        self.summary = [
            _summaries().submit(anim[0].save, os.path.join(folder, "steps.gif"), "GIF", **gif),
            _summaries().submit(_save_sheet, columns, os.path.join(folder, "contact_sheet.png")),
        ]
        self.summarised = len(self.frames)


_open: dict[str, _Folder] = {}
# the steps' previews: fast beats small (run-length deflate: as fast as level 1 alone, 5-10 % smaller)
_FAST_PNG: dict[str, Any] = {"compress_level": 1, "compress_type": zlib.Z_RLE}
_encoders: ThreadPoolExecutor | None = None
_summary_threads: ThreadPoolExecutor | None = None


def _summaries() -> ThreadPoolExecutor:
    global _summary_threads
    if _summary_threads is None:
        _summary_threads = ThreadPoolExecutor(2, thread_name_prefix="summary")
    return _summary_threads


def _save_sheet(columns: list[Image.Image], path: str) -> None:
    """The contact sheet, encoded by fpng: it is the last file of a line, a million pixels for 25
    steps of the embedded model; zlib at its fastest took 35 ms (8 % of the line), fpng 3 ms for
    a file a third larger, the same pixels."""
    import fpng

    Path(path).write_bytes(fpng.from_pil(intermediates.contact_sheet(columns)))


def _encode(im: Image.Image, path: str) -> Future[None]:
    """A step's PNG, encoded on a thread: zlib lets go of the GIL, so on a machine with cores to
    spare a full-size model's 512-px previews (36 ms each on this project's CPU) keep up."""
    global _encoders
    if _encoders is None:
        _encoders = ThreadPoolExecutor(max(1, min(4, (os.cpu_count() or 2) - 1)))
    return _encoders.submit(im.save, path, "PNG", **_FAST_PNG)


_previewers: dict[int, Previewer] = {}
_FILE_MODE = 0o644  # what a new file gets under the user's umask (set when the process starts)


def _serve(conn: Connection, warm: Any) -> None:
    """The writer process: messages in the order sent, read by a thread so that the sender never
    waits on a busy writer; answers for finish, abandon and cpu. torch, for the previews, loads on
    a thread of its own once the first folder is written (an import beside it slowed that line
    by half a second): `warm` tells the shell when the writer can draw them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the line in the shell, not its writer
    global _FILE_MODE
    umask = os.umask(0o022)  # read (only by setting it), before any thread could make a file
    os.umask(umask)
    _FILE_MODE = 0o666 & ~umask
    inbox: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()

    def receive() -> None:
        while True:
            try:
                inbox.put(conn.recv())
            except (EOFError, OSError):  # the shell has gone
                inbox.put(("stop",))
                return

    threading.Thread(target=receive, daemon=True).start()
    loading: threading.Thread | None = None
    answered: dict[str, Callable[..., Any]] = {"finish": finish_folder, "abandon": abandon_folder, "cpu": _cpu}
    while True:
        kind, *args = inbox.get()
        if kind == "stop":
            break
        if kind == "step":
            write_step(*args)
        elif kind == "open":
            open_folder(*args)
        elif kind == "previewer":
            _previewers[args[0]] = args[1]
        else:
            token, *rest = args
            try:
                reply: tuple[Any, ...] = (token, True, answered[kind](*rest))
            except Exception as e:
                reply = (token, False, e if isinstance(e, WriteError) else WriteError(f"intermediates: {e}"))
            try:
                conn.send(reply)
            except OSError:
                break
            if loading is None and kind == "finish":  # after the first folder: its drawing came first
                loading = threading.Thread(target=_load_torch, args=(warm,), daemon=True)
                loading.start()
    for folder in list(_open):  # the shell stopped mid-image: its steps go
        abandon_folder(folder)


def _load_torch(warm: Any) -> None:
    import torch

    torch.set_num_threads(1)  # the other core is the generation's
    warm.set()


def _cpu() -> float:
    times = os.times()
    return times.user + times.system


def _render(f: _Folder, s: intermediates.StepInfo, tensors: dict[str, np.ndarray]) -> Pictures:
    """A step's x_t and x0 through the model's fast previewer, on one thread of this process."""
    import torch

    denoised = tensors.get("denoised")
    assert f.previewer is not None  # a folder opened without one gets every step's pictures
    x0 = None if denoised is None else torch.from_numpy(denoised)
    return draw(f.previewer, torch.from_numpy(tensors["latents"]), x0, s.preview_scale)


def draw(previewer: Previewer, latents: torch.Tensor, denoised: torch.Tensor | None, scale: float) -> Pictures:
    """A step's x_t and x0 through the model's fast previewer: in the writer, or in the shell
    while the writer is starting; the same pixels either way."""
    xt, *x0 = previewer.pictures(latents * scale, *([] if denoised is None else [denoised]))
    return xt, x0[0] if x0 else None


def write_step(
    folder: str, s: intermediates.StepInfo, tensors: dict[str, np.ndarray], pictures: Pictures | None
) -> None:
    from safetensors.numpy import save_file

    f = _open.get(folder)
    if f is None or f.failed is not None:
        return
    xt, x0 = pictures or _render(f, s, tensors)
    stem = os.path.join(folder, f"step_{s.step:03d}")
    tags = {"step": str(s.step), "timestep": f"{s.timestep:.3f}", "sigma": f"{s.sigma:.5f}"}
    tags["preview_scale"] = repr(s.preview_scale)
    try:
        save_file(tensors, stem + ".safetensors", metadata=tags)  # in a folder no one else sees yet
        os.chmod(stem + ".safetensors", _FILE_MODE)  # safetensors makes it owner-only, unlike the PNGs
    except OSError as e:
        f.failed = e
        return
    f.encoding += [_encode(xt, stem + ".xt.png"), *([_encode(x0, stem + ".x0.png")] if x0 is not None else [])]
    frame = (s, xt, x0)  # the encoders only read the pictures
    f.frames.append((s, x0 is not None, intermediates.sheet_column(frame), intermediates.animation_frame(frame)))
    if s.step == s.total:
        f.summarise(folder)


def finish_folder(folder: str, final: str) -> list[str]:
    """The contact sheet and the animation (made already if the last step came), then the folder
    takes its name; the files' paths."""
    f = _open.pop(folder)
    try:
        if f.summarised != len(f.frames) and f.failed is None:
            f.summarise(folder)
        f.written()
        if f.failed is not None:
            raise f.failed
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


def open_folder(folder: str, previewer: int | None) -> None:
    _open[folder] = _Folder(None if previewer is None else _previewers[previewer])


def abandon_folder(folder: str) -> None:
    f = _open.pop(folder, None)
    if f is not None:
        f.written()  # nothing may still be writing into the folder
    shutil.rmtree(folder, ignore_errors=True)


def _exts(with_x0: bool) -> tuple[str, ...]:
    return (".safetensors", ".xt.png", ".x0.png") if with_x0 else (".safetensors", ".xt.png")
