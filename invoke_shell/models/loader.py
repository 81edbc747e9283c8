"""Loading a model from disk (never from a hub) onto a device in a precision.

`load_model` is the one way a model becomes a resident engine: the shell, the evaluation and
the benchmarks all call it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invoke_shell.errors import UsageError
from invoke_shell.files.metadata import ModelInfo
from invoke_shell.models.registry import ModelEntry

if TYPE_CHECKING:
    import torch

    from invoke_shell.engines.generate import Engine
    from invoke_shell.engines.previews import LatentPreviewer

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


@dataclass(frozen=True)
class LoadedModel:
    engine: Engine
    info: ModelInfo
    previewer: LatentPreviewer  # the fast latents-to-RGB map for this model's family


def load_model(
    entry: ModelEntry, device: str = "auto", precision: str = "auto", threads: int | None = None
) -> LoadedModel:
    from invoke_shell.engines.generate import Engine
    from invoke_shell.engines.previews import LatentPreviewer
    from invoke_shell.logs import route_library_logs

    route_library_logs()  # imports diffusers/transformers, then sends their records to our log
    dev = pick_device(device)
    pipe = load_pipeline(entry, dev, pick_dtype(precision, dev))
    set_threads(threads, dev, sum(p.numel() for p in pipe.unet.parameters()))
    return LoadedModel(
        Engine(pipe),
        ModelInfo(entry.name, str(entry.path), model_hash(entry.path)),
        LatentPreviewer.for_model(entry.path),
    )


SMALL_UNET = 50_000_000  # parameters; below this one CPU thread is fastest (benchmarks/threads.py)
_torch_default_threads: int | None = None


def set_threads(threads: int | None, device: str, unet_parameters: int) -> None:
    """torch's CPU threads for this model: --threads when given; otherwise one for a small model
    on the CPU (measured on 2 cores: 0.78 s per image with one thread, 0.91 s with two, and
    0.66 s against 3.1 s beside one busy process), torch's own default for the rest."""
    import torch

    global _torch_default_threads
    if _torch_default_threads is None:
        _torch_default_threads = torch.get_num_threads()
    if threads is None:
        threads = 1 if device == "cpu" and unet_parameters < SMALL_UNET else _torch_default_threads
    torch.set_num_threads(threads)


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


def pick_dtype(precision: str, device: str) -> torch.dtype:
    import torch

    if precision == "auto":
        return torch.float16 if device in ("cuda", "mps") else torch.float32
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def load_pipeline(entry: ModelEntry, device: str, dtype: torch.dtype) -> Any:
    """A StableDiffusionPipeline for `entry`, on `device` in `dtype`, from local files only."""
    from diffusers import StableDiffusionPipeline

    path = entry.path
    if not path.exists():
        raise UsageError(
            f"model {entry.name!r}: {path} does not exist", "put the weights there or fix `path:` in models.yaml"
        )
    check_weights(entry)
    if entry.is_single_file:
        if entry.config is None or not entry.config.exists():
            raise UsageError(
                f"model {entry.name!r} is a single file and needs a diffusers config folder to load offline",
                "set `config:` on its entry, e.g. config: sd-1.5 (shipped in configs/)",
            )
        pipe = StableDiffusionPipeline.from_single_file(
            str(path),
            config=str(entry.config),
            local_files_only=True,
            dtype=dtype,
            safety_checker=None,
            requires_safety_checker=False,
        )
    else:  # use_safetensors=True: without allow_pickle, never fall back to a .bin beside them
        pipe = StableDiffusionPipeline.from_pretrained(
            str(path),
            local_files_only=True,
            dtype=dtype,
            safety_checker=None,
            requires_safety_checker=False,
            use_safetensors=None if entry.allow_pickle else True,
        )
    return pipe.to(device)


def check_weights(entry: ModelEntry) -> None:
    """The one pickle rule: weights that unpickle (a .ckpt/.pt/.bin file, or a diffusers folder
    whose component holds only .bin) can run code when loaded, so they need `allow_pickle`."""
    path = entry.path
    try:
        if path.is_dir() and not (path / "model_index.json").is_file():
            raise UsageError(
                f"model {entry.name!r}: {path} is a folder but not a diffusers model (no model_index.json)",
                "point `path:` at the model folder, or at a .safetensors file",
            )
        if path.is_file() and not entry.is_single_file:
            raise UsageError(
                f"model {entry.name!r}: {path.name} is not a weights file",
                "use a .safetensors (or, with allow_pickle, .ckpt/.pt/.bin) file, or a diffusers folder",
            )
        if path.is_file() and path.suffix.lower() == ".safetensors" != path.suffix:
            raise UsageError(  # diffusers reads only the lower-case suffix as safetensors, the rest unpickles
                f"model {entry.name!r}: {path.name} must end in lower-case .safetensors to be read as one",
                f"rename it to {path.stem}.safetensors",
            )
        pickled = [path.name] if path.is_file() and path.suffix.lower() in PICKLE_SUFFIXES else []
        for part in sorted(p for p in path.iterdir() if p.is_dir()) if path.is_dir() else ():
            files = [f for f in part.iterdir() if f.is_file()]
            if not any(f.suffix == ".safetensors" for f in files):  # from_pretrained unpickles these
                pickled += [f"{part.name}/{f.name}" for f in files if f.suffix.lower() in PICKLE_SUFFIXES]
    except OSError as e:
        raise UsageError(
            f"model {entry.name!r}: {path} cannot be read ({e.strerror or e})", "check its permissions"
        ) from None
    if pickled and not entry.allow_pickle:
        raise UsageError(
            f"model {entry.name!r} holds pickled weights ({', '.join(pickled[:3])}), which can run code when loaded",
            "convert them to .safetensors, or set `allow_pickle: true` on its entry if you trust them",
        )


def model_hash(path: Path) -> str:
    """AUTOMATIC1111-style short hash: sha256 of the weights file (the UNet's for a folder)."""
    if path.is_dir():
        # the file from_pretrained loads: the plain one before variants such as .fp16
        unet = sorted((path / "unet").glob("*.safetensors"), key=lambda f: (f.name.count("."), f.name))
        files = unet or sorted(path.rglob("*.safetensors"))
        if not files:
            return "unknown"
        path = files[0]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:10]
