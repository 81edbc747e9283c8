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
