"""The model session: the resident model and the images made with it.

`ModelSession` owns the loaded model (engine, identity, preview map) and this session's list of
images. It runs one line from top to bottom:

    LineRequest -> resolve seed and init image -> expand() -> ImageRequests
                -> engine.generate (pixels, per-step states) -> files.outputs (PNG, log, sheets)

It runs on the worker thread only; the shell sees it through `status()` snapshots.
"""

from __future__ import annotations

import secrets
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from invoke_shell.errors import UsageError
from invoke_shell.files import outputs
from invoke_shell.files.metadata import ModelInfo
from invoke_shell.line.parsing import format_request
from invoke_shell.line.requests import ImageRequest, LineRequest, expand
from invoke_shell.logs import log
from invoke_shell.models.registry import ModelEntry, Registry
from invoke_shell.session.limits import Limits, check_cost, note_size, out_of_memory
from invoke_shell.session.status import Made, State, Status

if TYPE_CHECKING:
    from PIL import Image

    from invoke_shell.engines.generate import StepState
    from invoke_shell.models.loader import LoadedModel

Loader = Callable[[ModelEntry], "LoadedModel"]


@dataclass(frozen=True)
class Picture:
    """The last image made, kept in memory so that `!save` can write it even when its own file
    could not be written (full disk, folder gone read-only)."""

    request: ImageRequest
    image: Image.Image
    model: ModelInfo
    steps_run: int
    schedule_steps: int
    seconds: float
    path: Path | None  # None: not on disk


_KEPT = "the picture is kept in memory: !save PATH writes it to another file or folder"


