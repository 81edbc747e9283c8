"""Loading a model from disk (never from a hub) onto a device in a precision.

`load_model` is the one way a model becomes a resident engine: the shell, the evaluation and
the benchmarks all call it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invoke_shell.errors import UsageError
from invoke_shell.files.metadata import ModelInfo
from invoke_shell.models.families import CONFIGS, FAMILIES, Family, check_shapes, clip_tokenizer, detect, read_header
from invoke_shell.models.registry import ModelEntry

if TYPE_CHECKING:
    import torch

    from invoke_shell.engines.generate import Engine
    from invoke_shell.engines.previews import Previewer

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


@dataclass(frozen=True)
class LoadedModel:
    engine: Engine
    info: ModelInfo
    previewer: Previewer  # the fast latents-to-RGB preview: the model's own decoder, else a linear map
    summary: str = ""  # what was loaded and how: family, format, precision (said once on load)


def load_model(
    entry: ModelEntry,
    device: str = "auto",
    precision: str = "auto",
    *,
    threads: int | None = None,
    offload: bool = False,
    vae_tiling: bool = False,
    compile_unet: bool = False,
) -> LoadedModel:
    """`offload` (a GPU only): weights wait in main memory, each component goes to the GPU while
    it runs; `vae_tiling`: every image is encoded and decoded in tiles; `compile_unet` (CUDA
    only): torch.compile the UNet. On CUDA the GPU recipe (`engines.recipe`) is applied."""
    from invoke_shell.engines import recipe
    from invoke_shell.engines.generate import Engine
    from invoke_shell.engines.previews import load_previewer
    from invoke_shell.logs import route_library_logs

    route_library_logs()  # imports diffusers/transformers, then sends their records to our log
    dev = pick_device(device)
    dtype = pick_dtype(precision, dev, small=unet_bytes(entry) < SMALL_WEIGHTS)
    if offload:
        check_offload(dev)
    if compile_unet:
        check_compile(dev, offload)
    opened = open_pipeline(entry, "cpu" if offload else dev, dtype)
    pipe = opened.pipe
    set_threads(threads, dev, sum(p.numel() for p in pipe.unet.parameters()))
    path = Path(pipe.config._name_or_path) if entry.repo_id else entry.path  # the snapshot folder
    applied = recipe.apply(pipe, dev, compile_unet)
    engine = Engine(pipe, offload_to=dev if offload else None, vae_tiling=vae_tiling, recipe=applied)
    ways = [w for w, on in (("model CPU offload", offload), ("VAE tiling", vae_tiling)) if on]
    ways += applied.applied
    return LoadedModel(
        engine,
        ModelInfo(entry.name, str(entry.path), model_hash(path)),
        load_previewer(path, engine.xl),
        ", ".join([opened.how, opened.source, str(dtype).removeprefix("torch."), *ways]),
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


def check_offload(device: str) -> None:
    """--offload needs a GPU to move the model's parts to."""
    if pick_device(device) == "cpu":
        raise UsageError(
            "--offload moves a model's parts to a GPU while they run, and there is no GPU here",
            "leave --offload out: on the CPU the model is in main memory already",
        )


SMALL_WEIGHTS = 200 * 2**20  # bytes of UNet weights; below this a model runs in fp32 on a GPU too


def unet_bytes(entry: ModelEntry) -> int:
    """The size of a model's UNet weights on disk (a single file: the whole file); a model not
    found here counts as large (loading it says what is wrong)."""
    path = entry.path
    if entry.repo_id is not None or not path.exists():
        return SMALL_WEIGHTS
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in (path / "unet").glob("*.safetensors")) or SMALL_WEIGHTS


def check_compile(device: str, offload: bool = False) -> None:
    """--compile is the GPU recipe's: on the CPU it would spend minutes compiling for little, and
    offload's hooks move the weights under the compiled graphs."""
    if pick_device(device) != "cuda":
        raise UsageError(
            "--compile is for CUDA GPUs (torch.compile with CUDA graphs), and there is none here",
            "leave --compile out",
        )
    if offload:
        raise UsageError(
            "--compile needs the model resident on the GPU, and --offload keeps it in main memory",
            "choose one: --compile for speed, --offload for a card too small for the model",
        )


