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
from invoke_shell.line.requests import ImageRequest, hires_size, hires_strength

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
    if req.init_mask or req.outcrop:
        image["init_mask"] = req.init_mask  # InvokeAI 2.x's key; the mask used lies beside as NNNNNN.SEED.mask.png
        image["invert_mask"] = req.invert_mask
        image["mask_blur"] = req.mask_blur
        image["outcrop"] = [{"side": side, "pixels": px} for side, px in req.outcrop]
    if req.init_img:
        image["resize_mode"] = req.resize_mode
    larger = hires_size(req)
    if larger is not None:  # the second pass; width and height above are the first
        image["hires_fix"] = req.hires_fix
        image["upscale"] = list(req.upscale)
        image["hires"] = {
            "width": larger[0],
            "height": larger[1],
            "strength": hires_strength(req),
            "upscaler": req.hires_upscaler,
        }
    if req.loras:  # named in the prompt; their files' hashes, as the session read them
        hashes = dict(req.lora_hashes)
        image["loras"] = [{"name": n, "weight": w, "hash": hashes.get(n)} for n, w in req.loras]
    if req.prompt_template is not None:  # the prompt is one expansion of this template
        image["prompt_template"] = req.prompt_template
        image["template_line"] = req.template_line
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
    tags = "".join(f" <lora:{name}:{weight:g}>" for name, weight in req.loras)  # in the prompt, as it writes them
    lines = [req.positive + tags]
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
    larger = hires_size(req)
    if req.init_img or larger is not None:  # txt2img with a hires pass: its strength, as AUTOMATIC1111 writes
        fields.append(f"Denoising strength: {req.strength if req.init_img else hires_strength(req):g}")
    if req.init_mask or req.outcrop:
        fields.append(f"Mask blur: {req.mask_blur}")
    if larger is not None:  # AUTOMATIC1111's own keys for the second pass
        scale = req.upscale[0] if req.upscale else req.hires_scale
        fields += [f"Hires upscale: {scale:g}", f"Hires upscaler: {req.hires_upscaler.capitalize()}"]
    if req.lora_hashes:
        fields.append('Lora hashes: "' + ", ".join(f"{n}: {h}" for n, h in req.lora_hashes) + '"')
    lines.append(", ".join(fields))
    return "\n".join(lines)


def png_chunks(req: ImageRequest, model: ModelInfo, steps_run: int, schedule_steps: int) -> dict[str, str]:
    return {
        "Dream": format_request(req),
        "sd-metadata": json.dumps(sd_metadata(req, model, steps_run, schedule_steps)),
        "parameters": a1111_parameters(req, model),
    }
