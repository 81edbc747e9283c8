"""Full-size architectures with random weights, built from the shipped family configs: what the
tests and benchmarks use to prove real-model paths (same keys, shapes and FLOPs) with nothing
downloaded. Written to disk by `convert.write_single_file` in the original single-file layout."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from invoke_shell.models.families import CONFIGS


def random_full_size(family: str) -> SimpleNamespace:
    """The family's components from our shipped configs, built on the meta device, then given
    random fp16 values in place (no fp32 copy, no default initialisation)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    base = CONFIGS / family
    with torch.device("meta"):
        parts = {
            "unet": UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(str(base / "unet"))),
            "vae": AutoencoderKL.from_config(AutoencoderKL.load_config(str(base / "vae"))),
            "text_encoder": CLIPTextModel(CLIPTextConfig.from_pretrained(str(base / "text_encoder"))),
        }
        if (base / "text_encoder_2").is_dir():
            parts["text_encoder_2"] = CLIPTextModelWithProjection(
                CLIPTextConfig.from_pretrained(str(base / "text_encoder_2"))
            )
    g = torch.Generator().manual_seed(0)
    for module in parts.values():
        module.to(torch.float16).to_empty(device="cpu")
        for t in module.state_dict().values():
            t.normal_(0, 0.05, generator=g)
    return SimpleNamespace(**{"text_encoder_2": None, **parts})
