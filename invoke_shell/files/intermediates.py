"""Per-step intermediates as pictures: x_t and x0 previews, a contact sheet, an animation.

What each file is called and where it goes is the output layer's (outputs.write_intermediates):

<outdir>/img-samples/intermediates/NNNNNN.SEED/
    step_000.safetensors   (img2img only: the noised init image, what the model sees)
    step_005.safetensors   latents (exactly as diffusers' callback exposes them) + denoised x0
    step_005.xt.png        preview of the latents at that step
    step_005.x0.png        preview of the clean image the model predicted at that step
    contact_sheet.png      every saved step: x_t above x0, labelled with step, timestep, sigma
    steps.gif              the saved steps as an animation (x_t | x0)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw

from invoke_shell.files.sheets import labelled_sheet

if TYPE_CHECKING:
    from invoke_shell.engines.generate import StepState

Frame = tuple["StepState", Image.Image, Image.Image | None]  # a step, its x_t picture, its x0 picture
Render = Callable[["StepState"], tuple[Image.Image, Image.Image | None]]


def approx_render(previewer: Callable[..., Image.Image]) -> Render:
    """x_t and x0 pictures through the model's fast previewer (its decoder, or the linear map)."""

    def render(s: StepState) -> tuple[Image.Image, Image.Image | None]:
        return previewer(s.latents * s.preview_scale), previewer(s.denoised) if s.denoised is not None else None

    return render


def chosen(s: StepState, every: int, include_start: bool) -> bool:
    """Whether step `s` is saved: every N-th step and the last one, and the start (the noised
    init image an img2img run begins from) when asked."""
    if s.step == 0:
        return include_start
    return s.step % every == 0 or s.step == s.total


def label(s: StepState) -> str:
    return f"step {s.step}/{s.total}\nt={s.timestep:.0f}\nsigma={s.sigma:.3f}"


def contact_sheet(frames: Sequence[Frame], min_tile: int = 96) -> Image.Image:
    return labelled_sheet(
        [[xt for _, xt, _ in frames], [x0 for _, _, x0 in frames]],
        [label(s) for s, _, _ in frames],
        ["x_t", "x0"],
        min_tile=min_tile,
    )


def animation_frame(frame: Frame) -> Image.Image:
    """x_t beside x0 under a caption, quantized for the GIF."""
    s, xt, x0 = frame
    w, h = xt.size
    f = Image.new("RGB", (2 * w, h + 12), (255, 255, 255))
    f.paste(xt, (0, 12))
    if x0 is not None:
        f.paste(x0, (w, 12))
    ImageDraw.Draw(f).text((2, 0), f"step {s.step}  sigma {s.sigma:.2f}", fill=(0, 0, 0))
    return f.quantize(256, method=Image.Quantize.FASTOCTREE)  # GIF's default quantizer is 20x slower