class ModelSession:
    def __init__(
        self, registry: Registry, load: Loader, outdir: Path, say: Callable[[str], None], limits: Limits | None = None
    ) -> None:
        self.registry = registry
        self.limits = limits or Limits()  # refuse lines that would run too long or exhaust memory
        self.outdir = outdir
        self.say = say
        self._load = load
        self._model: LoadedModel | None = None
        self._load_error: BaseException | None = None
        self._loading = False
        self._made: list[Made] = []
        self._last: Picture | None = None
        self._progress: tuple[int, int] | None = None
        self._preview: Image.Image | None = None
        self._lock = threading.Lock()
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="invoke-writer")  # files off the denoising path

    # ---- what the shell may see

    def status(self) -> Status:
        model = self._model
        state: State = "loading" if self._loading else "ready" if model is not None else "no model"
        with self._lock:
            return Status(
                model=model.info.name if model else None,
                device=str(model.engine.device) if model else "-",
                state=state,
                made=tuple(self._made),
                progress=self._progress,
                preview=self._preview,
            )

    # ---- jobs (worker thread)

    def load(self, name: str | None) -> None:
        """Load a model from the registry; on failure the previous model stays loaded."""
        entry = self.registry.get(name)
        t0 = time.perf_counter()
        self._loading = True
        try:
            model = self._load(entry)
        except UsageError as e:
            self._load_error = e
            raise UsageError(e.message + self._still_loaded(), e.hint) from None
        except BaseException as e:
            self._load_error = e
            # one line: whoever reports the error (the shell's bug report) logs its traceback
            log.error("model %s could not be loaded: %s", entry.name, e)
            raise
        finally:
            self._loading = False
        self._model, self._load_error = model, None
        self.say(f">> model {entry.name} loaded on {model.engine.device} in {time.perf_counter() - t0:.1f} s")

    def _still_loaded(self) -> str:
        return f" (model {self._model.info.name} is still loaded)" if self._model else ""

    def show_schedule(self, sampler: str, steps: int, strength: float | None, exact: bool) -> None:
        from invoke_shell.files import schedule_view

        base = self.model().engine.base_scheduler_config
        self.say(schedule_view.table(sampler, base, steps, strength, exact))
        picture, name = schedule_view.plot(sampler, base, steps, strength, exact)
        self.say(f">> plot: {outputs.write_plot(self.outdir, name, picture)}")

    def model(self) -> LoadedModel:
        if self._model is None:
            why = f" ({self._load_error})" if self._load_error else ""
            raise UsageError(f"no model is loaded{why}", "fix models.yaml, or load another model with !switch NAME")
        return self._model

    def run_line(self, line: LineRequest, cancel: threading.Event, quiet: bool = False) -> list[Path]:
        """Make every image of one line; return the files written."""
        model = self.model()
        outdir = self._prepare_outdir(line.outdir)
        init_path = self._resolve_init(line.init_img)
        first_seed = self._resolve_seed(line.seed)
        init = None
        if init_path is not None:
            from invoke_shell.files.inputs import load_init_image

            init, note = load_init_image(init_path, line.width, line.height)
            if note:
                self.say(f">> {note}")
        self._announce(line, init_path is not None)
        requests = expand(line, first_seed, init_path, new_seed=lambda: secrets.randbelow(2**32))
        if not quiet:
            note_size(model.engine, model.info.name, requests, self.say)
        check_cost(model.engine, requests, self.limits, self.say)
        pending: list[Future[list[Path]]] = []
        images, written = [], []
        try:
            for i, req in enumerate(requests, 1):
                try:
                    image, path = self._make_one(model, line, req, init, outdir, cancel, pending, quiet)
                except outputs.WriteError as e:  # the next images could not be saved either: stop
                    left = f"; the line stopped, {len(requests) - i} of its {len(requests)} images not made"
                    raise UsageError(e.message + (left if i < len(requests) else ""), _KEPT) from None
                images.append(image)
                written.append(path)
        finally:
            for f in pending:  # intermediates of every image are on disk before the line ends
                try:
                    f.result()
                except outputs.WriteError as e:  # the images are saved; only their steps are missing
                    self.say(e.show())
            with self._lock:
                self._progress = self._preview = None
        command = format_request(line.with_(seed=first_seed, init_img=init_path))
        if line.sweep:
            from invoke_shell.files.sheets import labelled_sheet

            rows, cols = (line.sweep[0], line.sweep[1]) if len(line.sweep) == 2 else (None, line.sweep[0])
            tiles = [images[r * len(cols[1]) : (r + 1) * len(cols[1])] for r in range(len(rows[1]) if rows else 1)]
            sheet = labelled_sheet(
                tiles,
                [_label(cols[0], v) for v in cols[1]],
                [_label(rows[0], v) for v in rows[1]] if rows else (),
                min_tile=128,
            )
            path = self._write_sheet(outdir, first_seed, sheet, command, ".sweep")
            self.say(f"{path}  sweep sheet of {len(images)} images")
            written.append(path)
        elif line.grid and len(images) > 1:
            from invoke_shell.files.sheets import grid

            path = self._write_sheet(outdir, first_seed, grid(images), command, ".grid")
            self.say(f"{path}  grid of {len(images)} images")
            written.append(path)
        return written

    def save_last(self, target: Path) -> None:
        """!save: the last image made this session, with its metadata, to a file or into a folder."""
        last = self._last
        if last is None:
            raise UsageError("no image has been made this session", "make one first; !save writes the last one")
        path = outputs.save_copy(target, last.request, last.image, last.model, last.steps_run, last.schedule_steps)
        if last.path is None:  # it was never on disk: from now on -I -1, !history and !show see this copy
            self._last = replace(last, path=path)
            with self._lock:
                self._made.append(Made(last.request, path, last.steps_run, last.seconds))
        self.say(f">> saved {path}")

    def close(self) -> None:
        self._writer.shutdown(wait=True)

    # ---- the files of a line

    def _prepare_outdir(self, given: str | None) -> Path:
        """The line's folder: -o relative to the launch --outdir (a relative -o keeps a session's
        pictures together), `~` expanded; checked before any picture is computed; says where it
        is when it is new or when `..` took it out of the folder the user named."""
        typed = Path(given).expanduser() if given else None
        outdir = self.outdir if typed is None else typed if typed.is_absolute() else self.outdir / typed
        new = outputs.prepare_outdir(outdir)
        if new or (given and ".." in Path(given).parts):
            where = outputs.samples_dir(outdir).resolve()
            self.say(f">> writing to {where}" + (" (a new folder)" if new else ""))
        return outdir

    def _write_sheet(self, outdir: Path, seed: int, sheet: Image.Image, command: str, suffix: str) -> Path:
        try:
            path, note = outputs.write_sheet(outdir, seed, sheet, command, suffix)
        except outputs.WriteError as e:
            raise UsageError(e.message, "the line's images are saved; only the sheet is missing") from None
        if note:
            self.say(f">> note: {note}")
        return path

    # ---- the steps of a line

    def _resolve_seed(self, seed: int | None) -> int:
        if seed is None:
            return secrets.randbelow(2**32)
        if seed >= 0:
            return seed
        made = len(self._made)
        if -seed > made:
            raise UsageError(
                f"-S {seed} looks back {-seed} image(s), but this session has made {made}",
                f"-S-1 to -S-{made} recall this session's seeds, or give a seed: -S 42"
                if made
                else "make an image first, or give a seed: -S 42",
            )
        return self._made[seed].request.seed

    def _resolve_init(self, init: str | None) -> str | None:
        """`-I -1` / `-I last`: the image made just before (-2 the one before that)."""
        if init is None or not is_recall(init):
            return init
        back = 1 if init == "last" else -int(init)
        if back > len(self._made):
            raise UsageError(
                f"-I {init} looks back {back} image(s), but this session has made {len(self._made)}",
                "make an image first, or give a file path after -I",
            )
        return str(self._made[-back].path)

    def _announce(self, line: LineRequest, img2img: bool) -> None:
        """What the user should know before the images come: steps run, tokens, long prompts."""
        from invoke_shell import schedulers

        if img2img and not line.sweep:
            self.say(">> " + schedulers.describe_img2img(line.steps, line.strength, line.exact_steps))
        prompts = self.model().engine.prompts
        if line.log_tokenization:
            for label, text in (("prompt", line.positive), ("negative", line.negative)):
                if text:
                    self.say(f">> {label}: {prompts.describe(text)}")
        for text in (line.positive, line.negative):
            n = prompts.token_count(text)
            if n > prompts.window:
                self.say(
                    f">> a prompt of {n} tokens is longer than the encoder's {prompts.window}: "
                    f"encoded in {-(-n // prompts.window)} chunks, not cut"
                )

    def _make_one(
        self,
        model: LoadedModel,
        line: LineRequest,
        req: ImageRequest,
        init: Image.Image | None,
        outdir: Path,
        cancel: threading.Event,
        pending: list[Future[list[Path]]],
        quiet: bool,
    ) -> tuple[Image.Image, Path]:
        from tqdm import tqdm

        states: list[StepState] = []
        # the real stderr: the prompt is not on screen while a piped line runs, and a patched
        # stream would hold back the bar's carriage-return redraws; queued lines show the toolbar
        bar = tqdm(
            total=None,
            desc=f"seed {req.seed}",
            unit="step",
            file=sys.__stderr__,
            leave=False,
            dynamic_ncols=True,
            disable=True if quiet else None,
        )

        def on_step(state: StepState) -> None:
            preview = model.previewer(state.denoised) if line.preview and state.denoised is not None else None
            with self._lock:
                self._progress = (state.step, state.total)
                self._preview = preview or self._preview  # microseconds: the 4x3 map
            if state.step == 0:
                bar.total = state.total
            else:
                bar.update(1)
            if line.save_intermediates:
                states.append(state)

        try:
            result = model.engine.generate(req, init, on_step=on_step, cancel=cancel)
        except Exception as e:
            short = out_of_memory(e, req, str(model.engine.device))
            if short is None:
                raise
            raise short from None
        finally:
            bar.close()
        if result.note:
            self.say(f">> {result.note}")
        self._last = Picture(
            req, result.image, model.info, result.steps_run, result.schedule_steps, result.seconds, path=None
        )
        path, note = outputs.write_image(outdir, req, result.image, model.info, result.steps_run, result.schedule_steps)
        self._last = replace(self._last, path=path)
        if note:
            self.say(f">> note: {note}")
        with self._lock:
            self._made.append(Made(req, path, result.steps_run, result.seconds))
        self.say(f"{path}  seed {req.seed}  {result.steps_run} steps  {result.seconds:.2f} s")
        if states and line.save_intermediates:
            from invoke_shell.files import intermediates

            chosen = intermediates.pick_steps(states, line.save_intermediates, include_start=init is not None)
            render: intermediates.Render = intermediates.approx_render(model.previewer)
            if line.intermediates_decode == "vae":  # the model is this thread's: decode here, write there
                table = {
                    s.step: (
                        model.engine.decode(s.latents * s.preview_scale),
                        model.engine.decode(s.denoised) if s.denoised is not None else None,
                    )
                    for s in chosen
                }
                render = lambda s: table[s.step]  # noqa: E731
            folder = outputs.intermediates_dir(path)
            pending.append(self._writer.submit(outputs.write_intermediates, folder, chosen, render))
            self.say(f"   intermediates: {len(chosen)} steps -> {folder}")
        return result.image, path


def is_recall(init: str) -> bool:
    """-I -1, -2 ... or last: an image made earlier this session rather than a file."""
    return init == "last" or (init.startswith("-") and init[1:].isdigit() and int(init[1:]) > 0)


def _label(name: str, value: object) -> str:
    from invoke_shell.line.switches import BY_NAME

    return f"{BY_NAME[name].flag} {value}"
