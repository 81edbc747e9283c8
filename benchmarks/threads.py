"""How many torch threads suit the embedded model: seconds per image at each thread count, on a
quiet machine and with a busy process beside it (the shell beside a training run, a browser, CI).

    python benchmarks/threads.py [--images 6] [--busy 1]

`--busy N` starts N processes that keep one core each busy while measuring.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import time

import torch

from invoke_shell.line.requests import ImageRequest
from invoke_shell.models.tiny_shapes.evaluate import MODEL_DIR, load_engine


def _spin() -> None:
    while True:
        pass


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=6)
    p.add_argument("--busy", type=int, default=0)
    args = p.parse_args()
    engine = load_engine(MODEL_DIR, "cpu", "fp32")
    hogs = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(args.busy)]
    for h in hogs:
        h.start()
    try:
        print(f"cores {os.cpu_count()}, busy processes {args.busy}, torch {torch.__version__}")
        print("threads  median s/image  (25 steps, 64x64)")
        for threads in range(1, (os.cpu_count() or 1) + 1):
            torch.set_num_threads(threads)
            times = []
            for i in range(args.images + 1):
                req = ImageRequest("a red circle on a blue background", 25, 3.0, "ddim", 64, 64, seed=i)
                t0 = time.perf_counter()
                engine.generate(req)
                times.append(time.perf_counter() - t0)
            print(f"{threads:>7}  {statistics.median(times[1:]):>14.3f}")
    finally:
        for h in hogs:
            h.terminate()


if __name__ == "__main__":
    main()
