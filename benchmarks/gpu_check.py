"""On a machine with a CUDA GPU: does a seed give the same picture there as on the CPU, and how
fast is the embedded model there? Noise is drawn on the CPU, so the pictures should agree up to
floating-point differences between the devices.

    python benchmarks/gpu_check.py [--images 24]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from invoke_shell.engines.generate import Engine
from invoke_shell.line.requests import ImageRequest
from invoke_shell.models.tiny_shapes import data
from invoke_shell.models.tiny_shapes.evaluate import MODEL_DIR, load_engine, sample_drawings, shell_defaults


def engine_on(device: str, precision: str) -> Engine:
    return load_engine(MODEL_DIR, device, precision)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=24)
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA GPU: nothing to check")
        return
    print("GPU:", torch.cuda.get_device_name(0), "torch", torch.__version__)
    d = shell_defaults()
    base = {k: d[k] for k in ("steps", "cfg_scale", "sampler", "width", "height")}
    prompts = sample_drawings(args.images, seed=0)
    cpu = engine_on("cpu", "fp32")
    runs = {"cuda fp32": engine_on("cuda", "fp32"), "cuda fp16": engine_on("cuda", "fp16")}
    ref = [cpu.generate(ImageRequest(dr.caption, **base, seed=i)) for i, dr in enumerate(prompts)]
    for name, eng in runs.items():
        eng.generate(ImageRequest("warm up", **base, seed=0))
        diffs, same, secs = [], 0, []
        for i, dr in enumerate(prompts):
            torch.cuda.synchronize()
            t = time.perf_counter()
            res = eng.generate(ImageRequest(dr.caption, **base, seed=i))
            torch.cuda.synchronize()
            secs.append(time.perf_counter() - t)
            diffs.append(float(np.abs(res.pixels - ref[i].pixels).max()))
            same += data.judge(res.image) == data.judge(ref[i].image)
        print(
            f"{name}: max |gpu - cpu| per image in [0,1]: median {statistics.median(diffs):.4f}, "
            f"worst {max(diffs):.4f}; same judged picture {same}/{len(prompts)}; "
            f"{statistics.median(secs) * 1000:.0f} ms per image ({base['steps']} steps)"
        )
    cpu_secs = []
    for i, dr in enumerate(prompts[:8]):
        t = time.perf_counter()
        cpu.generate(ImageRequest(dr.caption, **base, seed=i))
        cpu_secs.append(time.perf_counter() - t)
    print(f"cpu fp32 on this machine: {statistics.median(cpu_secs) * 1000:.0f} ms per image")


if __name__ == "__main__":
    main()
