"""Full-size SD 1.5, SD 2.1 and SDXL base architectures with random fp16 weights, written by our
converter in the original single-file layout and loaded back by the shell's loader (detection,
the shipped config folders, `from_single_file`) with the network cut off: every tensor must
come back bit for bit under its diffusers name.

Slow (`-m slow`): SDXL's UNet alone is 2.57 B parameters. One model is in memory at a time, and
the weights are compared by digest so the original need not be kept while the file is read back.
"""

from __future__ import annotations

import gc
import hashlib
import time
from pathlib import Path

import pytest
import torch

from invoke_shell.models import convert
from invoke_shell.models.loader import open_pipeline
from invoke_shell.models.random_model import random_full_size
from invoke_shell.models.registry import ModelEntry

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("no_network")]


def digests(modules: dict[str, torch.nn.Module]) -> dict[str, str]:
    return {
        f"{name}.{key}": hashlib.sha256(t.contiguous().view(torch.uint8).numpy()).hexdigest()
        for name, module in modules.items()
        for key, t in module.state_dict().items()
    }


@pytest.mark.parametrize(
    "family, label, unet_params",
    [
        ("sd-1", "Stable Diffusion 1.x", 859_520_964),
        ("sd-2", "Stable Diffusion 2.x", 865_910_724),
        ("sdxl", "Stable Diffusion XL", 2_567_463_684),
    ],
)
def test_full_size_round_trip_is_exact(family, label, unet_params, tmp_path: Path):
    t0 = time.perf_counter()
    pipe = random_full_size(family)
    modules = {n: m for n, m in vars(pipe).items() if m is not None}
    assert sum(p.numel() for p in pipe.unet.parameters()) == unet_params
    want = digests(modules)
    file = convert.write_single_file(pipe, tmp_path / f"{family}.safetensors")
    del pipe, modules
    gc.collect()
    t1 = time.perf_counter()

    opened = open_pipeline(ModelEntry(family, file), "cpu", torch.float16)
    assert opened.how == f"{label} (from its text encoder keys)"
    loaded = {n: getattr(opened.pipe, n, None) for n in ("unet", "vae", "text_encoder", "text_encoder_2")}
    got = digests({n: m for n, m in loaded.items() if m is not None})
    assert set(got) == set(want)  # no missing or extra tensor
    assert [k for k in want if got[k] != want[k]] == []  # none misplaced: every value bit for bit
    assert all(p.dtype == torch.float16 for p in opened.pipe.unet.parameters())
    print(f"{family}: built and written in {t1 - t0:.0f} s, loaded and checked in {time.perf_counter() - t1:.0f} s")
