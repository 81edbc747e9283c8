"""Per-step intermediates as pictures: x_t and x0 previews, a contact sheet, an animation.

Writing them, beside the generation, is step_files.py's job:

<outdir>/img-samples/intermediates/NNNNNN.SEED/
    step_000.safetensors   (img2img only: the noised init image, what the model sees)
    step_005.safetensors   latents (exactly as diffusers' callback exposes them) + denoised x0
    step_005.xt.png        preview of the latents at that step
    step_005.x0.png        preview of the clean image the model predicted at that step
    contact_sheet.png      every saved step: x_t above x0, labelled with step, timestep, sigma
    steps.gif              the saved steps as an animation (x_t | x0)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import Image

from invoke_shell.files.sheets import col_labels_height, draw_row_labels, drawing, labelled_sheet, row_labels_width

if TYPE_CHECKING:
    from invoke_shell.engines.generate import StepState


@dataclass(frozen=True)
class StepInfo:
    """What a step's files and labels say about it (StepState without its tensors)."""

    step: int
    total: int
    timestep: float
    sigma: float
    preview_scale: float

    @classmethod
    def of(cls, s: StepState) -> StepInfo:
        return cls(s.step, s.total, s.timestep, s.sigma, s.preview_scale)


Frame = tuple[StepInfo, Image.Image, Image.Image | None]  # a step, its x_t picture, its x0 picture


def chosen(s: StepState, every: int, include_start: bool) -> bool:
    """Whether step `s` is saved: every N-th step and the last one, and the start (the noised
    init image an img2img run begins from) when asked."""
    if s.step == 0:
        return include_start
    return s.step % every == 0 or s.step == s.total


def label(s: StepInfo) -> str:
    return f"step {s.step}/{s.total}\nt={s.timestep:.0f}\nsigma={s.sigma:.3f}"


LABEL_TOP = col_labels_height([label(StepInfo(0, 0, 0.0, 0.0, 1.0))])  # every label has its three lines


ROWS = ("x_t", "x0")
# Previews wider than this are reduced by a whole factor in the contact sheet and the GIF (the
# step PNGs keep their size): 26 steps of 512-px tiles made a sheet 13,312 px wide that took a
# second to encode, longer than the image on a GPU.
MAX_TILE = 256


def reduced(frame: Frame) -> Frame:
    s, xt, x0 = frame
    if xt.width <= MAX_TILE:
        return frame
    factor = -(-xt.width // MAX_TILE)
    return s, xt.reduce(factor), x0.reduce(factor) if x0 is not None else None


def sheet_column(frame: Frame, min_tile: int = 96) -> Image.Image:
    """One step's labelled column of the contact sheet: made as the step comes, so that the
    finished sheet is only pastes (and the row labels, drawn once)."""
    s, xt, x0 = reduced(frame)
    return labelled_sheet([[xt], [x0]], [label(s)], min_tile=min_tile)


BAND = 32  # steps side by side: longer runs wrap, so 150 steps make 5 bands, not a sheet 19,221 px wide


def contact_sheet(columns: Sequence[Image.Image]) -> Image.Image:
    """The steps' columns side by side, x_t above x0, in bands of at most BAND steps: within a
    band, `labelled_sheet` of its frames, pixel for pixel (a step's label is narrower than its tile)."""
    left, tile, band = row_labels_width(ROWS), columns[0].width, columns[0].height
    bands = [columns[i : i + BAND] for i in range(0, len(columns), BAND)]
    sheet = Image.new("RGB", (left + min(len(columns), BAND) * tile, len(bands) * band), (255, 255, 255))
    for b, steps in enumerate(bands):
        for c, column in enumerate(steps):
            sheet.paste(column, (left + c * tile, b * band))
        draw_row_labels(sheet, ROWS, b * band + LABEL_TOP, (band - LABEL_TOP) // len(ROWS))
    return sheet


def animation_frame(frame: Frame) -> Image.Image:
    """x_t beside x0 under a caption, quantized for the GIF."""
    s, xt, x0 = reduced(frame)
    w, h = xt.size
    f = Image.new("RGB", (2 * w, h + 12), (255, 255, 255))
    f.paste(xt, (0, 12))
    if x0 is not None:
        f.paste(x0, (w, 12))
    drawing(f).text((2, 0), f"step {s.step}  sigma {s.sigma:.2f}", fill=(0, 0, 0))
    return f.quantize(256, method=Image.Quantize.FASTOCTREE)  # GIF's default quantizer is 20x slower
