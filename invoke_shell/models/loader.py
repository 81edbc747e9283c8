"""Loading a model from disk (never from a hub) onto a device in a precision."""

from __future__ import annotations

import os

from invoke_shell.errors import UsageError
from invoke_shell.models.registry import ModelEntry

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


def pick_device(wanted: str) -> str:
    import torch

    if wanted != "auto":
        if wanted == "cuda" and not torch.cuda.is_available():
            raise UsageError("--device cuda but no CUDA GPU is visible", "use --device cpu or --device auto")
        if wanted == "mps" and not torch.backends.mps.is_available():
            raise UsageError("--device mps but Metal is not available", "use --device cpu or --device auto")
        return wanted
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(precision: str, device: str):
    import torch

    if precision == "auto":
        return torch.float16 if device in ("cuda", "mps") else torch.float32
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def load_pipeline(entry: ModelEntry, device: str, dtype):
    """A StableDiffusionPipeline for `entry`, on `device` in `dtype`, from local files only."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from diffusers import StableDiffusionPipeline

    path = entry.path
    if not path.exists():
        raise UsageError(f"model {entry.name!r}: {path} does not exist",
                         "put the weights there or fix `path:` in models.yaml")
    if entry.is_single_file:
        if path.suffix in PICKLE_SUFFIXES and not entry.allow_pickle:
            raise UsageError(f"model {entry.name!r} is a pickle checkpoint ({path.name}), which can run code when loaded",
                             "convert it to .safetensors, or set `allow_pickle: true` on its entry if you trust it")
        if entry.config is None or not entry.config.exists():
            raise UsageError(f"model {entry.name!r} is a single file and needs a diffusers config folder to load offline",
                             "set `config:` on its entry, e.g. config: sd-1.5 (shipped in configs/)")
        pipe = StableDiffusionPipeline.from_single_file(
            str(path), config=str(entry.config), local_files_only=True, torch_dtype=dtype,
            safety_checker=None, requires_safety_checker=False)
    else:
        pipe = StableDiffusionPipeline.from_pretrained(
            str(path), local_files_only=True, torch_dtype=dtype,
            safety_checker=None, requires_safety_checker=False)
    return pipe.to(device)
