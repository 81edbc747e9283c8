"""The requests that travel through the program, and the one pure step between them.

A `LineRequest` is what one typed line asks for: possibly many images (`-n`, sweeps,
variations), written to some folder, with some intermediates. `expand()` turns it into
`ImageRequest`s, each with a concrete seed and a resolved init image: all the engine ever sees,
and exactly what each PNG stores.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any

from invoke_shell.line.switches import BY_NAME, Variations

_NEGATIVE = re.compile(r"\[([^\[\]]*)\]")
SweepAxis = tuple[str, tuple[Any, ...]]


class _Prompted:
    prompt: str
    init_img: str | None

    @property
    def positive(self) -> str:
        return " ".join(_NEGATIVE.sub(" ", self.prompt).split())

    @property
    def negative(self) -> str:
        return ", ".join(p.strip() for p in _NEGATIVE.findall(self.prompt) if p.strip())

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
    log_tokenization: bool
    preview: bool
    save_intermediates: int | None
    intermediates_decode: str
    outdir: str | None
    sweep: tuple[SweepAxis, ...] = ()  # up to two (switch, values) axes: rows, columns

    def with_(self, **changes: Any) -> LineRequest:
        return replace(self, **changes)


@dataclass(frozen=True)
class ShellCommand:
    """A `!name args` line."""

    name: str
    args: str


_IMAGE_FIELDS = tuple(f.name for f in fields(ImageRequest))


def expand(line: LineRequest, first_seed: int, init_img: str | None, new_seed: Callable[[], int]) -> list[ImageRequest]:
    """One ImageRequest per image the line makes, each complete enough to be stored and replayed alone.

    `init_img` is the line's init image with any recall resolved; `new_seed` draws the seeds that
    variations blend in (the only randomness, passed in so that this stays a pure function).
    """
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
