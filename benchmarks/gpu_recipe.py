"""On a CUDA GPU: the shell's recipe against the best stock diffusers recipe, side by side.

    python benchmarks/gpu_recipe.py [--json PATH] [--budget SECONDS]

Each section loads its models, warms up, then times shell and stock calls interleaved (shell,
stock, shell, stock ...) and reports medians; both sides use the same weights, sampler, seed,
size and prompt. Sections, in order (each skipped once --budget seconds have gone):

1. SD 1.5 architecture, random weights, 512x512, 25 DDIM steps, guidance 7.5: the shell
   engine (fp16, SDPA, channels_last, fused QKV, inference mode) against a pipeline loaded
   by diffusers from the same file and called in fp16 with its default SDPA attention.
2. The embedded model: seconds per image on the GPU (fp32 and fp16), and whether a seed gives
   the CPU's picture.
3. --offload: one SD 1.5 image with model CPU offload (the picture and peak GPU memory).
4. --compile on SD 1.5: the first image's time (compiling) and steps/s after, against stock.
5. --compile on the embedded model: seconds per image after compiling.
6. SDXL architecture, random weights, 1024x1024, 25 steps: shell against stock.

Prints a table at the end and writes every figure to --json as it goes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from invoke_shell import schedulers
from invoke_shell.line.requests import ImageRequest
from invoke_shell.models.loader import load_model, open_pipeline
from invoke_shell.models.registry import ModelEntry

PROMPT = "a photograph of an astronaut riding a horse on the moon"
NEGATIVE = "blurry, low quality"


def timed(fn: Callable[..., Any], *args: Any) -> tuple[float, Any]:
    """Seconds of fn(*args) with the GPU's queue drained on both sides, and its result."""
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.synchronize()
    t = time.perf_counter()
    out = fn(*args)
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - t, out


def random_checkpoint(family: str, folder: Path) -> Path:
    """The family's full-size architecture with random weights, as one original-layout file."""
    from invoke_shell.models import convert
    from invoke_shell.models.random_model import random_full_size

    path = folder / f"{family}-random.safetensors"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        convert.write_single_file(random_full_size(family), path)
    return path


class Stock:
    """What an engineer scripts: diffusers' pipeline in fp16 on the GPU, default attention
    (SDPA), the same scheduler, called with the prompt text."""

    def __init__(self, path: Path, sampler: str, scheduler_config: dict, device: str = "cuda") -> None:
        dtype = torch.float16 if device == "cuda" else torch.float32
        self.pipe = open_pipeline(ModelEntry("stock", path), device, dtype).pipe
        self.pipe.scheduler = schedulers.build(sampler, scheduler_config, 0)
        self.pipe.set_progress_bar_config(disable=True)

    def __call__(self, req: ImageRequest) -> np.ndarray:
        out = self.pipe(
            PROMPT,
            negative_prompt=NEGATIVE,
            num_inference_steps=req.steps,
            guidance_scale=req.cfg_scale,
            width=req.width,
            height=req.height,
            generator=torch.Generator("cpu").manual_seed(req.seed),
            output_type="np",
        )
        pixels: np.ndarray = out.images[0]
        return pixels


def shell_call(engine: Any) -> Callable[[ImageRequest], np.ndarray]:
    """The call the session makes: progress counted, a cancel flag."""

    def call(req: ImageRequest) -> np.ndarray:
        return engine.generate(req, on_progress=lambda *_: None, cancel=threading.Event()).pixels

    return call


