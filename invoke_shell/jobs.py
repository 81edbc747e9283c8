"""Running one submitted line: seeds, init image, the engine, then files and the log.

Runs on the worker thread; the engine makes pixels, this module decides what is written.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from invoke_shell import metadata, outputs, schedulers
from invoke_shell.inputs import load_init_image
from invoke_shell.parsing import format_request
from invoke_shell.worker import Job, Made

if TYPE_CHECKING:
    from invoke_shell.worker import Worker


def run_request(worker: Worker, job: Job) -> None:
    from tqdm import tqdm

    req = job.request
    assert req is not None
    req = req.with_(init_img=worker.resolve_init(req.init_img))
    engine = worker.engine
    outdir = Path(req.outdir) if req.outdir else worker.outdir
    first_seed = worker.resolve_seed(req.seed)
    init = None
    if req.init_img:
        init, note = load_init_image(req.init_img, req.width, req.height)
        if note:
            worker.print(f">> {note}")
        n = schedulers.steps_run(req.steps, req.strength)
        worker.print(f">> img2img: {n} of {req.steps} steps (strength {req.strength:.2f})")
    images = []
    for i in range(req.iterations):
        seed = (first_seed + i) % 2**32
        image_req = req.with_(seed=seed, iterations=1, outdir=None)
        # the real stderr: the prompt is not on screen while a line runs, and a patched
        # stream would hold back the bar's carriage-return redraws
        bar = tqdm(total=None, desc=f"seed {seed}", unit="step", file=sys.__stderr__, leave=False,
                   dynamic_ncols=True, disable=None)

        def on_step(state, bar=bar):
            if bar.total is None:
                bar.total = state.total
            bar.update(1)

        try:
            result = engine.generate(image_req, seed, init, on_step=on_step, cancel=job.cancel)
        finally:
            bar.close()
        if result.note:
            worker.print(f">> {result.note}")
        chunks = metadata.png_chunks(image_req, worker.model_info, result.steps_run)
        path = outputs.write_png(outdir, seed, result.image, chunks)
        outputs.append_log(outdir, format_request(image_req), path)
        worker.made.append(Made(image_req, path, result.steps_run, result.seconds))
        job.outputs.append(path)
        images.append(result.image)
        worker.print(f"{path}  seed {seed}  {result.steps_run} steps  {result.seconds:.2f} s")
    if req.grid and len(images) > 1:
        line = format_request(req.with_(seed=first_seed)) + f" -n {req.iterations}"
        path = outputs.write_png(outdir, first_seed, outputs.grid(images), {"Dream": line}, suffix=".grid")
        outputs.append_log(outdir, line + " -g", path)
        worker.print(f"{path}  grid of {len(images)} images")
