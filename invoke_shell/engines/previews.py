"""Latents to pictures, fast enough for every step: a tiny convolutional decoder where the model
ships one, else a 4x3 linear map per model family; the exact VAE decode is the engine's.

The embedded model ships preview_decoder.safetensors (a few thousand parameters trained on its
own VAE's decodes by tiny_shapes/train_preview.py); a per-pixel linear map cannot draw its
colours within 10/255 of the decode, the decoder does. Models without one use latent_rgb.json
beside them (least squares on VAE decodes) or the Stable Diffusion 1.x map the community fitted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

import torch
from PIL import Image
from torch import nn

# rows: latent channels 0-3; columns: R, G, B (output in [-1, 1])
SD1_LATENT_RGB = [[0.298, 0.207, 0.208], [0.187, 0.286, 0.173], [-0.158, 0.189, 0.264], [-0.184, -0.271, -0.473]]
# SDXL's VAE has its own latent space: ComfyUI's published map for it, with its bias
SDXL_LATENT_RGB = [
    [0.3651, 0.4232, 0.4341],
    [-0.2533, -0.0042, 0.1068],
    [0.1076, 0.1111, -0.0362],
    [-0.3165, -0.2492, -0.2188],
]
SDXL_LATENT_BIAS = [0.1084, -0.0175, -0.0011]
DECODER_FILE = "preview_decoder.safetensors"


class Previewer(Protocol):
    def __call__(self, latents: torch.Tensor) -> Image.Image: ...

    def pictures(self, *latents: torch.Tensor) -> list[Image.Image]:
        """Each latents' first image, in one pass where that is cheaper."""
        ...


def to_image(rgb: torch.Tensor) -> Image.Image:
    """(h, w, 3) in [-1, 1] -> an RGB picture."""
    return Image.fromarray(((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy())


class LatentPreviewer:
    """One linear map from a latent cell's 4 channels to RGB, upscaled 8x: microseconds a step."""

    def __init__(self, weights: list[list[float]], bias: list[float] | None = None, upscale: int = 8) -> None:
        self.weights = torch.tensor(weights, dtype=torch.float32)
        self.bias = torch.tensor(bias or [0.0, 0.0, 0.0], dtype=torch.float32)
        self.upscale = upscale

    def __call__(self, latents: torch.Tensor) -> Image.Image:
        z = latents.detach().float().cpu()[0]  # (4, h, w)
        img = to_image(torch.einsum("chw,cr->hwr", z, self.weights) + self.bias)
        return img.resize((img.width * self.upscale, img.height * self.upscale), Image.Resampling.BILINEAR)

    def pictures(self, *latents: torch.Tensor) -> list[Image.Image]:
        return [self(z) for z in latents]


class PreviewNet(nn.Module):
    """Latents (4, h, w) -> RGB (3, 8h, 8w) in [-1, 1]: a conv, then three times upsample + conv.
    `widths` are the channels after each of the first three convs."""

    def __init__(self, widths: tuple[int, int, int] = (24, 16, 12)) -> None:
        super().__init__()
        a, b, c = widths
        self.widths = widths
        self.body = nn.Sequential(
            nn.Conv2d(4, a, 3, padding=1),
            nn.SiLU(),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(a, b, 3, padding=1),
            nn.SiLU(),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(b, c, 3, padding=1),
            nn.SiLU(),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(c, 3, 3, padding=1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.body(z)
        return out

    def save(self, path: Path, metadata: dict[str, str]) -> None:
        from safetensors.torch import save_file

        tensors = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        save_file(tensors, str(path), metadata={"widths": json.dumps(list(self.widths)), **metadata})

    @classmethod
    def load(cls, path: Path) -> PreviewNet:
        from safetensors import safe_open
        from safetensors.torch import load_file

        with safe_open(str(path), "pt") as f:
            widths = json.loads(f.metadata()["widths"])
        net = cls(tuple(widths))
        net.load_state_dict(load_file(str(path)))
        return net.eval()


class DecoderPreviewer:
    """The model's own preview decoder, on the CPU in float32 whatever the model's device."""

    def __init__(self, net: PreviewNet) -> None:
        self.net = net

    def __call__(self, latents: torch.Tensor) -> Image.Image:
        return self.pictures(latents)[0]

    @torch.inference_mode()
    def pictures(self, *latents: torch.Tensor) -> list[Image.Image]:
        # a step's x_t and x0 as one batch: 2.8 ms on this project's CPU, against 2 x 2.1 ms
        z = torch.cat([x.detach().float().cpu()[:1] for x in latents])
        return [to_image(rgb.permute(1, 2, 0)) for rgb in self.net(z)]


def load_previewer(model_path: Path, xl: bool = False) -> Previewer:
    """The best fast preview this model ships: its decoder, its fitted linear map, or its
    family's published one (SD 1.x/2.x, or SDXL's)."""
    if model_path.is_dir() and (model_path / DECODER_FILE).is_file():
        return DecoderPreviewer(PreviewNet.load(model_path / DECODER_FILE))
    fitted = model_path / "latent_rgb.json" if model_path.is_dir() else None
    if fitted is not None and fitted.exists():
        spec = json.loads(fitted.read_text())
        return LatentPreviewer(spec["weights"], spec["bias"])
    return LatentPreviewer(SDXL_LATENT_RGB, SDXL_LATENT_BIAS) if xl else LatentPreviewer(SD1_LATENT_RGB)
