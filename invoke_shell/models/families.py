"""Model families: which Stable Diffusion a single-file checkpoint is, told from its keys and
shapes, and the shipped config folder and tokenizers that load it with no network.

A `.safetensors` file is read only as far as its JSON header (names, shapes, offsets), so
detection costs milliseconds even for a 7 GB file, and a truncated or foreign file is refused
before diffusers sees it. Pure Python: imports no torch.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from invoke_shell.errors import UsageError

CONFIGS = Path(__file__).resolve().parent / "configs"  # package data, written by configs/make_family_configs.py
UNET = "model.diffusion_model."
PREDICTION_TYPES = ("epsilon", "v_prediction")


@dataclass(frozen=True)
class Family:
    name: str  # also the name of its config folder under CONFIGS
    label: str
    pipeline: str  # the diffusers pipeline class that loads it
    prediction_type: str
    size: int  # the pictures it was trained on, in pixels a side
    context: int  # the UNet's cross-attention width: the text encoders' output
    pads: tuple[str, ...]  # each tokenizer's pad token (OpenCLIP pads with "!", CLIP with its end token)


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("sd-1", "Stable Diffusion 1.x", "StableDiffusionPipeline", "epsilon", 512, 768, ("<|endoftext|>",)),
        Family(
            "sd-1-inpaint",
            "Stable Diffusion 1.x inpainting",
            "StableDiffusionInpaintPipeline",
            "epsilon",
            512,
            768,
            ("<|endoftext|>",),
        ),  # fmt: skip
        Family("sd-2", "Stable Diffusion 2.x", "StableDiffusionPipeline", "v_prediction", 768, 1024, ("!",)),
        Family(
            "sd-2-inpaint",
            "Stable Diffusion 2.x inpainting",
            "StableDiffusionInpaintPipeline",
            "epsilon",
            512,
            1024,
            ("!",),
        ),  # fmt: skip
        Family(
            "sdxl", "Stable Diffusion XL", "StableDiffusionXLPipeline", "epsilon", 1024, 2048, ("<|endoftext|>", "!")
        ),
    )
}

# one key that only this family's text encoder has, in the original (CompVis / Stability) layout
TEXT_KEYS = {
    "sdxl": "conditioner.embedders.1.model.positional_embedding",
    "sd-2": "cond_stage_model.model.token_embedding.weight",
    "sd-1": "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight",
}
_CROSS_ATTENTION = re.compile(
    re.escape(UNET) + r"(input_blocks|middle_block|output_blocks)\.\d+\.1\.transformer_blocks\.0\.attn2\.to_k\.weight"
)


@dataclass(frozen=True)
class Detected:
    family: Family
    why: str  # what in the file told us, for the load message


def read_header(path: Path) -> dict[str, list[int]]:
    """Tensor names and shapes of a .safetensors file, from its header alone. A file that is
    not one, or that is shorter than its header says, is a UsageError naming the file."""
    name = path.name
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            if n < 2 or n > min(size - 8, 100 << 20):  # the format caps headers at 100 MB
                raise UsageError(
                    f"{name} is not a safetensors checkpoint (its first bytes are not a safetensors header)",
                    "is it the right file? a .safetensors checkpoint starts with a JSON table of its tensors",
                )
            raw = f.read(n)
    except OSError as e:
        raise UsageError(f"{name} cannot be read ({e.strerror or e})", "check the path and its permissions") from None
    try:
        header = json.loads(raw)
        if not isinstance(header, dict):
            raise ValueError
        shapes: dict[str, list[int]] = {}
        end = 0
        for key, info in header.items():
            if key == "__metadata__":
                continue
            shapes[key] = [int(d) for d in info["shape"]]
            end = max(end, int(info["data_offsets"][1]))
    except (ValueError, KeyError, TypeError, IndexError):
        raise UsageError(
            f"{name} is not a safetensors checkpoint (its header is not a table of tensors)", "is it the right file?"
        ) from None
    if 8 + n + end > size:
        raise UsageError(
            f"{name} is truncated: its header describes {8 + n + end:,} bytes but the file has {size:,}",
            "the download or copy did not finish; fetch the file again",
        )
    return shapes


def detect(shapes: dict[str, list[int]], name: str) -> Detected:
    """The family of a checkpoint in the original key layout, from its keys and shapes."""
    if not any(k.startswith(UNET) for k in shapes):
        what = (
            "a LoRA"
            if any(k.startswith(("lora_", "lora_unet")) or ".lora_" in k for k in shapes)
            else "a VAE"
            if any(k.startswith(("encoder.", "decoder.", "first_stage_model.")) for k in shapes)
            else "not a Stable Diffusion model"
        )
        example = next(iter(shapes), "nothing")
        hint = {
            "a LoRA": "a LoRA is not a model: put it in the LoRA folder (--loras DIR) and name it in a "
            "prompt, <lora:NAME:0.8>",
            "a VAE": "a separate VAE goes in a models.yaml entry's `vae:`, beside a full checkpoint in `path:`",
        }.get(what, "point `path:` at a full checkpoint; a separate VAE goes in `vae:`")
        raise UsageError(
            f"{name} has no Stable Diffusion UNet (no {UNET}* keys; it holds {len(shapes)} "
            f"tensor{'' if len(shapes) == 1 else 's'} such as {example!r}): it looks like {what}",
            hint,
        )
    family = next((f for f, key in TEXT_KEYS.items() if key in shapes), None)
    if family is None:
        refiner = "conditioner.embedders.0.model.text_projection" in shapes
        raise UsageError(
            f"{name}: "
            + ("an SDXL refiner, which this shell does not run" if refiner else "its text encoder matches no family"),
            "supported: " + ", ".join(f.label for f in FAMILIES.values() if "inpaint" not in f.name),
        )
    conv_in = shapes.get(UNET + "input_blocks.0.0.weight", [0, 0])
    channels = conv_in[1] if len(conv_in) == 4 else 0
    if channels not in (4, 9) or (channels == 9 and family == "sdxl"):
        raise UsageError(
            f"{name}: its UNet takes {channels} input channels, which matches no family",
            "4 (text to image) or 9 (SD 1.x/2.x inpainting) are supported",
        )
    found = FAMILIES[family + ("-inpaint" if channels == 9 else "")]
    how = "text encoder keys" + (", 9-channel UNet" if channels == 9 else "")
    return Detected(found, f"{found.label} (from its {how})")


def native_side(path: Path) -> int | None:
    """The image side the weights at `path` were trained at, from configs and headers alone: a
    diffusers folder's UNet sample size times its VAE's factor, a single file's family size
    (SDXL 1024). None when that cannot be read (no file yet, a pickle, a broken folder)."""
    try:
        if path.is_dir():
            unet = json.loads((path / "unet" / "config.json").read_text(encoding="utf-8"))
            vae = json.loads((path / "vae" / "config.json").read_text(encoding="utf-8"))
            side: int = int(unet["sample_size"]) * 2 ** (len(vae["block_out_channels"]) - 1)
            return side
        if path.suffix.lower() == ".safetensors" and path.is_file():
            return detect(read_header(path), path.name).family.size
    except (OSError, ValueError, KeyError, TypeError, UsageError):
        return None
    return None


def check_shapes(shapes: dict[str, list[int]], name: str, config: Path) -> None:
    """The UNet's input channels, first width and cross-attention width must be those of the
    config folder it will be built from; otherwise diffusers fails deep inside with a size error."""
    unet = json.loads((config / "unet" / "config.json").read_text())
    conv_in = shapes.get(UNET + "input_blocks.0.0.weight", [0, 0, 0, 0])
    context = next((s[1] for k, s in shapes.items() if _CROSS_ATTENTION.fullmatch(k)), None)
    found = (conv_in[0], conv_in[1], context)
    wanted = (unet["block_out_channels"][0], unet["in_channels"], unet["cross_attention_dim"])
    if found != wanted:
        raise UsageError(
            f"{name}: its shapes match no family: the UNet has width {found[0]}, {found[1]} input channels and "
            f"cross-attention {found[2]}, but the config {config.name} expects {wanted[0]}, {wanted[1]} and {wanted[2]}",
            "set `family:` (or `config:`) on its entry to the model it is, or check that the file is whole",
        )


def bytes_to_unicode() -> dict[int, str]:
    """CLIP's (and GPT-2's) reversible byte-to-character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def clip_tokenizer(pad_token: str = "<|endoftext|>") -> Any:
    """CLIP's tokenizer (49,408 tokens), built from the shipped merges as CLIP builds its
    vocabulary: every byte, every byte ending a word, every merge, then the two special tokens."""
    import gzip

    from transformers import CLIPTokenizer

    lines = gzip.decompress((CONFIGS / "clip_merges.txt.gz").read_bytes()).decode("utf-8").splitlines()
    base = list(bytes_to_unicode().values())
    words = base + [v + "</w>" for v in base] + ["".join(m.split()) for m in lines]
    vocab = {t: i for i, t in enumerate([*words, "<|startoftext|>", "<|endoftext|>"])}
    merges = [tuple(m.split()) for m in lines]
    return CLIPTokenizer(vocab=vocab, merges=merges, pad_token=pad_token, model_max_length=77)
