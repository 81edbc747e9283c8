"""Seconds per image for the embedded model at the shell's defaults (25 steps), on this machine.

python benchmarks/speed.py [--images 30]
"""

from __future__ import annotations

import argparse
import statistics
import time

from invoke_shell.line.requests import ImageRequest
from invoke_shell.models.tiny_shapes.evaluate import MODEL_DIR, load_engine, sample_drawings, shell_defaults


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=30)
    args = p.parse_args()
    engine = load_engine(MODEL_DIR)
    d = shell_defaults()
    base = {k: d[k] for k in ("steps", "cfg_scale", "sampler", "width", "height")}
    prompts = sample_drawings(args.images, seed=3)
    for i in range(3):
        engine.generate(ImageRequest("warm up", **base, seed=i))
    secs = []
    for i, dr in enumerate(prompts):
        t = time.perf_counter()
        engine.generate(ImageRequest(dr.caption, **base, seed=i))
        secs.append(time.perf_counter() - t)
    print(
        f"{len(secs)} images, {base['steps']} steps, {base['sampler']}, guidance {base['cfg_scale']}: "
        f"median {statistics.median(secs):.3f} s, mean {statistics.mean(secs):.3f} s, "
        f"min {min(secs):.3f} s, max {max(secs):.3f} s"
    )


if __name__ == "__main__":
    main()
