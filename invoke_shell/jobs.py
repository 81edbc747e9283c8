"""Running one submitted line: seeds, init image, sweeps, the engine, then files and the log.

Runs on the worker thread; the engine makes pixels, this module decides what is written.
Intermediates are written by the worker's writer thread while the next image is made.
"""

from __future__ import annotations

import itertools
import secrets
import sys
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw

from invoke_shell import intermediates, metadata, outputs, schedulers
from invoke_shell.inputs import load_init_image
from invoke_shell.parsing import format_request
from invoke_shell.request import GenerationRequest
from invoke_shell.worker import Job, Made

if TYPE_CHECKING:
    from invoke_shell.worker import Worker


def run_request(worker: Worker, job: Job) -> None:
    req = job.request
    assert req is not None
    req = req.with_(init_img=worker.resolve_init(req.init_img))
    outdir = Path(req.outdir) if req.outdir else worker.outdir
    first_seed = worker.resolve_seed(req.seed)
    init = None
    if req.init_img:
        init, note = load_init_image(req.init_img, req.width, req.height)
        if note:
            worker.print(f">> {note}")
    announce(worker, req)
    pending: list[Future] = []
    images = []
    try:
        for cell in expand(req, first_seed):
            images.append(make_one(worker, job, cell.with_(outdir=None, grid=False), init, outdir, pending))
    finally:
        for f in pending:  # intermediates of every image are on disk before the line ends
            f.result()
    if req.sweep:
        line = format_request(req.with_(seed=first_seed))
        path = outputs.write_png(outdir, first_seed, sweep_sheet(req, images), {"Dream": line}, suffix=".sweep")
        outputs.append_log(outdir, line, path)
        worker.print(f"{path}  sweep sheet of {len(images)} images")
    elif req.grid and len(images) > 1:
        line = format_request(req.with_(seed=first_seed)) + f" -n {req.iterations}"
        path = outputs.write_png(outdir, first_seed, outputs.grid(images), {"Dream": line}, suffix=".grid")
        outputs.append_log(outdir, line + " -g", path)
        worker.print(f"{path}  grid of {len(images)} images")


def expand(req: GenerationRequest, first_seed: int) -> list[GenerationRequest]:
    """One request per image, each complete enough to be stored and replayed alone."""
    if req.sweep:  # same seed, one image per value (or pair of values)
        names = [name for name, _ in req.sweep]
        return [req.with_(**dict(zip(names, combo)), sweep=(), seed=first_seed)
                for combo in itertools.product(*[values for _, values in req.sweep])]
    if req.variation_amount > 0:  # one seed, each image blending in another seed's noise
        chain = req.with_variations or ()
        return [req.with_(seed=first_seed, iterations=1, variation_amount=0.0,
                          with_variations=(*chain, (secrets.randbelow(2**32), req.variation_amount)))
                for _ in range(req.iterations)]
    return [req.with_(seed=(first_seed + i) % 2**32, iterations=1) for i in range(req.iterations)]


def announce(worker: Worker, req: GenerationRequest) -> None:
    """What the user should know before the images come: steps run, tokens, long prompts."""
    if req.init_img and not req.sweep:
        worker.print(">> " + describe_img2img(req))
    prompts = worker.engine.prompts
    if req.log_tokenization:
        for label, text in (("prompt", req.positive), ("negative", req.negative)):
            if text:
                worker.print(f">> {label}: {prompts.describe(text)}")
    for text in (req.positive, req.negative):
        n = prompts.token_count(text)
        if n > prompts.window:
            worker.print(f">> a prompt of {n} tokens is longer than the encoder's {prompts.window}: "
                         f"encoded in {-(-n // prompts.window)} chunks, not cut")


