"""Cost before work: a line that would run for hours or exhaust memory is refused before it
starts, with the estimate and the flag that allows it; a long one is announced.

Only lines with images larger than four times the model's native pixels are estimated (the
first one times the model once, about a second); at native sizes the toolbar's progress says
enough. Out-of-memory errors while running become one message with what to try.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from invoke_shell.errors import UsageError
from invoke_shell.line.requests import ImageRequest, hires_size, hires_strength, upscales_init
from invoke_shell.schedulers import schedule_length, steps_run


@dataclass(frozen=True)
class Limits:
    max_seconds: float = 1800.0  # --max_seconds: refuse a line estimated to take longer
    max_memory: float | None = None  # --max_memory GB; None: what the device has free
    announce_seconds: float = 60.0  # say how long a line will take when it is longer than this


def note_size(engine: Any, model: str, requests: list[ImageRequest], say: Callable[[str], None]) -> None:
    """Say once per line when it asks for a size the model was not trained at: Stable
    Diffusion models repeat or cut their subjects there, and nothing else would tell you why."""
    native_w, native_h = engine.native_size
    drawn = [r for r in requests if not upscales_init(r)]  # -U -I draws nothing at width x height
    sizes = sorted({(r.width, r.height) for r in drawn} - {(native_w, native_h)})
    if sizes:
        shown = ", ".join(f"{w}x{h}" for w, h in sizes[:3]) + (" ..." if len(sizes) > 3 else "")
        say(f">> {model} was trained at {native_w}x{native_h}; at {shown} expect repeated or cut-off subjects")


def check_cost(engine: Any, requests: list[ImageRequest], limits: Limits, say: Callable[[str], None]) -> None:
    native_w, native_h = engine.native_size
    finals = [hires_size(r) or (r.width, r.height) for r in requests]  # --hires_fix and -U: the larger pass
    if max(w * h for w, h in finals) <= 4 * native_w * native_h:
        return
    images = [(r.width, r.height, _steps(r)) for r in requests if not upscales_init(r)]
    for r, (w, h) in zip(requests, finals, strict=True):
        if hires_size(r) is not None:
            strength = hires_strength(r)
            images.append((w, h, steps_run(schedule_length(r.steps, strength, r.exact_steps), strength)))
    cost = engine.cost(images)
    biggest = max(finals, key=lambda s: s[0] * s[1])
    what = f"{len(requests)} image(s) at {biggest[0]}x{biggest[1]}"
    free = engine.free_memory() if limits.max_memory is None else int(limits.max_memory * 1e9)
    if free is not None and cost.memory > free:
        flag = "--max_memory GB" if limits.max_memory is not None else "--max_memory GB (at your own risk)"
        raise UsageError(
            f"{what} needs about {_gb(cost.memory)} at its peak (UNet {_gb(cost.unet_memory)}, "
            f"VAE decode {_gb(cost.vae_memory)}); {engine.device.type} has {_gb(free)} free",
            f"use a smaller -W/-H, or start invoke-shell with {flag} to allow more",
        )
    if cost.seconds > limits.max_seconds:
        raise UsageError(
            f"{what} would take about {_duration(cost.seconds)} on {engine.device.type}, "
            f"over the {_duration(limits.max_seconds)} limit",
            "use a smaller -W/-H or fewer -s steps, or start invoke-shell with --max_seconds N to allow it",
        )
    if cost.seconds > limits.announce_seconds:
        say(f">> {what}: about {_duration(cost.seconds)} (estimated); Ctrl-C stops it")


def out_of_memory(e: BaseException, req: ImageRequest, device: str) -> UsageError | None:
    """The message for an allocation failure, or None when `e` is something else."""
    text = str(e)
    if type(e).__name__ != "OutOfMemoryError" and not (
        isinstance(e, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)
    ):
        return None
    return UsageError(
        f"out of memory on {device} making a {req.width}x{req.height} image; the model is still loaded",
        "try a smaller -W/-H, fewer images (-n), --precision fp16 on a GPU, or close other programs "
        "(images above 1024x1024 are already decoded in tiles)",
    )


def _steps(r: ImageRequest) -> int:
    strength = r.strength if r.init_img else None
    return steps_run(schedule_length(r.steps, strength, r.exact_steps), strength)


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
