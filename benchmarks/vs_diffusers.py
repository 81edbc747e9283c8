"""The shell's engine against the call an engineer would script in bare diffusers, side by side.

    python benchmarks/vs_diffusers.py [--pairs 12] [--full_size] [--json PATH]

Both sides use the same components (one loaded model), sampler, seed, size and prompt, and
must give the same pixels (checked). Runs are interleaved (shell, bare, shell, bare ...) after
a warm-up, and each figure is a median, so load on the machine falls on both sides alike.

- txt2img and img2img at strength 0.75: seconds per image for each side and their ratio.
- Where one shell image's time goes: text encoder, UNet, VAE, everything else in the engine
  (views, scheduler, callbacks, post-processing), and writing the PNG with its metadata.
- `--full_size`: the same on Stable Diffusion 1.5's architecture with random weights (written
  once to build/bench/ in the original single-file layout and loaded by the shell's loader)
  at a small size, so the FLOPs per pixel are the real model's. It needs about 6 GB of memory.

The table is printed; the JSON (machine, versions, device and every figure) goes to --json.
Timings are never test assertions: machines are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from invoke_shell import schedulers
from invoke_shell.files import outputs
from invoke_shell.line.requests import ImageRequest
from invoke_shell.models.loader import LoadedModel, load_model
from invoke_shell.models.registry import ModelEntry
from invoke_shell.models.tiny_shapes import data
from invoke_shell.models.tiny_shapes.evaluate import MODEL_DIR, shell_defaults

FULL_SIZE_FILE = Path("build/bench/sd15-random.safetensors")


def full_size_model() -> Path:
    if not FULL_SIZE_FILE.exists():
        from invoke_shell.models import convert
        from invoke_shell.models.random_model import random_full_size

        FULL_SIZE_FILE.parent.mkdir(parents=True, exist_ok=True)
        convert.write_single_file(random_full_size("sd-1"), FULL_SIZE_FILE)
    return FULL_SIZE_FILE


class Bare:
    """What a script would do: the pipelines over the loaded components, the sampler set once."""

    def __init__(self, loaded: LoadedModel, sampler: str) -> None:
        from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline

        parts = loaded.engine.txt2img.components
        scheduler = schedulers.build(sampler, loaded.engine.base_scheduler_config, 0)
        self.txt2img = StableDiffusionPipeline(**{**parts, "scheduler": scheduler})
        self.img2img = StableDiffusionImg2ImgPipeline(**{**parts, "scheduler": scheduler})
        for p in (self.txt2img, self.img2img):
            p.set_progress_bar_config(disable=True)

    def __call__(self, req: ImageRequest, init: Image.Image | None) -> Image.Image:
        common = dict(
            prompt=req.prompt,
            num_inference_steps=req.steps,
            guidance_scale=req.cfg_scale,
            generator=torch.Generator("cpu").manual_seed(req.seed),
        )
        if init is None:
            image: Image.Image = self.txt2img(**common, height=req.height, width=req.width).images[0]
        else:
            image = self.img2img(**common, image=init, strength=req.strength).images[0]
        return image


@contextmanager
def timed_modules(loaded: LoadedModel, spent: dict[str, float]) -> Iterator[None]:
    """Add each model call's seconds to `spent` by component (the VAE's encode and decode)."""
    pipe = loaded.engine.txt2img
    handles, saved = [], []

    def around(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[name] += time.perf_counter() - t

        return run

    for name in ("text_encoder", "unet"):
        module = getattr(pipe, name)
        starts: list[float] = []
        handles.append(module.register_forward_pre_hook(lambda *_, s=starts: s.append(time.perf_counter())))
        handles.append(
            module.register_forward_hook(
                lambda *_, s=starts, n=name: spent.__setitem__(n, spent[n] + time.perf_counter() - s.pop())
            )
        )
    for method in ("encode", "decode"):
        saved.append((method, getattr(pipe.vae, method)))
        setattr(pipe.vae, method, around("vae", getattr(pipe.vae, method)))
    try:
        yield
    finally:
        for h in handles:
            h.remove()
        for method, fn in saved:
            setattr(pipe.vae, method, fn)


def as_the_shell_calls(loaded: LoadedModel, req: ImageRequest, init: Image.Image | None) -> Any:
    """The engine call the session makes: a step callback (the toolbar's progress) and a cancel flag."""
    return loaded.engine.generate(req, init, on_step=lambda state: None, cancel=threading.Event())


def side_by_side(
    loaded: LoadedModel, bare: Bare, req: ImageRequest, init: Image.Image | None, pairs: int, warm: int
) -> dict:
    shell_s, bare_s = [], []
    for i in range(warm + pairs):
        t = time.perf_counter()
        mine = as_the_shell_calls(loaded, req, init).image
        a = time.perf_counter() - t
        t = time.perf_counter()
        theirs = bare(req, init)
        b = time.perf_counter() - t
        if i >= warm:
            shell_s.append(a)
            bare_s.append(b)
    diff = np.abs(np.asarray(mine, dtype=np.int16) - np.asarray(theirs, dtype=np.int16)).max()
    return {
        "shell_s": round(statistics.median(shell_s), 4),
        "bare_s": round(statistics.median(bare_s), 4),
        "ratio": round(statistics.median(shell_s) / statistics.median(bare_s), 4),
        "ratio_of_pairs": round(statistics.median(a / b for a, b in zip(shell_s, bare_s)), 4),
        "max_pixel_difference": int(diff),
        "pairs": pairs,
    }


def breakdown(loaded: LoadedModel, req: ImageRequest, init: Image.Image | None, runs: int) -> dict:
    """Median seconds per part of one shell image, and each part's share of the whole."""
    parts: dict[str, list[float]] = defaultdict(list)
    with tempfile.TemporaryDirectory() as out:
        for _ in range(runs + 1):
            spent: dict[str, float] = defaultdict(float)
            t = time.perf_counter()
            with timed_modules(loaded, spent):
                result = as_the_shell_calls(loaded, req, init)
            total = time.perf_counter() - t
            t = time.perf_counter()
            outputs.write_image(Path(out), req, result.image, loaded.info, result.steps_run, result.schedule_steps)
            spent["png_and_metadata"] = time.perf_counter() - t
            spent["engine_other"] = total - sum(spent[k] for k in ("text_encoder", "unet", "vae"))
            for k, v in spent.items():
                parts[k].append(v)
    medians = {k: statistics.median(v[1:]) for k, v in parts.items()}  # the first run warms up
    whole = sum(medians.values())
    return {k: {"s": round(v, 4), "share": round(v / whole, 4)} for k, v in medians.items()}


def bench(loaded: LoadedModel, base: dict, pairs: int, warm: int, size: int) -> dict:
    prompt = "a red circle on a blue background"
    req = ImageRequest(prompt, **{**base, "width": size, "height": size}, seed=42)
    init = data.render(data.Drawing("square", "yellow", "green", (12, 12, 48, 48))).resize((size, size))
    i2i = req.with_(init_img="init.png", strength=0.75)
    bare = Bare(loaded, base["sampler"])
    figures: dict[str, Any] = {"steps": req.steps, "sampler": req.sampler, "size": f"{size}x{size}"}
    for name, r, image in (("txt2img", req, None), ("img2img_0.75", i2i, init)):
        figures[name] = side_by_side(loaded, bare, r, image, pairs, warm)
        figures[name]["breakdown"] = breakdown(loaded, r, image, max(3, pairs // 2))
        print(f"  {name}: {json.dumps(figures[name])}", flush=True)
    figures["img2img_over_txt2img"] = strength_costs(loaded, req, init, max(4, pairs // 2))
    print(f"  img2img / txt2img: {json.dumps(figures['img2img_over_txt2img'])}", flush=True)
    return figures


def strength_costs(loaded: LoadedModel, req: ImageRequest, init: Image.Image, rounds: int) -> dict:
    """img2img at strength s against txt2img, interleaved: ideally s plus the VAE encode's share."""
    times: dict[str, list[float]] = defaultdict(list)
    runs = {"txt2img": (req, None), **{str(f): (req.with_(init_img="init.png", strength=f), init) for f in (0.3, 0.6)}}
    for i in range(rounds + 1):
        for name, (r, image) in runs.items():
            t = time.perf_counter()
            as_the_shell_calls(loaded, r, image)
            if i:
                times[name].append(time.perf_counter() - t)
    base = statistics.median(times["txt2img"])
    return {f"strength_{name}": round(statistics.median(v) / base, 3) for name, v in times.items() if name != "txt2img"}


def machine() -> dict:
    return {
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "diffusers": __import__("diffusers").__version__,
        "measured": time.strftime("%Y-%m-%d %H:%M"),
    }


def table(results: dict) -> str:
    rows = [
        "| model | mode | shell s | bare s | shell ÷ bare | engine other | PNG write |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for model, figs in results["models"].items():
        for mode in ("txt2img", "img2img_0.75"):
            f = figs[mode]
            b = f["breakdown"]
            rows.append(
                f"| {model} {figs['size']} {figs['steps']} steps | {mode} | {f['shell_s']:.3f} | {f['bare_s']:.3f} | "
                f"{f['ratio']:.3f} | {b['engine_other']['share']:.1%} | {b['png_and_metadata']['share']:.1%} |"
            )
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=12)
    p.add_argument("--warm", type=int, default=2)
    p.add_argument("--full_size", action="store_true", help="also SD 1.5's architecture with random weights")
    p.add_argument("--full_size_pairs", type=int, default=4)
    p.add_argument("--full_size_steps", type=int, default=10)
    p.add_argument("--full_size_px", type=int, default=128)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", type=Path, default=Path("build/bench/vs_diffusers.json"))
    args = p.parse_args()

    results: dict[str, Any] = {"machine": machine(), "device": args.device, "models": {}}
    d = shell_defaults()
    base = {k: d[k] for k in ("steps", "cfg_scale", "sampler", "width", "height")}
    print("tiny-shapes (the embedded model)", flush=True)
    loaded = load_model(ModelEntry("tiny-shapes", MODEL_DIR), args.device, "fp32")
    results["models"]["tiny-shapes"] = bench(loaded, base, args.pairs, args.warm, base["width"])
    del loaded
    if args.full_size:
        print("SD 1.5 architecture, random weights", flush=True)
        loaded = load_model(ModelEntry("sd15-random", full_size_model()), args.device, "fp32")
        fbase = {**base, "steps": args.full_size_steps, "cfg_scale": 7.5}
        results["models"]["sd-1.5 (random)"] = bench(loaded, fbase, args.full_size_pairs, 1, args.full_size_px)
    results["machine"]["torch_threads"] = torch.get_num_threads()
    print(table(results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
