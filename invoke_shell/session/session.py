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
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invoke_shell.errors import Cancelled, UsageError, escaped
from invoke_shell.files import outputs
from invoke_shell.files.metadata import ModelInfo
from invoke_shell.files.step_files import StepWriter
from invoke_shell.line import extras
from invoke_shell.line.parsing import MAX_IMAGES, format_request
from invoke_shell.line.requests import ImageRequest, LineRequest, expand, hires_size, hires_strength, upscales_init
from invoke_shell.line.templates import Expansion, Templates, is_template
from invoke_shell.logs import log
from invoke_shell.models.addons import AddOns, short_hash
from invoke_shell.models.registry import ModelEntry, Registry
from invoke_shell.session import sheet_plan
from invoke_shell.session.limits import Limits, check_cost, note_size, out_of_memory
from invoke_shell.session.share import Share, refuse_recall
from invoke_shell.session.status import Made, State, Status
from invoke_shell.session.step_watch import StepReports, StepWatch

if TYPE_CHECKING:
    from PIL import Image

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


SHOWN = 10  # expansions of a template listed by -t
_KEPT = "the picture is kept in memory: !save PATH writes it to another file or folder"


class ModelSession:
    def __init__(
        self,
        registry: Registry,
        load: Loader,
        outdir: Path,
        say: Callable[[str], None],
        limits: Limits | None = None,
        templates: Templates | None = None,
        progress: Callable[[str], None] | None = None,
        keep_models: int = 2,
        addons: AddOns | None = None,
        share: Share | None = None,
    ) -> None:
        self.registry = registry
        self.share = share  # this process's part of a prompt file run by several (session/share.py)
        self.limits = limits or Limits()  # refuse lines that would run too long or exhaust memory
        # prompt templates with their wildcards, and the LoRAs and embeddings prompts name: the
        # folders models.yaml gives unless the launch flags gave others
        self.templates = templates or Templates(registry.wildcards)
        self.progress = progress  # a line per image with the line's ETA (over a pipe: no toolbar)
        self.addons = addons or AddOns(registry.loras, registry.embeddings)
        self._hashes: dict[tuple[Path, float], str] = {}  # LoRA file (and its mtime) -> short hash
        self.outdir = outdir
        self.say = say
        self._load = load
        self._model: LoadedModel | None = None
        # models switched away from, least recently used first, with the device each ran on:
        # a !switch back costs a move to the device instead of a load from disk
        self.keep_models = keep_models  # the current one included
        self._cache: OrderedDict[str, tuple[LoadedModel, str]] = OrderedDict()
        self._load_error: BaseException | None = None
        self._loading = False
        self._made: list[Made] = []
        self._last: Picture | None = None
        self._progress: tuple[int, int] | None = None
        self._preview: Image.Image | None = None
        self._lock = threading.Lock()
        self._steps_writer = StepWriter()  # per-step files off the denoising path

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
                cached=tuple(self._cache),
                progress=self._progress,
                preview=self._preview,
            )

    # ---- jobs (worker thread)

    def load(self, name: str | None) -> None:
        """Load a model from the registry (or take it back from the cache of recently used
        ones); on failure the previous model stays loaded."""
        entry = self.registry.get(name)
        t0 = time.perf_counter()
        if self._model is not None and self._model.info.name == entry.name:
            self.say(f">> model {entry.name} is already loaded")
            return
        if entry.name in self._cache:
            model, device = self._cache.pop(entry.name)
            if str(model.engine.device) != device:
                model.engine.move_to(device)
            self._activate(model)
            self.say(f">> model {entry.name} back from the cache on {device} in {time.perf_counter() - t0:.2f} s")
            return
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
        self._activate(model)
        what = f": {model.summary}" if model.summary else ""  # family and how it was told, format, precision
        self.say(f">> model {entry.name} loaded on {model.engine.device} in {time.perf_counter() - t0:.1f} s{what}")

    def _activate(self, model: LoadedModel) -> None:
        previous = self._model
        with self._lock:
            self._model, self._load_error = model, None
        if previous is not None and previous is not model:
            self._park(previous)

    def _park(self, model: LoadedModel) -> None:
        """Keep a model that was just replaced, on the CPU (the device is the new one's), for a
        quick switch back; beyond `keep_models` the least recently used one is let go."""
        if self.keep_models > 1:
            device = str(model.engine.device)
            if device != "cpu":
                model.engine.move_to("cpu")
            self._cache[model.info.name] = (model, device)
        dropped = self.keep_models <= 1
        while len(self._cache) > max(self.keep_models - 1, 0):
            self._cache.popitem(last=False)
            dropped = True
        if dropped:
            import gc

            gc.collect()  # the weights of a model let go are freed now, before the next one needs room

    def forget(self, name: str) -> None:
        """A model removed from the registry leaves the cache."""
        self._cache.pop(name, None)

    def use_registry(self, registry: Registry) -> None:
        """The registry after models.yaml was edited (!import_model, !del_model)."""
        self.registry = registry

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
        init = mask = None
        if init_path is not None:
            init, mask, line = self._prepare_init(model, line.with_(init_mask=on_disk(line.init_mask)), init_path)
        command = format_request(line.with_(seed=first_seed, init_img=init_path))
        expansion = self._expand_template(line, first_seed)
        self._announce(line, init_path is not None, expansion, inpaint=mask is not None)
        requests = expand(
            line,
            first_seed,
            init_path,
            new_seed=self._new_seed,
            prompts=expansion.prompts if expansion else (),
            template_line=command if expansion else None,
        )
        for req in requests:  # a LoRA that is not there stops the line before its first image
            for name, _ in req.loras:
                self.addons.lora_file(name)
        if len(requests) > MAX_IMAGES:
            raise UsageError(
                f"the line makes {len(requests):,} images ({len(expansion.prompts) if expansion else 1} prompts); "
                f"one line makes at most {MAX_IMAGES:,}",
                "draw fewer prompts with --random_prompts N, or shorten -n or the comma lists",
            )
        layout = sheet_plan.plan(line, requests, expansion)
        whole = layout is not None or (line.grid and len(requests) > 1)  # its images make one sheet
        mine = self.share.pick(len(requests), whole) if self.share else list(range(len(requests)))
        if not mine:
            return []  # the other processes make this line's images
        requests = [requests[k] for k in mine]
        check_cost(model.engine, requests, self.limits, self.say)  # a refused line gets its error alone
        note_size(model.engine, model.info.name, requests, self.say)
        reports = StepReports(self.say)  # each image's intermediates
        images, written = [], []
        started = time.perf_counter()
        first = 0.0  # seconds to the end of the first image, which pays one-time work
        try:
            for i, req in enumerate(requests, 1):
                try:
                    image, path = self._make_one(model, line, req, init, outdir, cancel, reports, quiet, mask)
                except outputs.WriteError as e:  # the next images could not be saved either: stop
                    left = f"; the line stopped, {len(requests) - i} of its {len(requests)} images not made"
                    raise UsageError(e.message + (left if i < len(requests) else ""), _KEPT) from None
                except Cancelled as e:
                    e.not_made = len(requests) - i  # the line's images after this one
                    raise
                images.append(image)
                written.append(path)
                elapsed = time.perf_counter() - started
                first = first or elapsed
                if self.progress is not None and not quiet and len(requests) > 1:  # one image: its file line says it
                    self.progress(_progress_line(i, len(requests), self._made[-1], elapsed, first))
        finally:
            reports.report()  # intermediates of every image are on disk before the line ends
            with self._lock:
                self._progress = self._preview = None
        if layout is not None:
            sweeps_strength = any(name == "strength" for name, _ in line.sweep)
            first_column = (init, str(init_path)) if init is not None and sweeps_strength else None
            sheet, record = layout.draw(images, [p.name for p in written], first_column)
            path = self._write_sheet(outdir, first_seed, sheet, command, layout.suffix, record)
            what = "sweep sheet" if layout.suffix == ".sweep" else "sheet"
            self.say(f"{path}  {what} of {len(images)} images")
            written.append(path)
        elif line.grid and len(images) > 1:
            from invoke_shell.files.sheets import grid

            path = self._write_sheet(
                outdir, first_seed, grid(images), command, ".grid", {"files": [p.name for p in written]}
            )
            self.say(f"{path}  grid of {len(images)} images")
            written.append(path)
        if reports.unwritten:  # the images and sheets are saved; only some of their steps are missing
            lost = reports.unwritten[0]
            raise outputs.WriteError(f"{lost.message}; the line's images were saved without them", lost.hint)
        return written

    def save_last(self, target: Path, folder: bool = False) -> None:
        """!save: the last image made this session, with its metadata, to a file or into a folder."""
        last = self._last
        if last is None:
            raise UsageError("no image has been made this session", "make one first; !save writes the last one")
        path = outputs.save_copy(
            target, last.request, last.image, last.model, last.steps_run, last.schedule_steps, folder
        )
        if last.path is None:  # it was never on disk: from now on -I -1, !history and !show see this copy
            self._last = replace(last, path=path)
            with self._lock:
                self._made.append(Made(last.request, path, last.steps_run, last.seconds, last.model.name))
        self.say(f">> saved {path}")

    def close(self) -> None:
        self._steps_writer.shutdown()

    # ---- the files of a line

    def _prepare_outdir(self, given: str | None) -> Path:
        """The line's folder: -o relative to the launch --outdir (a relative -o keeps a session's
        pictures together), `~` expanded; checked before any picture is computed; says where it
        is when it is new or when `..` took it out of the folder the user named."""
        typed = Path(given).expanduser() if given else None
        outdir = self.outdir if typed is None else typed if typed.is_absolute() else self.outdir / typed
        if typed is not None and ".." in typed.parts:
            outdir = outdir.resolve()  # the file lines show the folder the announcement names
        new = outputs.prepare_outdir(outdir)
        if new or (given and ".." in Path(given).parts):
            where = outputs.samples_dir(outdir).resolve()
            self.say(f">> writing to {where}" + (" (a new folder)" if new else ""))
        return outdir

    def _write_sheet(
        self,
        outdir: Path,
        seed: int,
        sheet: Image.Image,
        command: str,
        suffix: str,
        layout: dict[str, Any] | None = None,
    ) -> Path:
        try:
            path, note = outputs.write_sheet(outdir, seed, sheet, command, suffix, layout)
        except outputs.WriteError as e:
            raise UsageError(e.message, "the line's images are saved; only the sheet is missing") from None
        if note:
            self.say(f">> note: {note}")
        return path

    # ---- the steps of a line

    def _new_seed(self) -> int:
        return self.share.new_seed() if self.share else secrets.randbelow(2**32)

    def _resolve_seed(self, seed: int | None) -> int:
        if seed is None:
            return self._new_seed()
        if seed >= 0:
            return seed
        if self.share:
            raise refuse_recall(f"-S {seed}")
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
        """`-I -1` / `-I last`: the image made just before (-2 the one before that); a path, made
        absolute, so that the command stored in each PNG finds it from any folder."""
        if init is None or not is_recall(init):
            return on_disk(init)
        if self.share:
            raise refuse_recall(f"-I {init}")
        back = 1 if init == "last" else -int(init)
        if back > len(self._made):
            made = len(self._made)
            raise UsageError(
                f"-I {init} looks back {back} image(s), but this session has made {made}",
                f"use -I -1 to -I -{made}, or give a file path" if made else "make an image first, or give a file path",
            )
        return on_disk(str(self._made[-back].path))  # absolute even under a relative --outdir

    def _expand_template(self, line: LineRequest, seed: int) -> Expansion | None:
        if not is_template(line.prompt):
            return None
        expansion = self.templates.expand(line.prompt, line.max_prompts, line.random_prompts, seed)
        if expansion.note:
            self.say(f">> {expansion.note}")
        return expansion

    def _prepare_init(
        self, model: LoadedModel, line: LineRequest, path: str
    ) -> tuple[Image.Image, Image.Image | None, LineRequest]:
        """The init image at the line's size and the mask of what to repaint; --fit, --outcrop and
        -U decide the size themselves, so the line takes it (each PNG stores the size it was made at)."""
        from invoke_shell.files.inputs import prepare_init

        ready = prepare_init(
            path,
            line.width,
            line.height,
            native=model.engine.native_size,
            resize_mode=line.resize_mode,
            fit=line.fit,
            outcrop=line.outcrop,
            own_size=upscales_init(line),  # -U upscales the picture as it is
            mask_path=line.init_mask,
            invert_mask=line.invert_mask,
        )
        for note in ready.notes:
            self.say(f">> {note}")
        if ready.size != (line.width, line.height):
            line = line.with_(width=ready.size[0], height=ready.size[1])
        return ready.image, ready.mask, line

    def _announce(self, line: LineRequest, img2img: bool, expansion: Expansion | None, inpaint: bool) -> None:
        """What the user should know before the images come: steps run, prompts, tokens, long prompts."""
        from invoke_shell import schedulers

        if img2img and not line.sweep and not upscales_init(line):
            what = "inpaint" if inpaint else "img2img"  # -M, --outcrop or a transparent init
            self.say(">> " + schedulers.describe_img2img(line.steps, line.strength, line.exact_steps, what))
        larger = hires_size(line)
        if larger is not None:  # the second pass, said as the first is
            first = "the init image" if upscales_init(line) else f"{line.width}x{line.height}"
            again = schedulers.describe_img2img(line.steps, hires_strength(line), line.exact_steps, "refined")
            self.say(f">> {first} upscaled ({line.hires_upscaler}) to {larger[0]}x{larger[1]} and {again}")
        texts = [line] if expansion is None else [line.with_(prompt=p) for p in expansion.prompts]
        if expansion is not None and (line.log_tokenization or len(texts) > 1):
            shown = expansion.prompts[:SHOWN] if line.log_tokenization else ()
            self.say(f">> the template makes {len(texts)} prompt(s)" + (":" if shown else ""))
            for k, p in enumerate(shown, 1):
                self.say(f"   {k}. {escaped(p, 200)}")
            if len(expansion.prompts) > len(shown) > 0:
                self.say(f"   ... and {len(expansion.prompts) - len(shown)} more")
        prompts = self.model().engine.prompts
        if line.log_tokenization:  # what the model reads: without words a closed vocabulary lacks
            for label, text in (("prompt", texts[0].positive), ("negative", texts[0].negative)):
                read = text if texts[0].lora_active else prompts.known_words(text)
                if read:
                    self.say(f">> {label}: {prompts.describe(read)}")
        for text in (
            max((t.positive for t in texts), key=prompts.token_count),
            max((t.negative for t in texts), key=prompts.token_count),
        ):
            n = prompts.token_count(text)
            if n > prompts.window:
                self.say(
                    f">> a prompt of {n} tokens is longer than the encoder's {prompts.window}: "
                    f"encoded in {-(-n // prompts.window)} chunks, not cut"
                )
        unknown = dict.fromkeys(w for t in texts for p in (t.positive, t.negative) for w in prompts.unknown_words(p))
        if unknown:  # said, not refused: the rest of the prompt still draws
            words = list(unknown)
            more = f" and {len(words) - SHOWN} more" if len(words) > SHOWN else ""
            why = (
                " (kept: the LoRA on this line may have taught it)"
                if any(t.lora_active for t in texts)
                else " (left out of what it reads)"
            )
            self.say(f">> {self.model().info.name} does not know: {', '.join(words[:SHOWN])}{more}{why}")

    def _make_one(
        self,
        model: LoadedModel,
        line: LineRequest,
        req: ImageRequest,
        init: Image.Image | None,
        outdir: Path,
        cancel: threading.Event,
        reports: StepReports,
        quiet: bool,
        mask: Image.Image | None = None,
    ) -> tuple[Image.Image, Path]:
        from tqdm import tqdm

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

        def on_progress(done: int, total: int) -> None:
            with self._lock:
                self._progress = (done, total)
            bar.total = total
            bar.update(1)

        watch = StepWatch(line, model, init is not None, outputs.samples_dir(outdir), self._steps_writer, self._show)
        steps = watch.files
        try:
            req = self._apply_addons(model, req)
            result = model.engine.generate(req, init, watch.on_step, cancel, mask, on_progress)
        except BaseException as e:
            if steps is not None:
                steps.abandon()
            short = out_of_memory(e, req, str(model.engine.device)) if isinstance(e, Exception) else None
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
        try:
            path, note = outputs.write_image(
                outdir, req, result.image, model.info, result.steps_run, result.schedule_steps
            )
        except BaseException:
            if steps is not None:
                steps.abandon()
            raise
        if mask is not None:  # what was repainted, beside the picture (!fetch replays -M from it)
            try:
                outputs.write_mask(path, mask)
            except outputs.WriteError as e:
                self.say(f">> note: {e.message}")
        self._last = replace(self._last, path=path)
        if note:
            self.say(f">> note: {note}")
        with self._lock:
            self._made.append(Made(req, path, result.steps_run, result.seconds, model.info.name))
        reports.report()  # the previous image's, finished while this one was made
        self.say(f"{path}  seed {req.seed}{what_varies(line, req)}  {result.steps_run} steps  {result.seconds:.2f} s")
        if steps is not None and steps.steps == 0:  # strength 0: the init image, no sampler step
            steps.abandon()
            self.say("   intermediates: none, no sampler step ran")
        elif steps is not None:
            folder = outputs.intermediates_dir(path)
            reports.add(
                steps.finish(path), f"   intermediates: {steps.steps} step{'s' * (steps.steps != 1)} -> {folder}"
            )
        return result.image, path

    def _show(self, preview: Image.Image) -> None:
        with self._lock:
            self._preview = preview

    def _apply_addons(self, model: LoadedModel, req: ImageRequest) -> ImageRequest:
        """Load the embeddings and set the LoRAs the prompt names (none: the model as loaded);
        the request comes back with its LoRA files' hashes, for the metadata."""
        loras = [(name, self.addons.lora_file(name), weight) for name, weight in req.loras]
        embeddings = [(n, p) for n in extras.embeddings(req.prompt) if (p := self.addons.embedding_file(n))]
        model.engine.adapters.use_embeddings(embeddings)
        model.engine.adapters.use_loras(loras)
        return req.with_(lora_hashes=tuple((name, self._hash(path)) for name, path, _ in loras))

    def _hash(self, path: Path) -> str:
        key = (path, path.stat().st_mtime)
        if key not in self._hashes:
            self._hashes[key] = short_hash(path)
        return self._hashes[key]


