"""Reading the command back out of a PNG: this shell's and InvokeAI's `Dream`, InvokeAI's
`sd-metadata` JSON, or AUTOMATIC1111's `parameters` text (converted to this shell's switches)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from invoke_shell.errors import UsageError
from invoke_shell.parsing import quote_prompt
from invoke_shell.schedulers import A1111_TO_SAMPLER, SAMPLERS

# AUTOMATIC1111's own pattern for `key: value` pairs on the settings line
_A1111_PARAM = re.compile(r'\s*([\w ]+):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')


@dataclass
class Fetched:
    command: str
    source: str  # which chunk it came from
    notes: list[str] = field(default_factory=list)  # what had no equivalent


def read_chunks(path: Path) -> dict[str, str]:
    try:
        with Image.open(path) as im:
            return dict(getattr(im, "text", {}) or {})
    except (UnidentifiedImageError, OSError):
        raise UsageError(f"{path} is not an image Pillow can read", "give a PNG written by a generator") from None


def fetch(path: Path) -> Fetched:
    chunks = read_chunks(path)
    if chunks.get("Dream"):
        return Fetched(chunks["Dream"].strip(), "Dream")
    if chunks.get("sd-metadata"):
        return from_invokeai_json(chunks["sd-metadata"])
    if chunks.get("parameters"):
        return from_a1111(chunks["parameters"])
    raise UsageError(f"{path} carries no generation metadata (no Dream, sd-metadata or parameters chunk)",
                     "it was not written by invoke-shell, InvokeAI or AUTOMATIC1111, or its text chunks were stripped")


def _command(prompt: str, negative: str, switches: list[tuple[str, object]]) -> str:
    text = prompt + (f" [{negative}]" if negative else "")
    parts = [quote_prompt(text)] + [f"{flag} {value}" for flag, value in switches if value not in (None, "")]
    return " ".join(parts)


def from_invokeai_json(raw: str) -> Fetched:
    try:
        meta = json.loads(raw)
        image = meta["image"]
    except (ValueError, KeyError, TypeError):
        raise UsageError("the sd-metadata chunk is not InvokeAI JSON", "the file may be damaged") from None
    prompts = image.get("prompt")
    if isinstance(prompts, list):
        prompt = " ".join(p["prompt"] if p.get("weight", 1) == 1 else f"{p['prompt']}:{p['weight']}" for p in prompts)
    else:
        prompt = str(prompts or "")
    notes = []
    sampler = image.get("sampler")
    if sampler and sampler not in SAMPLERS:
        notes.append(f"sampler {sampler} has no equivalent here; left out")
        sampler = None
    switches: list[tuple[str, object]] = [("-s", image.get("steps")), ("-S", image.get("seed")),
                                          ("-W", image.get("width")), ("-H", image.get("height")),
                                          ("-C", image.get("cfg_scale")), ("-A", sampler)]
    if image.get("type") == "img2img" or image.get("init_image_path"):
        switches += [("-I", image.get("init_image_path")), ("-f", image.get("strength"))]
    variations = image.get("variations") or []
    if variations:
        switches.append(("-V", ",".join(f"{v['seed']}:{v['weight']}" for v in variations)))
    return Fetched(_command(prompt, "", switches), "sd-metadata", notes)


def from_a1111(raw: str) -> Fetched:
    lines = raw.strip().split("\n")
    settings = lines[-1] if _A1111_PARAM.findall(lines[-1]) and "Steps:" in lines[-1] else ""
    body = lines[:-1] if settings else lines
    prompt_lines, negative_lines, in_negative = [], [], False
    for line in body:
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line.removeprefix("Negative prompt:").strip()
        (negative_lines if in_negative else prompt_lines).append(line)
    params = {k.strip(): v.strip().strip('"') for k, v in _A1111_PARAM.findall(settings)}
    notes: list[str] = []
    sampler_name = params.pop("Sampler", None)
    schedule = params.pop("Schedule type", None)
    if sampler_name and schedule == "Karras" and f"{sampler_name} Karras" in A1111_TO_SAMPLER:
        sampler_name = f"{sampler_name} Karras"
    elif schedule and schedule not in ("Automatic",):
        notes.append(f"Schedule type: {schedule} has no equivalent here")
    sampler = A1111_TO_SAMPLER.get(sampler_name) if sampler_name else None
    if sampler_name and sampler is None:
        notes.append(f"Sampler: {sampler_name} has no equivalent here; left out")
    width = height = None
    if "Size" in params:
        w, _, h = params.pop("Size").partition("x")
        width, height = (int(w), int(h)) if w.isdigit() and h.isdigit() else (None, None)
    switches: list[tuple[str, object]] = [("-s", params.pop("Steps", None)), ("-S", params.pop("Seed", None)),
                                          ("-W", width), ("-H", height), ("-C", params.pop("CFG scale", None)),
                                          ("-A", sampler)]
    strength = params.pop("Denoising strength", None)
    if strength is not None:
        switches.append(("-f", strength))
        notes.append("Denoising strength given but no init image path: add -I PATH")
    params.pop("Model hash", None)
    if "Model" in params:
        notes.append(f"Model: {params.pop('Model')} (use !switch if you have it)")
    notes += [f"{k}: {v} has no equivalent here" for k, v in params.items()]
    return Fetched(_command("\n".join(prompt_lines).strip(), "\n".join(negative_lines).strip(), switches),
                   "parameters", notes)