def side_by_side(shell: Callable, stock: Callable, req: ImageRequest, pairs: int) -> dict:
    a, b = shell(req), stock(req)  # warm-up, and the pictures compared
    ts, tb = [], []
    for i in range(pairs):
        r = req.with_(seed=req.seed + 1 + i)
        ts.append(timed(shell, r)[0])
        tb.append(timed(stock, r)[0])
    s, k = statistics.median(ts), statistics.median(tb)
    return {
        "shell_s": round(s, 4),
        "stock_s": round(k, 4),
        "shell_steps_per_s": round(req.steps / s, 2),
        "stock_steps_per_s": round(req.steps / k, 2),
        "shell_speed_over_stock": round(k / s, 3),
        "max_pixel_difference": round(float(np.abs(a - b).max()), 4),
        "pairs": pairs,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", type=Path, default=Path("build/bench/gpu_recipe.json"))
    p.add_argument("--work", type=Path, default=Path("build/bench"))
    p.add_argument("--budget", type=float, default=480, help="seconds; later sections are skipped after this")
    p.add_argument("--pairs", type=int, default=4)
    p.add_argument("--only", default="", help="comma-separated section numbers to run (default: all)")
    p.add_argument("--dry_run", action="store_true", help="on the CPU at 64x64, 2 steps: checks the script runs")
    args = p.parse_args()
    if not torch.cuda.is_available() and not args.dry_run:
        print("no CUDA GPU: nothing to measure (--dry_run checks the script on the CPU)")
        return
    dev, precision = ("cpu", "fp32") if args.dry_run else ("cuda", "fp16")
    side = 64 if args.dry_run else 512
    import diffusers

    t_start = time.perf_counter()
    res: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name(0) if dev == "cuda" else "none (dry run on the CPU)",
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "measured": time.strftime("%Y-%m-%d %H:%M"),
        "sections": {},
    }
    only = {int(x) for x in args.only.split(",") if x}

    def save() -> None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=1))

    def section(n: int, name: str, fn: Callable[[], dict[str, Any]]) -> None:
        spent = time.perf_counter() - t_start
        if only and n not in only:
            return
        if spent > args.budget:
            res["sections"][name] = {"skipped": f"budget spent ({spent:.0f} s)"}
            print(f"{n}. {name}: skipped, {spent:.0f} s spent", flush=True)
            return
        print(f"{n}. {name} (at {spent:.0f} s)", flush=True)
        try:
            figures = fn()
        except Exception as e:  # one section's failure must not lose the others' figures
            traceback.print_exc()
            figures = {"error": f"{type(e).__name__}: {e}"}
        res["sections"][name] = figures
        print("   ", json.dumps(figures), flush=True)
        save()
        if dev == "cuda":
            torch.cuda.empty_cache()

    steps = 2 if args.dry_run else 25
    sd15 = ImageRequest(
        f"{PROMPT} [{NEGATIVE}]", steps=steps, cfg_scale=7.5, sampler="ddim", width=side, height=side, seed=1
    )

    def peak() -> float:
        return round(torch.cuda.max_memory_allocated() / 2**30, 2) if dev == "cuda" else 0.0

    held: dict[str, Any] = {}

    def sd15_eager() -> dict:
        path = random_checkpoint("sd-1", args.work)
        loaded = load_model(ModelEntry("sd15", path), dev, precision)
        held["stock"] = Stock(path, "ddim", loaded.engine.base_scheduler_config, dev)
        figures = side_by_side(shell_call(loaded.engine), held["stock"], sd15, args.pairs)
        figures["loaded_as"] = loaded.summary
        figures["peak_gpu_gib"] = peak()
        del loaded
        return figures

    def tiny() -> dict:
        from invoke_shell.models.tiny_shapes import data
        from invoke_shell.models.tiny_shapes.evaluate import MODEL_DIR, sample_drawings, shell_defaults

        d = shell_defaults()
        base = {k: d[k] for k in ("steps", "cfg_scale", "sampler", "width", "height")}
        prompts = sample_drawings(12, seed=0)
        cpu = load_model(ModelEntry("tiny-shapes", MODEL_DIR), "cpu", "fp32", threads=4).engine
        figures: dict[str, Any] = {}
        for precision in ("fp32", "fp16"):
            eng = load_model(ModelEntry("tiny-shapes", MODEL_DIR), dev, precision if dev == "cuda" else "fp32").engine
            call = shell_call(eng)
            call(ImageRequest("warm up", **base, seed=0))
            secs, same, diffs = [], 0, []
            for i, dr in enumerate(prompts):
                r = ImageRequest(dr.caption, **base, seed=i)
                sec, out = timed(call, r)
                secs.append(sec)
                ref = cpu.generate(r)
                diffs.append(float(np.abs(out - ref.pixels).max()))
                img = Image.fromarray((out * 255).round().astype(np.uint8))
                same += data.judge(img) == data.judge(ref.image)
            figures[precision] = {
                "s_per_image": round(statistics.median(secs), 4),
                "same_judged_picture_as_cpu": f"{same}/{len(prompts)}",
                "max_pixel_difference_median": round(statistics.median(diffs), 4),
            }
        return figures

    def offload() -> dict:
        path = random_checkpoint("sd-1", args.work)
        if dev != "cuda":
            return {"skipped": "offload needs a GPU"}
        torch.cuda.reset_peak_memory_stats()
        loaded = load_model(ModelEntry("sd15", path), dev, precision, offload=True)
        call = shell_call(loaded.engine)
        first = call(sd15)
        secs = timed(call, sd15.with_(seed=2))[0]
        figures = {
            "loaded_as": loaded.summary,
            "s_per_image": round(secs, 3),
            "peak_gpu_gib": peak(),
            "finite": bool(np.isfinite(first).all()),
        }
        if "stock" in held:
            figures["max_pixel_difference_from_stock"] = round(float(np.abs(first - held["stock"](sd15)).max()), 4)
        del loaded
        return figures

    def sd15_compiled() -> dict:
        if dev != "cuda":
            return {"skipped": "--compile needs a GPU"}
        path = random_checkpoint("sd-1", args.work)
        loaded = load_model(ModelEntry("sd15c", path), "cuda", "fp16", compile_unet=True)
        stock = held.get("stock") or Stock(path, "ddim", loaded.engine.base_scheduler_config)
        t = time.perf_counter()
        first = loaded.engine.generate(sd15.with_(seed=100), cancel=threading.Event())
        warm = time.perf_counter() - t
        figures = side_by_side(shell_call(loaded.engine), stock, sd15, args.pairs + 2)
        figures["first_image_s"] = round(warm, 1)
        figures["first_image_note"] = first.note
        figures["loaded_as"] = loaded.summary
        del loaded
        return figures

    def tiny_compiled() -> dict:
        if dev != "cuda":
            return {"skipped": "--compile needs a GPU"}
        from invoke_shell.models.tiny_shapes.evaluate import MODEL_DIR, sample_drawings, shell_defaults

        d = shell_defaults()
        base = {k: d[k] for k in ("steps", "cfg_scale", "sampler", "width", "height")}
        figures: dict[str, Any] = {}
        for precision in ("fp16", "fp32"):
            eng = load_model(ModelEntry("tiny-shapes", MODEL_DIR), "cuda", precision, compile_unet=True).engine
            call = shell_call(eng)
            t = time.perf_counter()
            call(ImageRequest("warm up", **base, seed=0))
            warm = time.perf_counter() - t
            call(ImageRequest("warm up again", **base, seed=1))
            secs = [
                timed(call, ImageRequest(dr.caption, **base, seed=i))[0]
                for i, dr in enumerate(sample_drawings(12, seed=0))
            ]
            figures[precision] = {"first_image_s": round(warm, 1), "s_per_image": round(statistics.median(secs), 4)}
        return figures

    def sdxl() -> dict:
        held.pop("stock", None)
        if dev == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        path = random_checkpoint("sdxl", args.work)
        loaded = load_model(ModelEntry("sdxl", path), dev, precision)
        stock = Stock(path, "ddim", loaded.engine.base_scheduler_config, dev)
        req = sd15.with_(width=2 * side, height=2 * side, cfg_scale=5.0)
        figures = side_by_side(shell_call(loaded.engine), stock, req, 2)
        figures["images_per_s_shell"] = round(1 / figures["shell_s"], 3)
        figures["images_per_s_stock"] = round(1 / figures["stock_s"], 3)
        figures["loaded_as"] = loaded.summary
        figures["peak_gpu_gib"] = peak()
        return figures

    section(1, "sd15_512_eager", sd15_eager)
    section(2, "tiny_shapes", tiny)
    section(3, "sd15_offload", offload)
    section(4, "sd15_512_compile", sd15_compiled)
    section(5, "tiny_shapes_compile", tiny_compiled)
    section(6, "sdxl_1024_eager", sdxl)
    res["seconds"] = round(time.perf_counter() - t_start, 1)
    save()
    print(f"device: {res['gpu']}, torch {res['torch']}, diffusers {res['diffusers']}")
    for name, f in res["sections"].items():
        print(f"{name}: {json.dumps(f)}")


if __name__ == "__main__":
    main()