def on_disk(path: str | None) -> str | None:
    """A typed path as the command stored in a PNG keeps it: absolute (symbolic links kept)."""
    return None if path is None else str(Path(path).expanduser().absolute())


def is_recall(init: str) -> bool:
    """-I -1, -2 ... or last: an image made earlier this session rather than a file."""
    return init == "last" or (init.startswith("-") and init[1:].isdigit() and int(init[1:]) > 0)


def _progress_line(done: int, total: int, made: Made, elapsed: float, first: float) -> str:
    """One image's report over a pipe: which image, its steps and time, and the line's ETA,
    from the images after the first once there are any (the first one pays for compiling the
    UNet, or a first size's warm-up)."""
    each = (elapsed - first) / (done - 1) if done > 1 else elapsed
    left = each * (total - done)
    eta = f", about {left:.0f} s left" if done < total else ", line done"
    return f">> image {done}/{total}: {made.steps_run} steps in {made.seconds:.1f} s; {elapsed:.0f} s so far{eta}"


def what_varies(line: LineRequest, req: ImageRequest) -> str:
    """What tells this image from the line's others, for its line on screen: the swept values
    (-f 0.40) and a variation's chain (-V 1234:0.2), which the seed alone does not say."""
    from invoke_shell.line.switches import BY_NAME

    names = [name for name, _ in line.sweep] + (["with_variations"] if req.with_variations else [])
    return "".join(f"  {BY_NAME[n].flag} {BY_NAME[n].text(getattr(req, n))}" for n in names)
