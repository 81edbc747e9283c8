"""Reading the command back out of a PNG: this shell's and InvokeAI's `Dream`, InvokeAI's
`sd-metadata` JSON, or AUTOMATIC1111's `parameters` text.

Whatever the source, the values go through the switch table's converters into a LineRequest,
and the command is written by the one formatter, so what `!fetch` puts at the prompt is
always a line the parser reads back to the same request.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from invoke_shell.errors import UsageError
from invoke_shell.line.parsing import build_line, convert, format_request, parse_line
from invoke_shell.line.requests import LineRequest
from invoke_shell.line.switches import BY_NAME
from invoke_shell.schedulers import A1111_TO_SAMPLER, SAMPLERS

# AUTOMATIC1111's own pattern for `key: value` pairs on the settings line
_A1111_PARAM = re.compile(r'\s*([\w ]+):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')


@dataclass
class Fetched:
    request: LineRequest
    source: str  # which chunk it came from
    notes: list[str] = field(default_factory=list)  # what had no equivalent

    @property
    def command(self) -> str:
        return format_request(self.request)


def read_chunks(path: Path) -> dict[str, str]:
    try:
        with Image.open(path) as im:
            return dict(getattr(im, "text", {}) or {})
    except (UnidentifiedImageError, OSError):
        raise UsageError(f"{path} is not an image Pillow can read", "give a PNG written by a generator") from None


def fetch(path: Path, model_defaults: Mapping[str, Any]) -> Fetched:
    chunks = read_chunks(path)
    problem = None
    if chunks.get("Dream"):
        try:
            line = parse_line(chunks["Dream"], model_defaults)
        except UsageError as e:
            problem = f"its Dream command does not parse here ({e.message})"
        else:
            if isinstance(line, LineRequest):
                return Fetched(line, "Dream")
            problem = "its Dream chunk holds no prompt"
    if chunks.get("sd-metadata"):
        return from_invokeai_json(chunks["sd-metadata"], model_defaults)
    if chunks.get("parameters"):
        return from_a1111(chunks["parameters"], model_defaults)
    if problem:
        raise UsageError(f"{path}: {problem}", "type the command yourself")
    raise UsageError(
        f"{path} carries no generation metadata (no Dream, sd-metadata or parameters chunk)",
        "it was not written by invoke-shell, InvokeAI or AUTOMATIC1111, or its text chunks were stripped",
    )


def _request(
    prompt: str, negative: str, raw: dict[str, Any], model_defaults: Mapping[str, Any], source: str, notes: list[str]
) -> Fetched:
    """Convert each foreign value as if typed; one that does not fit is left out with a note."""
    values = {}
    for name, value in raw.items():
        if value is None or value == "" or value == []:
            continue
        try:
            values[name] = convert(BY_NAME[name], str(value))
        except UsageError as e:
            notes.append(f"{e.message}; left out")
    text = prompt + (f" [{negative}]" if negative else "")
    return Fetched(build_line(text, values, model_defaults), source, notes)


def from_invokeai_json(raw: str, model_defaults: Mapping[str, Any]) -> Fetched:
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
    notes: list[str] = []
    sampler = image.get("sampler")
    if sampler and sampler not in SAMPLERS:
        notes.append(f"sampler {sampler} has no equivalent here; left out")
        sampler = None
    values = {
        "steps": image.get("steps"),
        "seed": image.get("seed"),
        "width": image.get("width"),
        "height": image.get("height"),
        "cfg_scale": image.get("cfg_scale"),
        "sampler": sampler,
    }
    if image.get("type") == "img2img" or image.get("init_image_path"):
        values.update(init_img=image.get("init_image_path"), strength=image.get("strength"))
    variations = image.get("variations") or []
    if variations:
        values["with_variations"] = ",".join(f"{v['seed']}:{v['weight']}" for v in variations)
    return _request(prompt, str(image.get("negative_prompt") or ""), values, model_defaults, "sd-metadata", notes)


def from_a1111(raw: str, model_defaults: Mapping[str, Any]) -> Fetched:
    lines = raw.strip().split("\n")
    settings = lines[-1] if _A1111_PARAM.findall(lines[-1]) and "Steps:" in lines[-1] else ""
    body = lines[:-1] if settings else lines
    prompt_lines: list[str] = []
    negative_lines: list[str] = []
    in_negative = False
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
        width, _, height = params.pop("Size").partition("x")
    values = {
        "steps": params.pop("Steps", None),
        "seed": params.pop("Seed", None),
        "width": width,
        "height": height,
        "cfg_scale": params.pop("CFG scale", None),
        "sampler": sampler,
    }
    strength = params.pop("Denoising strength", None)
    if strength is not None:
        values["strength"] = strength
        notes.append("Denoising strength given but no init image path: add -I PATH")
    params.pop("Model hash", None)
    if "Model" in params:
        notes.append(f"Model: {params.pop('Model')} (use !switch if you have it)")
    notes += [f"{k}: {v} has no equivalent here" for k, v in params.items()]
    return _request(
        "\n".join(prompt_lines).strip(), "\n".join(negative_lines).strip(), values, model_defaults, "parameters", notes
    )
