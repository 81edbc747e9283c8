"""The GPU recipe: what makes a model fast on a CUDA card, applied once when it is loaded.

On CUDA, by default: PyTorch's scaled-dot-product attention (diffusers' default processor; the
load line says when a model's attention is not on it), the UNet in channels_last memory format
(convolutions run in NHWC, cuDNN's fast layout), the UNet's and VAE's query/key/value
projections fused into one matrix product each, and a VAE decode in the model's precision that
decodes again in float32 when half precision overflows (SDXL's VAE does in fp16). The engine runs
every pipeline call under `torch.inference_mode`, on any device.

`--compile` (CUDA only) compiles the UNet with torch.compile in reduce-overhead mode (Inductor's
fused kernels replayed as CUDA graphs): the first image at each size pays the compilation,
which the shell reports, and later images at that size run faster.

The CPU gets none of it (the recipe is CUDA's; on the CPU the pictures stay the ones the tests
pin). A LoRA on a compiled UNet makes it compile again (new layers, processors unfused).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

COMPILE_MODE = "reduce-overhead"
COMPILED_SIZES = 32  # shapes dynamo keeps compiled code for before it falls back to eager


@dataclass
class Recipe:
    """What was applied to one pipeline, said on its load line."""

    fused: bool = False  # query/key/value fused (LoRAs need them apart: `Adapters` unfuses)
    compiled: bool = False
    applied: list[str] = field(default_factory=list)


def apply(pipe: Any, device: str, compile_unet: bool = False) -> Recipe:
    """Make `pipe` fast on `device`; returns what was done."""
    recipe = Recipe()
    if device != "cuda":
        return recipe
    attention = attention_kind(pipe.unet)
    if attention != "SDPA":
        recipe.applied.append(f"attention: {attention}")
    else:
        recipe.applied.append("SDPA attention")
    pipe.unet.to(memory_format=torch.channels_last)
    recipe.applied.append("channels_last UNet")
    if fuse(pipe):
        recipe.fused = True
        recipe.applied.append("fused QKV")
    if pipe.vae.dtype != torch.float32:
        guard_decode(pipe.vae)
        recipe.applied.append("VAE decode falls back to fp32 on overflow")
    if compile_unet:
        import torch._dynamo as dynamo

        dynamo.config.cache_size_limit = max(dynamo.config.cache_size_limit, COMPILED_SIZES)
        pipe.unet.compile(mode=COMPILE_MODE, dynamic=False)
        recipe.compiled = True
        recipe.applied.append(f"UNet compiled ({COMPILE_MODE}; each new size compiles once)")
    return recipe


def attention_kind(unet: Any) -> str:
    """SDPA when every attention processor of the UNet calls torch's scaled_dot_product_attention
    (diffusers' processors that do end in "2_0"), else the names of those that do not."""
    names = {type(p).__name__ for p in unet.attn_processors.values()}
    other = sorted(n for n in names if not n.endswith("2_0"))
    return "SDPA" if not other else "/".join(other)


def fuse(pipe: Any) -> bool:
    """Fuse the UNet's and VAE's query/key/value projections; False where this pipeline cannot."""
    if not hasattr(pipe, "fuse_qkv_projections"):
        return False
    pipe.fuse_qkv_projections(unet=True, vae=True)
    return bool(getattr(pipe, "fusing_unet", False))


def unfuse(pipe: Any) -> None:
    """Separate query/key/value again: a LoRA's layers sit on the separate projections."""
    if getattr(pipe, "fusing_unet", False) or getattr(pipe, "fusing_vae", False):
        pipe.unfuse_qkv_projections(unet=True, vae=True)


def guard_decode(vae: Any) -> None:
    """`vae.decode` in the model's precision, and once more in float32 when that overflows
    (inf or NaN in the picture); the VAE goes back to its precision afterwards. The check is
    one reduction per image."""
    if getattr(vae.decode, "_falls_back", False):
        return
    half = vae.decode

    def decode(z: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        out = half(z, *args, **kwargs)
        sample = out[0] if isinstance(out, tuple) else out.sample
        if bool(torch.isfinite(sample).all()) or not bool(torch.isfinite(z).all()):
            return out  # fine, or broken before the VAE: float32 would not mend it
        dtype = vae.dtype
        vae.to(torch.float32)
        try:
            return half(z.float(), *args, **kwargs)  # float32 pixels: the pipeline takes any dtype
        finally:
            vae.to(dtype)

    decode._falls_back = True  # type: ignore[attr-defined]
    vae.decode = decode
