"""The requests that travel through the program, and the one pure step between them.

A `LineRequest` is what one typed line asks for: possibly many images (`-n`, sweeps,
variations), written to some folder, with some intermediates. `expand()` turns it into
`ImageRequest`s, each with a concrete seed and a resolved init image: all the engine ever sees,
and exactly what each PNG stores.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from invoke_shell.line import extras
from invoke_shell.line.switches import BY_NAME, Outcrop, Variations

_NEGATIVE = re.compile(r"\[([^\[\]]*)\]")
SweepAxis = tuple[str, tuple[Any, ...]]


class _Prompted:
    prompt: str
    init_img: str | None

    @property
    def positive(self) -> str:
        """The text the model reads: no [negative] parts, no LoRA tags."""
        return extras.without_loras(_NEGATIVE.sub(" ", self.prompt))

    @property
    def negative(self) -> str:
        parts = (extras.without_loras(p) for p in _NEGATIVE.findall(self.prompt))
        return ", ".join(p for p in parts if p)

    @property
    def loras(self) -> tuple[extras.Lora, ...]:
        """The LoRAs the prompt names (<lora:NAME:W>, withLora(NAME, W)), with their weights."""
        return extras.loras(self.prompt)

    @property
    def lora_active(self) -> bool:
        """A LoRA acts on this prompt (named at a weight other than 0): it may have taught the
        model words its vocabulary lacks, so those are kept."""
        return any(weight for _, weight in self.loras)

    @property
    def kind(self) -> str:
        return "img2img" if self.init_img else "txt2img"


@dataclass(frozen=True)
class ImageRequest(_Prompted):
    """One image: every value concrete. Field names are the switch table's."""

    prompt: str  # as typed, [negative parts] included
    steps: int
    cfg_scale: float
    sampler: str
    width: int
    height: int
    seed: int
    init_img: str | None = None  # a file path (recalls such as -I -1 are resolved before this exists)
    strength: float = BY_NAME["strength"].default
    exact_steps: bool = False
    with_variations: Variations = ()  # ((seed, weight), ...) blended into the seed's noise in order
    resize_mode: str = "just"  # how the init image becomes width x height
    init_mask: str | None = None  # a file path: white is repainted
    invert_mask: bool = False
    mask_blur: int = BY_NAME["mask_blur"].default
    outcrop: Outcrop = ()  # ((side, pixels), ...): the canvas grows, only the new strips are painted
    hires_fix: bool = False  # width x height is the first pass; hires_size() the final picture
    hires_scale: float = BY_NAME["hires_scale"].default
    hires_strength: float = BY_NAME["hires_strength"].default
    hires_upscaler: str = BY_NAME["hires_upscaler"].default
    upscale: tuple[float, ...] = ()  # -U SCALE [STRENGTH]: a second pass of its own scale and strength
    # not switches: set when the prompt came from a template ({red|blue}, __name__); stored in
    # sd-metadata only, so the image's own command stays the one that makes this image
    prompt_template: str | None = None
    template_line: str | None = None  # the whole line, template and all, for !fetch --template
    lora_hashes: tuple[tuple[str, str], ...] = ()  # (name, short sha256) of each LoRA file the prompt named

    def with_(self, **changes: Any) -> ImageRequest:
        return replace(self, **changes)


@dataclass(frozen=True)
class LineRequest(_Prompted):
    """One typed line. Built by the parser with every field set from the line or the defaults."""

    prompt: str
    steps: int
    cfg_scale: float
    sampler: str
    width: int
    height: int
    seed: int | None  # None: random; negative: recall an earlier image's seed
    init_img: str | None  # a path, or a recall: -1, -2 ..., last
    strength: float
    exact_steps: bool
    with_variations: Variations
    iterations: int
    variation_amount: float
    grid: bool
    max_prompts: int
    random_prompts: int | None
    vary_seed: bool
    log_tokenization: bool
    preview: bool
    save_intermediates: int | None
    intermediates_decode: str
    outdir: str | None
    resize_mode: str = "just"
    fit: bool = False  # resolved into width and height before expand()
    init_mask: str | None = None
    invert_mask: bool = False
    mask_blur: int = BY_NAME["mask_blur"].default
    outcrop: Outcrop = ()
    hires_fix: bool = False
    hires_scale: float = BY_NAME["hires_scale"].default
    hires_strength: float = BY_NAME["hires_strength"].default
    hires_upscaler: str = BY_NAME["hires_upscaler"].default
    upscale: tuple[float, ...] = ()
    sweep: tuple[SweepAxis, ...] = ()  # up to two (switch, values) axes: rows, columns

    def with_(self, **changes: Any) -> LineRequest:
        return replace(self, **changes)