def pick_dtype(precision: str, device: str, small: bool = False) -> torch.dtype:
    """--precision auto: fp16 on a GPU, fp32 on the CPU and for a small model anywhere: on a GPU
    such a model waits on kernel launches, not arithmetic (the embedded model on an H200: 0.279 s
    per image in fp32, 0.289 s in fp16), and fp32 draws the CPU's pictures."""
    import torch

    if precision == "auto":
        return torch.float16 if device in ("cuda", "mps") and not small else torch.float32
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def load_pipeline(entry: ModelEntry, device: str, dtype: torch.dtype) -> Any:
    """A Stable Diffusion pipeline for `entry`, on `device` in `dtype`, from local files only."""
    return open_pipeline(entry, device, dtype).pipe


@dataclass(frozen=True)
class Opened:
    pipe: Any
    family: Family
    how: str  # how the family was told, e.g. "Stable Diffusion 2.x (from its text encoder keys)"
    source: str  # "single file", "diffusers folder", "Hugging Face cache"


PIPELINES = ("StableDiffusionPipeline", "StableDiffusionInpaintPipeline", "StableDiffusionXLPipeline")


def open_pipeline(entry: ModelEntry, device: str, dtype: torch.dtype) -> Opened:
    """Load `entry` with no network: a diffusers folder, a Hugging Face cache entry (a folder
    found by repo id), or a single-file checkpoint whose family is read from its keys and shapes
    and built from the shipped config folder of that family."""
    source = "diffusers folder"
    if entry.repo_id is not None:
        entry = replace(entry, path=cached_snapshot(entry))
        source = "Hugging Face cache"
    path = entry.path
    if not path.exists():
        raise UsageError(
            f"model {entry.name!r}: {path} does not exist", "put the weights there or fix `path:` in models.yaml"
        )
    check_weights(entry)
    if entry.is_single_file:
        pipe, family, how = _single_file(entry, dtype)
        source = "single file"
    else:
        pipe, family, how = _folder(entry, dtype)
    wanted = entry.prediction_type or (family.prediction_type if entry.is_single_file else None)
    if wanted and pipe.scheduler.config.get("prediction_type") != wanted:
        pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, prediction_type=wanted)
    if entry.vae is not None:
        pipe.vae = load_vae(entry, family, dtype)
    return Opened(pipe.to(device), family, how, source)


def _single_file(entry: ModelEntry, dtype: torch.dtype) -> tuple[Any, Family, str]:
    import diffusers

    path = entry.path
    try:
        shapes = read_header(path) if path.suffix == ".safetensors" else pickle_shapes(entry)
        if entry.family is not None:
            family, how = FAMILIES[entry.family], f"{FAMILIES[entry.family].label} (family: in models.yaml)"
        else:
            detected = detect(shapes, path.name)
            family, how = detected.family, detected.why
        config = entry.config or CONFIGS / family.name
        if entry.config is not None and not entry.config.is_dir():
            raise UsageError(
                f"its config folder {entry.config} does not exist",
                f"leave `config:` out to use the shipped {family.name} configs, or fix the path",
            )
        check_shapes(shapes, path.name, config)
    except UsageError as e:  # the file's own words, naming the model too
        prefix = f"model {entry.name!r}: "
        raise UsageError(e.message if e.message.startswith(prefix) else prefix + e.message, e.hint) from None
    extra: dict[str, Any] = {}
    if not (config / "tokenizer").is_dir():  # the shipped folders share one BPE table, built here
        extra["tokenizer"] = clip_tokenizer(family.pads[0])
        if len(family.pads) > 1:
            extra["tokenizer_2"] = clip_tokenizer(family.pads[1])
    if family.name != "sdxl":
        extra.update(safety_checker=None, requires_safety_checker=False)
    cls = getattr(diffusers, family.pipeline)
    try:
        pipe = cls.from_single_file(str(path), config=str(config), local_files_only=True, dtype=dtype, **extra)
    except (ValueError, KeyError, RuntimeError) as e:  # keys the header promised but diffusers could not use
        if "out of memory" in str(e).lower():
            raise  # the session's out-of-memory message says that better
        raise UsageError(
            f"model {entry.name!r}: {path.name} could not be built as {family.label}: {str(e).splitlines()[0][:200]}",
            "set `family:` on its entry if the detected family is wrong, or check that the file is whole",
        ) from None
    return pipe, family, how


