"""The GPU recipe (channels_last, fused QKV, the VAE's fp32 fallback, --compile's refusal),
checked on the CPU: every step but the device is the one a CUDA card gets."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from test_engine import req

from invoke_shell.engines import recipe


def fresh_pipe(tiny_config, dtype=torch.float32):
    from diffusers import StableDiffusionPipeline

    folder = str(tiny_config.parent / "model")
    return StableDiffusionPipeline.from_pretrained(folder, local_files_only=True, safety_checker=None, dtype=dtype)


@pytest.fixture(scope="module")
def cooked(tiny_config):
    """An engine over a pipeline given the CUDA recipe (on the CPU: the same layout changes)."""
    from invoke_shell.engines.generate import Engine

    pipe = fresh_pipe(tiny_config)
    applied = recipe.apply(pipe, "cuda")
    return Engine(pipe, recipe=applied)


def test_the_recipe_changes_layout_not_pictures(cooked, engine):
    pipe = cooked.txt2img
    assert cooked.recipe.applied == ["SDPA attention", "channels_last UNet", "fused QKV"]
    assert pipe.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert hasattr(pipe.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1, "to_qkv")
    for r in (req(seed=3), req(seed=4, sampler="ddim", prompt="(a blue square)1.3 on red")):
        assert np.abs(cooked.generate(r).pixels - engine.generate(r).pixels).max() < 2e-3


def test_the_cpu_gets_no_layout_changes(tiny_config):
    pipe = fresh_pipe(tiny_config)
    assert recipe.apply(pipe, "cpu").applied == []
    assert not pipe.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert not getattr(pipe, "fusing_unet", False)


def test_a_lora_unfuses_and_the_next_line_fuses_again(cooked, tiny_config, addons):
    """A LoRA's layers wrap the separate q/k/v projections: with it the fused model must draw
    what an unfused one in the same layout draws, and without it go back to fused."""
    from invoke_shell.engines.generate import Engine

    laid_out = fresh_pipe(tiny_config)
    laid_out.unet.to(memory_format=torch.channels_last)  # the layout alone: not fused
    unfused = Engine(laid_out)
    lora = [("thick", addons.loras / "thick.safetensors", 1.0)]
    r = req(seed=5)
    before = cooked.generate(r).pixels
    cooked.adapters.use_loras(lora)
    unfused.adapters.use_loras(lora)
    assert not cooked.txt2img.fusing_unet
    with_lora = cooked.generate(r).pixels
    assert np.abs(with_lora - unfused.generate(r).pixels).max() < 1e-5
    cooked.adapters.use_loras([])
    assert cooked.txt2img.fusing_unet
    assert np.abs(with_lora - before).mean() > 0.01  # the LoRA did something
    assert np.abs(cooked.generate(r).pixels - before).max() < 1e-5  # and is gone


def test_a_half_precision_vae_that_overflows_decodes_again_in_fp32(tiny_config):
    """SDXL's VAE overflows in fp16; here a bf16 VAE is made to overflow at its last layer, in
    half precision only. The picture is the fp32 decode's, and the VAE stays in bf16."""
    import copy

    vae = fresh_pipe(tiny_config).vae.to(torch.bfloat16)
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    with torch.no_grad():  # the same weights, in float32 arithmetic
        reference = copy.deepcopy(vae).to(torch.float32).decode(latents.float()).sample
    vae.decoder.conv_out.register_forward_hook(lambda m, a, out: out * torch.inf if out.dtype != torch.float32 else out)
    recipe.guard_decode(vae)
    recipe.guard_decode(vae)  # once is enough: a second guard does not wrap the first
    with torch.no_grad():
        out = vae.decode(latents).sample
    assert torch.isfinite(out).all() and out.dtype == torch.float32
    assert torch.allclose(out, reference, atol=1e-5)
    assert vae.dtype == torch.bfloat16


def test_a_compiled_engine_says_which_sizes_compile(cooked, monkeypatch):
    """Each new size (and guidance on or off: another batch) compiles once, and the first image
    there says so; the UNet gets no stop-point hooks, which would make it compile again."""
    from invoke_shell.engines import generate

    monkeypatch.setattr(cooked.recipe, "compiled", True)
    monkeypatch.setattr(cooked, "_compiled_for", set())
    hooked: list = []
    real = generate.stop_points
    monkeypatch.setattr(
        generate, "stop_points", lambda models, *a: hooked.extend(m for m, _ in models) or real(models, *a)
    )

    first = cooked.generate(req(seed=1), cancel=threading.Event())
    assert first.note is not None and first.note.startswith("the UNet was compiled for 64x64 (")
    assert hooked and cooked.txt2img.unet not in hooked and cooked.txt2img.vae in hooked
    assert cooked.generate(req(seed=2), cancel=threading.Event()).note is None
    assert "compiled for 64x64" in (cooked.generate(req(seed=2, cfg_scale=1.0)).note or "")
    assert cooked._compiles_for(req(seed=9, prompt="another line")) == set()


def test_an_overflow_gives_black_pixels_and_names_the_fix(tiny_config):
    """A half-precision model that overflows yields NaN: the picture is black there, and the
    line says which precision to launch with instead."""
    from invoke_shell.engines.generate import Engine

    pipe = fresh_pipe(tiny_config, dtype=torch.bfloat16)
    pipe.unet.conv_out.register_forward_hook(lambda m, a, out: out * torch.nan)
    result = Engine(pipe).generate(req(seed=1, steps=2))
    assert result.note == "the model overflowed in bfloat16 and some pixels are black: launch with --precision fp32"
    assert (np.asarray(result.image) == 0).all()


def test_compile_with_offload_is_refused_even_on_a_gpu(monkeypatch):
    from invoke_shell.errors import UsageError
    from invoke_shell.models import loader

    monkeypatch.setattr(loader, "pick_device", lambda wanted: "cuda")
    loader.check_compile("auto")  # a GPU and the model resident: fine
    with pytest.raises(UsageError) as e:
        loader.check_compile("auto", offload=True)
    assert e.value.message == "--compile needs the model resident on the GPU, and --offload keeps it in main memory"
