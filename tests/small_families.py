"""Small-architecture Stable Diffusion pipelines of every family, with random weights: the same
classes, block structure and key layout as SD 1.x, SD 2.x (and their 9-channel inpainting
UNets) and SDXL base, with channel counts small enough to build, save and reload in a second.

The text encoders keep CLIP's real 49,408-token vocabulary so the shipped tokenizers fit, and
SDXL's two encoders have different widths, as the real ones do (768 and 1280): diffusers tells
them apart by width.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

FAMILY_OF = {"sd-1": "sd-1", "sd-1-inpaint": "sd-1", "sd-2": "sd-2", "sd-2-inpaint": "sd-2", "sdxl": "sdxl"}


def _text(width: int, openclip: bool, projection: bool = False) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=49408,
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=77,
        projection_dim=width,
        hidden_act="gelu" if openclip else "quick_gelu",
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=0 if openclip else 49407,
    )
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)


def build_small(family: str, seed: int = 0) -> Any:
    """A random-weights pipeline of `family` (a name in invoke_shell.models.families.FAMILIES)."""
    import torch
    from diffusers import (
        AutoencoderKL,
        PNDMScheduler,
        StableDiffusionInpaintPipeline,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )

    from invoke_shell.models.families import clip_tokenizer

    torch.manual_seed(seed)
    xl = family == "sdxl"
    sd2 = family.startswith("sd-2")
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=2,  # SD's VAE: two ResBlocks down, three up
        latent_channels=4,
        norm_num_groups=4,
        sample_size=64,
        scaling_factor=0.13025 if xl else 0.18215,
    )
    text = _text(32, openclip=sd2)
    context = 32 if not xl else 32 + 48  # SDXL: both encoders' widths side by side
    unet_kw: dict[str, Any] = dict(
        sample_size=8,
        in_channels=9 if family.endswith("inpaint") else 4,
        out_channels=4,
        layers_per_block=2,
        cross_attention_dim=context,
        norm_num_groups=8,
        use_linear_projection=sd2 or xl,
    )
    if xl:
        unet_kw.update(
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            block_out_channels=(16, 32, 32),
            attention_head_dim=(2, 4, 4),
            transformer_layers_per_block=(1, 2, 3),  # SDXL's (1, 2, 10), shortened
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=48 + 6 * 8,  # pooled text + six size numbers
        )
    else:
        unet_kw.update(
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            block_out_channels=(16, 16, 32, 32),
            attention_head_dim=(2, 2, 4, 4) if sd2 else 4,
        )
    unet = UNet2DConditionModel(**unet_kw)
    scheduler = PNDMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True, steps_offset=1
    )
    scheduler.register_to_config(clip_sample=False, set_alpha_to_one=False)
    common = dict(vae=vae, text_encoder=text, unet=unet, scheduler=scheduler)
    if xl:
        return StableDiffusionXLPipeline(
            **common,
            tokenizer=clip_tokenizer(),
            text_encoder_2=_text(48, openclip=True, projection=True),
            tokenizer_2=clip_tokenizer("!"),
        )
    cls = StableDiffusionInpaintPipeline if family.endswith("inpaint") else StableDiffusionPipeline
    return cls(
        **common,
        tokenizer=clip_tokenizer("!" if sd2 else "<|endoftext|>"),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def save_small(family: str, folder: Path, seed: int = 0) -> Any:
    """The pipeline, saved as a diffusers folder (which is also its config folder)."""
    pipe = build_small(family, seed)
    pipe.save_pretrained(folder, safe_serialization=True)
    return pipe


def components(pipe: Any) -> dict[str, Any]:
    """The pipeline's weighted modules by name."""
    names = ("unet", "vae", "text_encoder", "text_encoder_2")
    return {n: getattr(pipe, n) for n in names if getattr(pipe, n, None) is not None}
