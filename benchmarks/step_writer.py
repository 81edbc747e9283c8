"""How fast the intermediates writer keeps up with a model's steps, by preview size: hands it
--steps steps at once (previews made beforehand, as a fast GPU would) and times until the
folder is finished. A writer slower per step than the model's step time makes a line with
`--save_intermediates 1` wait for it at the end.

    python benchmarks/step_writer.py [--sizes 64,512,1024] [--steps 25]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from invoke_shell.files.step_files import StepFiles, StepWriter


def preview(size: int, seed: int) -> Image.Image:
    """A smooth picture, as previews are (noise would make every encoder look slow)."""
    cells = np.random.default_rng(seed).integers(0, 255, (size // 8, size // 8, 3), dtype=np.uint8)
    return Image.fromarray(cells).resize((size, size), Image.Resampling.BILINEAR)


def main() -> None:
    import torch

    from invoke_shell.engines.generate import StepState
    from invoke_shell.engines.previews import SD1_LATENT_RGB, LatentPreviewer

    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="64,512,1024")
    p.add_argument("--steps", type=int, default=25)
    args = p.parse_args()
    writer = StepWriter()
    with tempfile.TemporaryDirectory() as tmp:
        previewer = LatentPreviewer(SD1_LATENT_RGB)  # unused: the pictures come made
        warm = StepFiles(Path(tmp), previewer, writer)
        warm.step(
            StepState(1, 1, 999.0, 1.0, torch.zeros(1, 4, 8, 8), torch.zeros(1, 4, 8, 8), 1.0),
            (preview(64, 0), preview(64, 1)),
        )
        warm.finish(Path(tmp) / "000000.0.png").result()  # the writer process is up
        writer.ready(60)  # and has loaded torch, which it does after its first folder
        for size in [int(s) for s in args.sizes.split(",")]:
            pictures = [(preview(size, 2 * k), preview(size, 2 * k + 1)) for k in range(args.steps)]
            latents = torch.zeros(1, 4, size // 8, size // 8)
            steps = StepFiles(Path(tmp), previewer, writer)
            t = time.perf_counter()
            for k in range(1, args.steps + 1):
                steps.step(StepState(k, args.steps, 999.0 - k, 1.0, latents, latents, 1.0), pictures[k - 1])
            steps.finish(Path(tmp) / f"{size:06d}.1.png").result()
            seconds = time.perf_counter() - t
            print(
                f"{size}x{size} previews: {seconds:.2f} s for {args.steps} steps, {seconds / args.steps * 1000:.1f} ms a step"
            )
    writer.shutdown()


if __name__ == "__main__":
    main()
