"""The one request object that travels from the parser to the engines and the outputs."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

_NEGATIVE = re.compile(r"\[([^\[\]]*)\]")


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str  # as typed, [negative parts] included
    steps: int
    cfg_scale: float
    sampler: str
    width: int
    height: int
    seed: int | None = None  # None: random; negative: recall an earlier image's seed
    iterations: int = 1
    init_img: str | None = None
    strength: float = 0.75
    variation_amount: float = 0.0
    with_variations: tuple[tuple[int, float], ...] | None = None  # ((seed, weight), ...) blended in order
    log_tokenization: bool = False
    preview: bool = False
    grid: bool = False
    exact_steps: bool = False
    save_intermediates: int | None = None
    intermediates_decode: str = "approx"
    outdir: str | None = None
    sweep: tuple[tuple[str, tuple], ...] = ()  # up to two (switch, values) axes: rows, columns

    @property
    def positive(self) -> str:
        return " ".join(_NEGATIVE.sub(" ", self.prompt).split())

    @property
    def negative(self) -> str:
        return ", ".join(p.strip() for p in _NEGATIVE.findall(self.prompt) if p.strip())

    @property
    def kind(self) -> str:
        return "img2img" if self.init_img else "txt2img"

    def with_(self, **changes) -> GenerationRequest:
        return replace(self, **changes)


@dataclass(frozen=True)
class ShellCommand:
    """A `!name args` line."""

    name: str
    args: str
