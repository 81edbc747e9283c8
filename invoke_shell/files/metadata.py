"""The three PNG text chunks other tools already read, built from one request.

- `Dream`: the exact command that reproduces the image (InvokeAI 2.x).
- `sd-metadata`: InvokeAI 2.x's JSON record, plus this shell's own keys beside them.
- `parameters`: AUTOMATIC1111's text block.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from invoke_shell import schedulers
from invoke_shell.line.parsing import format_request
from invoke_shell.line.requests import ImageRequest

APP_ID = "invoke-shell"
try:
    APP_VERSION = version("invoke-shell")
except PackageNotFoundError:  # running from a source tree that was never installed
    APP_VERSION = "0.1.0"


@dataclass(frozen=True)
class ModelInfo:
    """The identity of a loaded model, as every PNG records it."""

    name: str
    path: str
    hash: str  # short sha256 of the weights, AUTOMATIC1111-style (first 10 hex digits)


def sd_metadata(req: ImageRequest, model: ModelInfo, steps_run: int, schedule_steps: int) -> dict[str, Any]:
    image = {
        "prompt": [{"prompt": req.prompt, "weight": 1.0}],
        "steps": req.steps,
        "cfg_scale": req.cfg_scale,
        "seed": req.seed,
        "sampler": req.sampler,
        "width": req.width,
        "height": req.height,
        "type": req.kind,
        "strength": req.strength if req.init_img else None,
        "init_image_path": req.init_img,
        "variations": [{"seed": s, "weight": w} for s, w in req.with_variations],
        "postprocessing": None,
        # this shell's own keys
        "steps_run": steps_run,
        "schedule_steps": schedule_steps,
        "exact_steps": req.exact_steps,
        "negative_prompt": req.negative,
        "command": format_request(req),
    }
    return {
        "model": "stable diffusion",
        "model_weights": model.name,
        "model_hash": model.hash,
        "model_path": model.path,
        "app_id": APP_ID,
        "app_version": APP_VERSION,
        "image": image,
    }


def a1111_parameters(req: ImageRequest, model: ModelInfo) -> str:
    lines = [req.positive]
    if req.negative:
        lines.append(f"Negative prompt: {req.negative}")
    fields = [
        f"Steps: {req.steps}",
        f"Sampler: {schedulers.SAMPLERS[req.sampler].a1111}",
        f"CFG scale: {req.cfg_scale:g}",
        f"Seed: {req.seed}",
        f"Size: {req.width}x{req.height}",
        f"Model hash: {model.hash}",
        f"Model: {model.name}",
    ]
    if req.init_img:
        fields.append(f"Denoising strength: {req.strength:g}")
    lines.append(", ".join(fields))
    return "\n".join(lines)


def png_chunks(req: ImageRequest, model: ModelInfo, steps_run: int, schedule_steps: int) -> dict[str, str]:
    return {
        "Dream": format_request(req),
        "sd-metadata": json.dumps(sd_metadata(req, model, steps_run, schedule_steps)),
        "parameters": a1111_parameters(req, model),
    }