def describe_img2img(req: GenerationRequest) -> str:
    schedule = schedulers.schedule_length(req.steps, req.strength, req.exact_steps)
    n = schedulers.steps_run(schedule, req.strength)
    if req.exact_steps and schedule != req.steps:
        return f"img2img: {n} of {schedule} steps (strength {req.strength:.2f}, --exact_steps)"
    return f"img2img: {n} of {schedule} steps (strength {req.strength:.2f})"


def make_one(worker: Worker, job: Job, req: GenerationRequest, init: Image.Image | None, outdir: Path,
             pending: list[Future]) -> Image.Image:
    from tqdm import tqdm

    engine = worker.engine
    states = []
    # the real stderr: the prompt is not on screen while a line runs, and a patched
    # stream would hold back the bar's carriage-return redraws
    bar = tqdm(total=None, desc=f"seed {req.seed}", unit="step", file=sys.__stderr__, leave=False,
               dynamic_ncols=True, disable=True if job.background else None)  # queued: the toolbar shows it

    def on_step(state):
        worker.progress = (state.step, state.total)
        if req.preview and state.denoised is not None:
            worker.preview = worker.previewer(state.denoised)  # microseconds: the 4x3 map
        if state.step == 0:
            bar.total = state.total
        else:
            bar.update(1)
        if req.save_intermediates:
            states.append(state)

    try:
        result = engine.generate(req, req.seed, init, on_step=on_step, cancel=job.cancel)
    finally:
        bar.close()
    if result.note:
        worker.print(f">> {result.note}")
    chunks = metadata.png_chunks(req, worker.model_info, result.steps_run, result.schedule_steps)
    path = outputs.write_png(outdir, req.seed, result.image, chunks)
    outputs.append_log(outdir, format_request(req), path)
    worker.made.append(Made(req, path, result.steps_run, result.seconds))
    job.outputs.append(path)
    worker.print(f"{path}  seed {req.seed}  {result.steps_run} steps  {result.seconds:.2f} s")
    if states:
        chosen = intermediates.pick_steps(states, req.save_intermediates, include_start=init is not None)
        folder = outputs.samples_dir(outdir) / "intermediates" / path.name.removesuffix(".png")
        if req.intermediates_decode == "vae":  # the model is this thread's: decode here, write there
            table = {s.step: (engine.decode(s.latents * s.preview_scale),
                              engine.decode(s.denoised) if s.denoised is not None else None) for s in chosen}
            render = lambda s: table[s.step]  # noqa: E731
        else:
            render = intermediates.approx_render(worker.previewer)
        pending.append(worker.writer.submit(intermediates.save, folder, chosen, render))
        worker.print(f"   intermediates: {len(chosen)} steps -> {folder}")
    return result.image


def sweep_sheet(req: GenerationRequest, images: list[Image.Image], min_tile: int = 128) -> Image.Image:
    """The sweep's images in a grid, each row and column labelled with its value."""
    axes = list(req.sweep)
    rows_name, rows = axes[0] if len(axes) == 2 else ("", ("",))
    cols_name, cols = axes[-1]
    w, h = images[0].size
    scale = max(1, -(-min_tile // w))
    tw, th = w * scale, h * scale
    left, top = (90 if len(axes) == 2 else 0), 16
    sheet = Image.new("RGB", (left + len(cols) * tw, top + len(rows) * th), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for c, value in enumerate(cols):
        draw.text((left + c * tw + 4, 2), f"{_flag(cols_name)} {value}", fill=(0, 0, 0))
    for r, row_value in enumerate(rows):
        if len(axes) == 2:
            draw.text((4, top + r * th + th // 2), f"{_flag(rows_name)} {row_value}", fill=(0, 0, 0))
        for c in range(len(cols)):
            sheet.paste(images[r * len(cols) + c].resize((tw, th), Image.Resampling.NEAREST), (left + c * tw, top + r * th))
    return sheet


def _flag(name: str) -> str:
    from invoke_shell.params import BY_NAME

    sw = BY_NAME[name]
    return f"-{sw.short}" if sw.short else f"--{name}"
