"""A small Stable Diffusion-layout pipeline with random weights, built locally in a second.

The fast fixture for engine and shell tests: the same classes and folder layout as a real
model, none of the size, and no download.
"""

from __future__ import annotations

from pathlib import Path


def build_tiny_random_pipeline(folder: Path) -> Path:
    import torch
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from invoke_shell.models.tiny_shapes.train import build_scheduler, build_tokenizer

    torch.manual_seed(0)
    tok = build_tokenizer(folder / "_tokenizer", max_length=16)
    text = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tok),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=16,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=64,
    )
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(32, 32),
        layers_per_block=1,
        attention_head_dim=4,
        cross_attention_dim=32,
        norm_num_groups=8,
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text,
        tokenizer=tok,
        unet=unet,
        scheduler=build_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder / "model", safe_serialization=True)
    (folder / "models.yaml").write_text(
        "default: tiny-random\nmodels:\n  tiny-random:\n    description: random weights for tests\n"
        f"    path: {folder / 'model'}\n    width: 64\n    height: 64\n    steps: 6\n    cfg_scale: 7.5\n"
        "    sampler: k_lms\n"
    )
    return folder / "models.yaml"


if __name__ == "__main__":
    import sys

    print(build_tiny_random_pipeline(Path(sys.argv[1])))
