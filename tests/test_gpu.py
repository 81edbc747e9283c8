"""On a CUDA GPU only (skipped elsewhere, as in CI): the embedded model with the GPU recipe
draws the CPU's pictures, and --compile reports its first image and then draws the same."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from invoke_shell.line.requests import ImageRequest
from invoke_shell.models.loader import load_model
from invoke_shell.models.registry import builtin_registry
from invoke_shell.models.tiny_shapes import data

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def requests(n: int) -> list[ImageRequest]:
    entry = builtin_registry().get(None)
    d = entry.defaults
    prompts = ["a red circle on a blue background", "On green, a big yellow square.", "a white triangle on black"]
    return [
        ImageRequest(prompts[i % 3], d["steps"], d["cfg_scale"], d["sampler"], d["width"], d["height"], seed=i)
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def on_cpu():
    engine = load_model(builtin_registry().get(None), "cpu", "auto").engine
    return [engine.generate(r) for r in requests(3)]


def test_the_recipe_is_on_and_draws_the_cpus_pictures(on_cpu):
    loaded = load_model(builtin_registry().get(None), "cuda", "auto")
    assert "float32, SDPA attention, channels_last UNet, fused QKV" in loaded.summary
    for r, cpu in zip(requests(3), on_cpu, strict=True):
        gpu = loaded.engine.generate(r, cancel=threading.Event())
        assert np.abs(gpu.pixels - cpu.pixels).max() < 0.02
        assert data.judge(gpu.image) == data.judge(cpu.image)


def test_compile_says_so_once_per_size_and_draws_the_same(on_cpu):
    loaded = load_model(builtin_registry().get(None), "cuda", "auto", compile_unet=True)
    made = [loaded.engine.generate(r, cancel=threading.Event()) for r in requests(3)]
    assert made[0].note is not None and made[0].note.startswith("the UNet was compiled for 64x64")
    assert made[1].note is None and made[2].note is None
    for gpu, cpu in zip(made, on_cpu, strict=True):
        assert data.judge(gpu.image) == data.judge(cpu.image)


def test_intermediates_of_a_gpu_line_are_all_written(tmp_path):
    """Through the real shell on CUDA: the previews are made from GPU latents on the session's
    thread and the files written by the (spawned, CUDA-free) writer process."""
    import subprocess
    import sys

    from PIL import Image
    from safetensors.torch import load_file

    lines = tmp_path / "lines.txt"
    lines.write_text("a red circle on a blue background -S 3 --save_intermediates 5\n")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "invoke_shell", "--device", "cuda", "--outdir", str(out), "--from_file", str(lines)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    folder = out / "img-samples" / "intermediates" / "000001.3"
    files = {f"step_{k:03d}.{ext}" for k in (5, 10, 15, 20, 25) for ext in ("safetensors", "xt.png", "x0.png")}
    assert {p.name for p in folder.iterdir()} == files | {"contact_sheet.png", "steps.gif"}
    last = load_file(folder / "step_025.safetensors")
    assert last["latents"].dtype == torch.float32 and last["latents"].shape == (1, 4, 8, 8)
    image = Image.open(out / "img-samples" / "000001.3.png")
    assert data.judge(Image.open(folder / "step_025.x0.png")) == data.judge(image)
