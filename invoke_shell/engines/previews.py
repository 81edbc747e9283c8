"""Latents to pictures: a fast 4x3 linear map per model family, or the exact VAE decode.

The linear map costs microseconds per step. The embedded model ships its own map
(latent_rgb.json, fitted by least squares on VAE decodes when it was trained); other models
use the Stable Diffusion 1.x map that the community fitted the same way.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from PIL import Image

# rows: latent channels 0-3; columns: R, G, B (output in [-1, 1])
SD1_LATENT_RGB = [[0.298, 0.207, 0.208], [0.187, 0.286, 0.173], [-0.158, 0.189, 0.264], [-0.184, -0.271, -0.473]]


class LatentPreviewer:
    def __init__(self, weights: list[list[float]], bias: list[float] | None = None, upscale: int = 8) -> None:
        self.weights = torch.tensor(weights, dtype=torch.float32)
        self.bias = torch.tensor(bias or [0.0, 0.0, 0.0], dtype=torch.float32)
        self.upscale = upscale

    @classmethod
    def for_model(cls, model_path: Path) -> LatentPreviewer:
        fitted = model_path / "latent_rgb.json" if model_path.is_dir() else None
        if fitted is not None and fitted.exists():
            spec = json.loads(fitted.read_text())
            return cls(spec["weights"], spec["bias"])
        return cls(SD1_LATENT_RGB)

    def __call__(self, latents: torch.Tensor) -> Image.Image:
        z = latents.detach().float().cpu()[0]  # (4, h, w)
        rgb = torch.einsum("chw,cr->hwr", z, self.weights) + self.bias
        u8 = ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
        img = Image.fromarray(u8)
        return img.resize((img.width * self.upscale, img.height * self.upscale), Image.Resampling.BILINEAR)