def _folder(entry: ModelEntry, dtype: torch.dtype) -> tuple[Any, Family, str]:
    import diffusers

    from invoke_shell.models.convert import pipeline_family

    index = json.loads((entry.path / "model_index.json").read_text(encoding="utf-8"))
    name = index.get("_class_name")
    if name not in PIPELINES:
        raise UsageError(
            f"model {entry.name!r} is a {name} folder, which this shell does not run",
            "supported: " + ", ".join(PIPELINES),
        )
    kwargs: dict[str, Any] = {} if name == "StableDiffusionXLPipeline" else {"safety_checker": None}
    pipe = getattr(diffusers, name).from_pretrained(
        str(entry.path),
        local_files_only=True,
        dtype=dtype,
        # without allow_pickle, never fall back to a .bin beside the safetensors
        use_safetensors=None if entry.allow_pickle else True,
        **kwargs,
    )
    if name != "StableDiffusionXLPipeline":
        pipe.register_to_config(requires_safety_checker=False)
    inpaint = "-inpaint" if pipe.unet.config.in_channels == 9 else ""
    family = FAMILIES[entry.family or pipeline_family(pipe) + inpaint]
    return pipe, family, f"{family.label}" + (" (family: in models.yaml)" if entry.family else " layout")


def cached_snapshot(entry: ModelEntry) -> Path:
    """The folder of a repo already in the Hugging Face cache (HF_HUB_CACHE), never fetched."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(str(entry.repo_id), local_files_only=True))
    except LocalEntryNotFoundError:
        raise UsageError(
            f"model {entry.name!r}: {entry.repo_id} is not in the Hugging Face cache on this machine",
            "this shell never downloads; fetch it elsewhere (huggingface-cli download) or point `path:` at the files",
        ) from None


def pickle_shapes(entry: ModelEntry) -> dict[str, list[int]]:
    """Names and shapes of a pickled checkpoint (allowed by allow_pickle), read with
    weights_only=True: a pickle that holds anything but tensors and plain values is refused."""
    import pickle

    import torch

    try:
        try:
            data = torch.load(entry.path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # the pre-zip format cannot be memory-mapped
            data = torch.load(entry.path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UsageError(
            f"model {entry.name!r}: {entry.path.name} holds more than weights, refused even with allow_pickle "
            f"({str(e).splitlines()[0][:120]})",
            "convert it to .safetensors with a tool you trust",
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError) as e:
        raise UsageError(
            f"model {entry.name!r}: {entry.path.name} is not a checkpoint torch can read ({str(e)[:120]})",
            "is it the right file? is it whole?",
        ) from None
    while isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise UsageError(f"model {entry.name!r}: {entry.path.name} holds no table of weights", "is it the right file?")
    return {str(k): list(v.shape) for k, v in data.items() if hasattr(v, "shape")}


def load_vae(entry: ModelEntry, family: Family, dtype: torch.dtype) -> Any:
    """`vae:` on an entry: a diffusers AutoencoderKL folder, or a single .safetensors file in
    either key layout (the original's `first_stage_model.`/bare `encoder.` keys, or diffusers')."""
    from diffusers import AutoencoderKL

    assert entry.vae is not None
    vae = entry.vae
    if not vae.exists():
        raise UsageError(f"model {entry.name!r}: its vae {vae} does not exist", "fix `vae:` in models.yaml")
    if vae.is_dir():
        if not (vae / "config.json").is_file():
            raise UsageError(f"model {entry.name!r}: its vae {vae} is a folder without config.json", "fix `vae:`")
        pickled = [f.name for f in vae.iterdir() if f.suffix.lower() in PICKLE_SUFFIXES]
        if pickled and not any(vae.glob("*.safetensors")) and not entry.allow_pickle:
            raise UsageError(
                f"model {entry.name!r}: its vae holds pickled weights ({pickled[0]}), which can run code when loaded",
                "convert them to .safetensors, or set `allow_pickle: true` on its entry if you trust them",
            )
        return AutoencoderKL.from_pretrained(
            str(vae), local_files_only=True, dtype=dtype, use_safetensors=None if entry.allow_pickle else True
        )
    check_weights(replace(entry, path=vae))
    config = entry.config or CONFIGS / family.name
    return AutoencoderKL.from_single_file(
        str(vae), config=str(config), subfolder="vae", local_files_only=True, dtype=dtype
    )


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