def round8(x: float) -> int:
    """A side in pixels on the latent grid: the nearest multiple of 8, at least 8."""
    return max(8, int(round(x / 8)) * 8)


def hires_size(req: ImageRequest | LineRequest) -> tuple[int, int] | None:
    """The size of the refining pass of --hires_fix or -U (width x height times the scale, on
    the latent grid), or None when the request has no second pass."""
    if not req.hires_fix and not req.upscale:
        return None
    scale = req.upscale[0] if req.upscale else req.hires_scale
    return round8(req.width * scale), round8(req.height * scale)


def upscales_init(req: ImageRequest | LineRequest) -> bool:
    """-U with -I (and no --hires_fix): the init image itself is upscaled and refined, nothing
    drawn first. Without -I, or with --hires_fix, -U refines the picture the line draws (InvokeAI's -U)."""
    return bool(req.upscale and req.init_img and not req.hires_fix)


def hires_strength(req: ImageRequest | LineRequest) -> float:
    """-U SCALE STRENGTH's own strength, else --hires_strength."""
    return req.upscale[1] if len(req.upscale) > 1 else req.hires_strength


@dataclass(frozen=True)
class ShellCommand:
    """A `!name args` line."""

    name: str
    args: str


_IMAGE_FIELDS = tuple(f.name for f in fields(ImageRequest) if f.name in BY_NAME or f.name == "prompt")


def expand(
    line: LineRequest,
    first_seed: int,
    init_img: str | None,
    new_seed: Callable[[], int],
    prompts: Sequence[str] = (),
    template_line: str | None = None,
) -> list[ImageRequest]:
    """One ImageRequest per image the line makes, each complete enough to be stored and replayed alone.

    `init_img` is the line's init image with any recall resolved; `new_seed` draws the seeds that
    variations blend in (the only randomness, passed in so that this stays a pure function).
    `prompts` are the expansions of a prompt template: each makes the images the line would make
    for one prompt (same seeds, or with `vary_seed` the seeds that follow), in this order.
    """
    images = _one_prompt(line, first_seed, init_img, new_seed)
    if not prompts:
        return images
    stride = line.iterations if not line.sweep and not line.variation_amount else 1
    return [
        im.with_(
            prompt=prompt,
            seed=(im.seed + k * stride) % 2**32 if line.vary_seed else im.seed,
            prompt_template=line.prompt,
            template_line=template_line,
        )
        for k, prompt in enumerate(prompts)
        for im in images
    ]


def _one_prompt(
    line: LineRequest, first_seed: int, init_img: str | None, new_seed: Callable[[], int]
) -> list[ImageRequest]:
    values = {name: getattr(line, name) for name in _IMAGE_FIELDS}
    base = ImageRequest(**{**values, "seed": first_seed, "init_img": init_img})
    if line.sweep:  # same seed, one image per value (or pair of values)
        names = [name for name, _ in line.sweep]
        images = [
            base.with_(**dict(zip(names, combo, strict=True)))
            for combo in itertools.product(*[values for _, values in line.sweep])
        ]
    elif line.variation_amount > 0:  # one seed, each image blending in another seed's noise
        images = [
            base.with_(with_variations=(*line.with_variations, (new_seed(), line.variation_amount)))
            for _ in range(line.iterations)
        ]
    else:
        images = [base.with_(seed=(first_seed + i) % 2**32) for i in range(line.iterations)]
    if init_img is None:  # meaningless without an init image: keep the stored command clean
        images = [im.with_(strength=BY_NAME["strength"].default, exact_steps=False) for im in images]
    return images
