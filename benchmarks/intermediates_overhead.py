"""What saving every step's intermediates costs, on the embedded model.

Times the engine's generation (25 steps, the model's defaults) with a progress count only, and
with the shell's own intermediates path at every step (`--save_intermediates 1`, fast
previews): each step's latents and previews written on the writer thread while the next steps
run, then the contact sheet and GIF. Prints medians over --runs images.

    python benchmarks/intermediates_overhead.py [--runs 20]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from invoke_shell.engines.previews import load_previewer
from invoke_shell.files import intermediates, outputs
from invoke_shell.line.requests import ImageRequest
from invoke_shell.models.tiny_shapes.evaluate import MODEL_DIR, load_engine, shell_defaults


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=20)
    args = p.parse_args()
    engine = load_engine(MODEL_DIR)
    d = shell_defaults()
    req = ImageRequest(
        "a red circle on a blue background", d["steps"], d["cfg_scale"], d["sampler"], d["width"], d["height"], seed=1
    )
    previewer = load_previewer(MODEL_DIR)
    render = intermediates.approx_render(previewer)
    writer = ThreadPoolExecutor(1)
    for _ in range(3):
        engine.generate(req)
    plain, saving, line = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            t = time.perf_counter()
            engine.generate(req.with_(seed=i), on_progress=lambda done, total: None)
            plain.append(time.perf_counter() - t)

            # as the session does it: each step's files written on the writer thread while the
            # next steps are computed, then the contact sheet, the animation and the folder's name
            steps = outputs.StepFiles(Path(tmp), render, writer)
            t = time.perf_counter()
            engine.generate(req.with_(seed=i), on_step=steps.step, on_progress=lambda done, total: None)
            saving.append(time.perf_counter() - t)
            steps.finish(Path(tmp) / f"{i:06d}.{i}.png").result()
            line.append(time.perf_counter() - t)
    med = statistics.median
    print(f"generation, no intermediates:        {med(plain) * 1000:.1f} ms (median of {args.runs})")
    print(
        f"generation, collecting every step:   {med(saving) * 1000:.1f} ms "
        f"(+{(med(saving) / med(plain) - 1) * 100:.1f} %)"
    )
    print(
        f"whole line incl. writing all files:  {med(line) * 1000:.1f} ms (+{(med(line) / med(plain) - 1) * 100:.1f} %)"
    )


if __name__ == "__main__":
    main()
