"""The one table of switches.

Every fact about a switch lives on its `Switch`: long name (also the request field), short
form, type, bounds, default, help, example, what tab completion offers, whether it belongs to
one image or to the whole line, and its parse/format hooks. The parser, `!help`, tab
completion, models.yaml validation, `!fetch` and the command written into each PNG all read it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from invoke_shell.errors import UsageError, did_you_mean, quoted
from invoke_shell.schedulers import SAMPLERS

Scope = Literal["image", "line"]


@dataclass(frozen=True)
class Switch:
    name: str  # request field; the long form is --name
    short: str | None  # one letter, the short form is -x
    kind: type  # int, float, str or bool
    help: str
    example: str  # a value shown in hints: "e.g. -s 25"
    default: Any = None  # None: decided at run time (a random seed, no init image)
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None
    aliases: tuple[str, ...] = ()  # other long forms
    scope: Scope = "image"  # image: stored in every PNG; line: how the line runs, written when not default
    needs: str | None = None  # a field without which this switch means nothing (strength needs init_img)
    complete: str | None = None  # what tab completion offers: "path", "sampler", "seed"
    metavar: str = "N"
    sweep: bool = False  # accepts a comma list: one image per value, with a labelled sheet
    parse: Callable[[str], Any] | None = None  # text -> value, for values that are not one number or word
    format: Callable[[Any], str] | None = None  # value -> text, the inverse of parse
    model_default: bool = False  # may be set per model in models.yaml
    words: bool = False  # takes the words after it up to the next switch (--outcrop top 32 left 16)
    write_default: bool = True  # an image switch written into every command even at its default

    @property
    def flag(self) -> str:
        """The spelling written back: the short form where there is one."""
        return f"-{self.short}" if self.short else f"--{self.name}"

    @property
    def flags(self) -> str:
        return f"-{self.short}, --{self.name}" if self.short else f"    --{self.name}"

    @property
    def shown(self) -> str:
        """How messages name the switch: -s/--steps."""
        return f"-{self.short}/--{self.name}" if self.short else f"--{self.name}"

    def usage(self) -> str:
        return f"e.g. {self.flag} {self.example}".rstrip()

    def describe_range(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.low is not None and self.high is not None:
            return f"between {_num(self.low)} and {_num(self.high)}"
        if self.low is not None:
            return f"at least {_num(self.low)}"
        return ""

    def text(self, value: Any) -> str:
        """One value as it is written in a command."""
        if self.format is not None:
            return self.format(value)
        return repr(value) if isinstance(value, float) else str(value)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


Variations = tuple[tuple[int, float], ...]


def parse_variations(raw: str) -> Variations:
    """`seed:weight,seed:weight` -> ((seed, weight), ...), checked."""
    chain = []
    for part in raw.split(","):
        seed, colon, weight = part.strip().partition(":")
        try:
            pair: tuple[int, float] | None = (int(seed), float(weight))
        except ValueError:
            pair = None
        if not colon or pair is None or not 0 <= pair[0] < 2**32 or not 0 <= pair[1] <= 1:
            raise UsageError(
                f"-V/--with_variations expects seed:weight pairs, got {quoted(part.strip())}",
                "e.g. -V 1234:0.2,5678:0.1 (seeds 0..4294967295, weights 0..1)",
            )
        chain.append(pair)
    return tuple(chain)


def format_variations(chain: Variations) -> str:
    return ",".join(f"{seed}:{weight!r}" for seed, weight in chain)


RESIZE_MODES = ("just", "crop", "fill")
SIDES = ("top", "bottom", "left", "right")
Outcrop = tuple[tuple[str, int], ...]


def parse_outcrop(raw: str) -> Outcrop:
    """`top 32 left 16` -> (("top", 32), ("left", 16)), checked: known sides, each once, 8..1024 px."""
    words = raw.split()
    hint = "e.g. --outcrop top 32 left 16 (sides: top, bottom, left, right; pixels 8 to 1024)"
    if not words or len(words) % 2:
        raise UsageError(f"--outcrop expects side and pixel pairs, got {quoted(raw)}", hint)
    pairs: list[tuple[str, int]] = []
    for side, px in zip(words[::2], words[1::2], strict=True):
        if side not in SIDES:
            guess = did_you_mean(side, SIDES)
            raise UsageError(
                f"--outcrop has no side {quoted(side)}",
                (f"did you mean {guess}? " if guess else "") + "the sides are top, bottom, left, right",
            )
        if not px.isdigit() or not 8 <= int(px) <= 1024:
            raise UsageError(f"--outcrop {side} needs pixels from 8 to 1024, got {quoted(px)}", hint)
        if side in dict(pairs):
            raise UsageError(f"--outcrop names {side} twice", hint)
        pairs.append((side, int(px)))
    return tuple(pairs)


def format_outcrop(pairs: Outcrop) -> str:
    return " ".join(f"{side} {px}" for side, px in pairs)


def parse_upscale(raw: str) -> tuple[float, ...]:
    """`2` or `2 0.6` (InvokeAI's -U SCALE STRENGTH) -> (2.0,) or (2.0, 0.6), checked."""
    words = raw.split()
    hint = "e.g. -U 2 (twice the size) or -U 2 0.4 (and refine at strength 0.4)"
    try:
        values = tuple(float(w) for w in words)
    except ValueError:
        values = ()
    if not 1 <= len(values) <= 2 or any(v != v for v in values):
        raise UsageError(f"-U/--upscale expects SCALE [STRENGTH], got {quoted(raw)}", hint)
    if not 1 < values[0] <= 8:
        raise UsageError(f"-U/--upscale SCALE must be above 1 and at most 8, got {quoted(words[0])}", hint)
    if len(values) == 2 and not 0 <= values[1] <= 1:
        raise UsageError(f"-U/--upscale STRENGTH must be between 0 and 1, got {quoted(words[1])}", hint)
    return values


def format_upscale(values: tuple[float, ...]) -> str:
    return " ".join(repr(v) for v in values)


SWITCHES: tuple[Switch, ...] = (
    Switch(
        "steps",
        "s",
        int,
        "number of sampler steps (img2img runs int(steps x strength) of them)",
        "25",
        default=50,
        low=1,
        high=1000,
        sweep=True,
        model_default=True,
    ),
    Switch(
        "seed",
        "S",
        int,
        "seed of the noise; -1 reuses the previous image's seed, -2 the one before",
        "42",
        low=-1000,
        high=2**32 - 1,
        complete="seed",
    ),
    Switch(
        "width",
        "W",
        int,
        "image width in pixels, a multiple of 8",
        "512",
        default=512,
        low=8,
        high=4096,
        model_default=True,
    ),
    Switch(
        "height",
        "H",
        int,
        "image height in pixels, a multiple of 8",
        "512",
        default=512,
        low=8,
        high=4096,
        model_default=True,
    ),
    Switch(
        "cfg_scale",
        "C",
        float,
        "classifier-free guidance scale: how strongly to follow the prompt",
        "7.5",
        default=7.5,
        low=0.0,
        high=50.0,
        metavar="X",
        sweep=True,
        model_default=True,
    ),
    Switch(
        "sampler",
        "A",
        str,
        "sampler (scheduler) to use",
        "k_lms",
        default="k_lms",
        choices=tuple(SAMPLERS),
        aliases=("sampler_name",),
        complete="sampler",
        metavar="NAME",
        sweep=True,
        model_default=True,
    ),
    Switch(
        "init_img",
        "I",
        str,
        "init image for img2img: a PNG/JPEG path, or -1 (or last) for the previous image, -2 ...",
        "drawing.png",
        aliases=("init_image",),
        complete="path",
        metavar="PATH",
    ),
    Switch(
        "strength",
        "f",
        float,
        "img2img strength: 0 keeps the init image, 1 redraws it",
        "0.75",
        default=0.75,
        low=0.0,
        high=1.0,
        metavar="X",
        sweep=True,
        needs="init_img",
        model_default=True,
    ),
    Switch(
        "exact_steps",
        None,
        bool,
        "img2img: -s is the number of steps actually run, at any strength "
        "(20 at -f 0.4 runs a 50-step schedule from step 30)",
        "",
        default=False,
        metavar="",
        needs="init_img",
    ),
    Switch(
        "resize_mode",
        None,
        str,
        "how an init image of another shape becomes -W x -H: just (stretch), crop (cut to fill), "
        "fill (fit inside, border filled from the image's edge)",
        "crop",
        default="just",
        choices=RESIZE_MODES,
        needs="init_img",
        metavar="MODE",
        write_default=False,
    ),
    Switch(
        "fit",
        None,
        bool,
        "scale the init image to fit inside -W x -H keeping its aspect ratio; the output takes that size",
        "",
        default=False,
        scope="line",  # resolved into -W/-H: each PNG stores the size it was made at
        needs="init_img",
        metavar="",
    ),
    Switch(
        "init_mask",
        "M",
        str,
        "inpaint: a mask picture, white where the init image is repainted (black kept)",
        "mask.png",
        aliases=("mask",),
        needs="init_img",
        complete="path",
        metavar="PATH",
    ),
    Switch(
        "invert_mask",
        None,
        bool,
        "with -M: repaint where the mask is black instead",
        "",
        default=False,
        needs="init_mask",
        metavar="",
    ),
    Switch(
        "mask_blur",
        None,
        int,
        "inpaint: blur the seam between kept and repainted pixels over this many pixels (0: a hard edge)",
        "4",
        default=4,
        low=0,
        high=64,
        needs="init_img",
        metavar="PX",
        write_default=False,
    ),
    Switch(
        "outcrop",
        None,
        str,
        "grow the init image's canvas and paint only the new strips: side pixels ... (top bottom left right)",
        "top 32 left 16",
        default=(),
        needs="init_img",
        metavar="SIDE PX",
        parse=parse_outcrop,
        format=format_outcrop,
        words=True,
    ),
    Switch(
        "hires_fix",
        None,
        bool,
        "draw at -W x -H, upscale by --hires_scale and refine with img2img at --hires_strength",
        "",
        default=False,
        metavar="",
    ),
    Switch(
        "hires_scale",
        None,
        float,
        "--hires_fix and -U: how much larger the final picture is than -W x -H",
        "2",
        default=2.0,
        low=1.0,
        high=8.0,
        metavar="X",
        write_default=False,
    ),
    Switch(
        "hires_strength",
        None,
        float,
        "--hires_fix and -U: img2img strength of the refining pass at the larger size",
        "0.5",
        default=0.5,
        low=0.0,
        high=1.0,
        metavar="X",
        write_default=False,
    ),
    Switch(
        "hires_upscaler",
        None,
        str,
        "--hires_fix and -U: upscale pixels with Lanczos, or the latents (bilinear)",
        "latent",
        default="lanczos",
        choices=("lanczos", "latent"),
        metavar="HOW",
        write_default=False,
    ),
    Switch(
        "upscale",
        "U",
        str,
        "upscale by SCALE and refine with img2img (at STRENGTH, else --hires_strength): with -I alone the "
        "init image itself, otherwise the picture the line draws",
        "2 0.5",
        default=(),
        metavar="SCALE [STRENGTH]",
        parse=parse_upscale,
        format=format_upscale,
        words=True,
    ),
    Switch(
        "with_variations",
        "V",
        str,
        "reproduce a variation chain: seed:weight,seed:weight (as stored in the PNG)",
        "1234:0.2",
        default=(),
        metavar="CHAIN",
        parse=parse_variations,
        format=format_variations,
    ),
    Switch(
        "iterations",
        "n",
        int,
        "how many images to make (seeds seed, seed+1, ...)",
        "4",
        default=1,
        low=1,
        high=1000,
        scope="line",
    ),
    Switch(
        "variation_amount",
        "v",
        float,
        "with -n: variations of one seed's image, each blending this much of another seed's noise",
        "0.2",
        default=0.0,
        low=0.0,
        high=1.0,
        scope="line",
        metavar="X",
    ),
    Switch(
        "grid",
        "g",
        bool,
        "with -n: also write one grid picture of all the images",
        "",
        default=False,
        scope="line",
        metavar="",
    ),
    Switch(
        "max_prompts",
        None,
        int,
        "a prompt template ({red|blue}, __name__) may make at most this many prompts",
        "200",
        default=100,
        low=1,
        high=1000,
        scope="line",
    ),
    Switch(
        "random_prompts",
        None,
        int,
        "a prompt template: draw N of its prompts with the line's seed, instead of all of them",
        "8",
        low=1,
        high=1000,
        scope="line",
    ),
    Switch(
        "vary_seed",
        None,
        bool,
        "a prompt template: each prompt gets the next seed, instead of all the same seed",
        "",
        default=False,
        scope="line",
        metavar="",
    ),
    Switch(
        "log_tokenization",
        "t",
        bool,
        "print how the prompt was tokenised: each token, its weight, the chunks",
        "",
        default=False,
        scope="line",
        metavar="",
    ),
    Switch(
        "preview",
        None,
        bool,
        "in a terminal: draw the predicted image in the toolbar while it denoises",
        "",
        default=False,
        scope="line",
        metavar="",
    ),
    Switch(
        "save_intermediates",
        None,
        int,
        "save every Nth step's latents and previews (and always the last)",
        "1",
        low=1,
        high=1000,
        scope="line",
    ),
    Switch(
        "intermediates_decode",
        None,
        str,
        "how step previews are made: approx (fast: the model's own preview decoder, or a linear map) or vae (exact)",
        "vae",
        default="approx",
        choices=("approx", "vae"),
        scope="line",
        metavar="HOW",
    ),
    Switch(
        "outdir",
        "o",
        str,
        "folder for this line's images (default: the launch --outdir)",
        "outputs/tries",
        scope="line",
        complete="path",
        metavar="DIR",
    ),
)

BY_NAME = {s.name: s for s in SWITCHES}
BY_SHORT = {s.short: s for s in SWITCHES if s.short}
BY_LONG = {alias: s for s in SWITCHES for alias in (s.name, *s.aliases)}


def defaults() -> dict[str, Any]:
    """Every switch's own default: what a model entry that sets nothing gets."""
    return {s.name: s.default for s in SWITCHES}


def model_defaults(entry_values: dict[str, Any]) -> dict[str, Any]:
    """The switch defaults a model runs with: the table's, overridden by its models.yaml entry."""
    return {**{s.name: s.default for s in SWITCHES if s.model_default}, **entry_values}


def help_text(defaults: Mapping[str, Any] | None = None, model: str = "") -> str:
    """The switch table; `defaults` (a model's, from the registry) name the values a line gets
    when it leaves a per-model switch out, so tiny-shapes shows ddim, not Stable Diffusion's k_lms."""
    lines = [
        "Switches (after the prompt; text in [brackets] is the negative prompt;",
        "-s, -C, -A and -f also take comma lists, e.g. -f 0.2,0.4,0.6, for a labelled sweep;",
        "a prompt template makes one image per prompt: a {red|blue} circle, a __colors__ square):",
    ]
    for s in SWITCHES:
        meta = f" {s.metavar}" if s.metavar else ""
        rng = s.describe_range()
        extra = f" ({rng})" if rng and not s.choices else ""
        if defaults is not None and s.name in defaults:
            extra += f" [default {s.text(defaults[s.name])}" + (f" for {model}]" if model else "]")
        lines.append(f"  {s.flags + meta:<28} {s.help}{extra}")
        if s.choices:
            lines.append(f"  {'':<28} {', '.join(s.choices)}")
    return "\n".join(lines)
