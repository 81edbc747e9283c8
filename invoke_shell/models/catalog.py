"""What `!models` and `!import_model` know of a model without loading it: its family, the
format of its files and their size on disk, from headers and config files alone (milliseconds,
no weights read)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from invoke_shell.errors import UsageError
from invoke_shell.models.families import FAMILIES, detect, read_header
from invoke_shell.models.registry import ModelEntry

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


@dataclass(frozen=True)
class Facts:
    family: str  # a family's label, "?" when the weights are not there, or why it is not known
    format: str  # single file, pickle checkpoint, diffusers folder, Hugging Face cache
    size: int | None  # bytes of weights on disk
    present: bool  # the weights are on this machine


def facts(entry: ModelEntry) -> Facts:
    """Never raises: what cannot be told is said in the field."""
    override = FAMILIES[entry.family].label if entry.family else None
    if entry.repo_id is not None:
        from invoke_shell.models.loader import cached_snapshot

        try:
            folder = cached_snapshot(entry)
        except UsageError:
            return Facts(override or "?", "Hugging Face cache", None, False)
        return Facts(override or folder_family(folder), "Hugging Face cache", _weights_size(folder), True)
    path = entry.path
    pickled = path.suffix.lower() in PICKLE_SUFFIXES
    kind = "pickle checkpoint" if pickled else "single file" if entry.is_single_file else "diffusers folder"
    if not path.exists():
        return Facts(override or "?", kind, None, False)
    if path.is_dir():
        return Facts(override or folder_family(path), kind, _weights_size(path), True)
    family = override or ("?" if pickled else file_family(path))  # a pickle is not opened to be listed
    return Facts(family, kind, path.stat().st_size, True)


def file_family(path: Path) -> str:
    try:
        return detect(read_header(path), path.name).family.label
    except UsageError as e:
        return "not a checkpoint" if "not a safetensors" in e.message or "truncated" in e.message else "unknown"


def folder_family(folder: Path) -> str:
    """From the UNet's config: cross-attention width, input channels, SDXL's added embedding."""
    try:
        unet = json.loads((folder / "unet" / "config.json").read_text())
    except (OSError, ValueError):
        return "not a diffusers folder"
    inpaint = " inpainting" if unet.get("in_channels") == 9 else ""
    if unet.get("addition_embed_type") == "text_time":
        return FAMILIES["sdxl"].label
    context = unet.get("cross_attention_dim")
    for family in FAMILIES.values():
        if family.context == context and "inpaint" not in family.name:
            return family.label + inpaint
    return f"Stable Diffusion 1.x layout ({context}-wide text)"  # e.g. the embedded model


def human_size(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KB", "MB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def _weights_size(folder: Path) -> int:
    return sum(
        p.stat().st_size for p in folder.rglob("*") if p.is_file() and p.suffix in (".safetensors", ".bin", ".ckpt")
    )
