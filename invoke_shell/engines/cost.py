"""What a line will cost before it runs: seconds and peak memory, from the model and the size.

Time: this model is timed once on this device (one guided UNet call, one VAE decode) at a size
where compute outweighs fixed overheads, while torch counts the call's FLOPs. Convolutions grow with the pixels P, self-attention
with P^2; the self-attention FLOPs follow from the configs, so a call at P pixels costs
t_measured * ((1 - a) * r + a * r^2), with r = P / P_measured and a the attention share there. Memory: the largest feature maps of the UNet (batch 2 for guidance) and of the VAE
decoder, which dominates at large sizes until it works in tiles. Both are estimates to decide
"refuse, warn or run", and are printed as "about".
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

# Live tensors per largest feature map at the peak (input, output, norm and skip copies), from
# measured peaks of the embedded model at 512-2048 px.
_UNET_COPIES = 10
_VAE_COPIES = 6


@dataclass(frozen=True)
class Speed:
    """Seconds per guided UNet call and per VAE decode at `pixels`, and their self-attention share."""

    pixels: int
    step: float
    step_attention: float
    decode: float
    decode_attention: float

    def seconds(self, width: int, height: int, steps: int) -> float:
        r = width * height / self.pixels
        return steps * _grow(self.step, self.step_attention, r) + _grow(self.decode, self.decode_attention, r)


def _grow(t: float, attention: float, r: float) -> float:
    return t * ((1 - attention) * r + attention * r * r)


@dataclass(frozen=True)
class Cost:
    seconds: float
    memory: int  # bytes at the peak of the largest image
    unet_memory: int
    vae_memory: int


def measure(pipe: Any, width: int, height: int) -> Speed:
    """Time this model once, counting FLOPs on the warm-up call: at its native size, or at twice
    the side and more while one call is too quick (fixed overheads would hide how time grows)."""
    for _ in range(4):
        step, step_flops = _timed(lambda w=width, h=height: _unet_call(pipe, w, h))
        if step >= 0.2:
            break
        width, height = width * 2, height * 2
    decode, decode_flops = _timed(lambda: _decode(pipe, width, height))
    return Speed(
        width * height,
        step,
        min(1.0, _unet_attention_flops(pipe, width, height) / max(step_flops, 1)),
        decode,
        min(1.0, _vae_attention_flops(pipe, width, height) / max(decode_flops, 1)),
    )


def estimate(pipe: Any, speed: Speed, sizes_and_steps: list[tuple[int, int, int]], tiled_above: int) -> Cost:
    """The cost of images given as (width, height, steps run)."""
    seconds = sum(speed.seconds(w, h, s) for w, h, s in sizes_and_steps)
    w, h = max(((w, h) for w, h, _ in sizes_and_steps), key=lambda wh: wh[0] * wh[1])
    unet, vae = _unet_memory(pipe, w, h), _vae_memory(pipe, w, h, tiled=w * h > tiled_above)
    return Cost(seconds, max(unet, vae), unet, vae)


def free_memory(device: torch.device) -> int | None:
    """Bytes the device can still give, or None where that cannot be asked."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type == "cpu":
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            return None
    return None


def _timed(run: Any) -> tuple[float, int]:
    """Seconds of a second call, and the FLOPs torch counted on the first (which pays lazy set-up)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        run()
    t0 = time.perf_counter()
    run()
    return time.perf_counter() - t0, int(counter.get_total_flops())


def _unet_attention_flops(pipe: Any, width: int, height: int) -> int:
    """Self-attention FLOPs of one guided UNet call: 4 T^2 C per attention (QK^T and AV) at
    each level with transformer blocks (T tokens, C channels), batch 2."""
    cfg, f = pipe.unet.config, pipe.vae_scale_factor
    layers = cfg.layers_per_block if isinstance(cfg.layers_per_block, int) else max(cfg.layers_per_block)
    total, last = 0, len(cfg.block_out_channels) - 1
    for i, (kind, c) in enumerate(zip(cfg.down_block_types, cfg.block_out_channels, strict=False)):
        tokens = (width // f >> i) * (height // f >> i)
        per_level = (layers + layers + 1 if "Attn" in kind else 0) + (1 if i == last else 0)  # down, up, mid
        total += per_level * 4 * tokens * tokens * c
    return 2 * total


def _vae_attention_flops(pipe: Any, width: int, height: int) -> int:
    """The VAE decoder's one mid-block self-attention, at latent size."""
    vae, f = pipe.vae, pipe.vae_scale_factor
    tokens = (width // int(f)) * (height // int(f))
    return 4 * tokens * tokens * int(vae.config.block_out_channels[-1])


@torch.no_grad()
def _unet_call(pipe: Any, width: int, height: int) -> None:
    unet, f, device = pipe.unet, pipe.vae_scale_factor, pipe._execution_device  # offload: not unet.device
    latents = torch.zeros(2, unet.config.in_channels, height // f, width // f, device=device, dtype=unet.dtype)
    context = torch.zeros(2, 77, unet.config.cross_attention_dim, device=device, dtype=unet.dtype)
    extra = {}
    if unet.config.addition_embed_type == "text_time":  # SDXL: pooled text and six size numbers
        c = unet.config
        pooled = c.projection_class_embeddings_input_dim - 6 * c.addition_time_embed_dim
        like = {"device": device, "dtype": unet.dtype}
        extra["added_cond_kwargs"] = {
            "text_embeds": torch.zeros(2, pooled, **like),
            "time_ids": torch.zeros(2, 6, **like),
        }
    unet(latents, 500, encoder_hidden_states=context, **extra)


@torch.no_grad()
def _decode(pipe: Any, width: int, height: int) -> None:
    vae, f = pipe.vae, pipe.vae_scale_factor
    shape = (1, vae.config.latent_channels, height // f, width // f)
    latents = torch.zeros(shape, device=pipe._execution_device, dtype=vae.dtype)
    vae.decode(latents)


def _bytes(module: Any) -> int:
    return int(next(module.parameters()).element_size())


def _unet_memory(pipe: Any, width: int, height: int) -> int:
    unet, f = pipe.unet, pipe.vae_scale_factor
    channels = unet.config.block_out_channels
    largest = max(c * (width // f >> i) * (height // f >> i) for i, c in enumerate(channels))
    return int(_UNET_COPIES * 2 * largest * _bytes(unet))


def _vae_memory(pipe: Any, width: int, height: int, tiled: bool) -> int:
    vae = pipe.vae
    if tiled:  # the decoder works on one tile at a time; the whole picture is held once
        tile = int(getattr(vae, "tile_sample_min_size", vae.config.sample_size))
        width, height, whole = min(width, tile), min(height, tile), 3 * 3 * width * height * 4
    else:
        whole = 0
    # the decoder's last block works at full size with block_out_channels[0], each one before it
    # at half the size of the next
    largest = max(c * (width >> i) * (height >> i) for i, c in enumerate(vae.config.block_out_channels))
    return int(_VAE_COPIES * largest * _bytes(vae) + whole)
