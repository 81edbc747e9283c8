"""The one table of switches.

Every switch a prompt line accepts is declared here once: long name (also the request field),
short form, type, bounds, default and help. The parser, `!help`, tab completion and the
command string written into each PNG all read this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SAMPLER_NAMES = (
    "k_lms", "k_euler", "k_euler_a", "k_heun", "k_dpm_2", "k_dpm_2_a", "ddim", "plms",
    "dpmpp_2m", "dpmpp_2m_karras", "dpmpp_sde", "unipc",
)


@dataclass(frozen=True)
class Switch:
    name: str  # request field; the long form is --name
    short: str | None  # one letter, the short form is -x
    kind: type  # int, float or str
    help: str
    default: Any = None  # None: taken from the model's entry or decided at run time
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None
    aliases: tuple[str, ...] = ()  # other long forms
    in_command: bool = True  # written back into the stored command
    complete: str | None = None  # what tab completion offers: "path", "sampler", "seed"
    metavar: str = "N"
    sweep: bool = False  # accepts a comma list: one image per value, with a labelled sheet

    @property
    def flags(self) -> str:
        long = f"--{self.name}"
        return f"-{self.short}, {long}" if self.short else f"    {long}"

    def describe_range(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.low is not None and self.high is not None:
            return f"between {_num(self.low)} and {_num(self.high)}"
        if self.low is not None:
            return f"at least {_num(self.low)}"
        return ""


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


SWITCHES: tuple[Switch, ...] = (
    Switch("steps", "s", int, "number of sampler steps (img2img runs int(steps x strength) of them)",
           low=1, high=1000, sweep=True),
    Switch("seed", "S", int, "seed of the noise; -1 reuses the previous image's seed, -2 the one before",
           low=-1000, high=2**32 - 1, complete="seed"),
    Switch("width", "W", int, "image width in pixels, a multiple of 8", low=8, high=4096),
    Switch("height", "H", int, "image height in pixels, a multiple of 8", low=8, high=4096),
    Switch("cfg_scale", "C", float, "classifier-free guidance scale: how strongly to follow the prompt",
           low=0.0, high=50.0, metavar="X", sweep=True),
    Switch("sampler", "A", str, "sampler (scheduler) to use", choices=SAMPLER_NAMES,
           aliases=("sampler_name",), complete="sampler", metavar="NAME", sweep=True),
    Switch("init_img", "I", str, "init image for img2img: a PNG/JPEG path, or -1 (or last) for the previous image, -2 ...",
           aliases=("init_image",), complete="path", metavar="PATH"),
    Switch("strength", "f", float, "img2img strength: 0 keeps the init image, 1 redraws it",
           default=0.75, low=0.0, high=1.0, metavar="X", sweep=True),
    Switch("exact_steps", None, bool, "img2img: -s is the number of steps actually run, at any strength "
           "(20 at -f 0.4 runs a 50-step schedule from step 30)", default=False, metavar=""),
    Switch("iterations", "n", int, "how many images to make (seeds seed, seed+1, ...)",
           default=1, low=1, high=1000, in_command=False),
    Switch("variation_amount", "v", float, "with -n: variations of one seed's image, each blending this much "
           "of another seed's noise", default=0.0, low=0.0, high=1.0, in_command=False, metavar="X"),
    Switch("with_variations", "V", str, "reproduce a variation chain: seed:weight,seed:weight (as stored in the PNG)",
           metavar="CHAIN"),
    Switch("log_tokenization", "t", bool, "print how the prompt was tokenised: each token, its weight, the chunks",
           default=False, in_command=False, metavar=""),
    Switch("preview", None, bool, "in a terminal: draw the predicted image in the toolbar while it denoises",
           default=False, in_command=False, metavar=""),
    Switch("grid", "g", bool, "with -n: also write one grid picture of all the images", default=False,
           in_command=False, metavar=""),
    Switch("save_intermediates", None, int, "save every Nth step's latents and previews (and always the last)",
           low=1, high=1000, in_command=False),
    Switch("intermediates_decode", None, str, "how step previews are made: approx (fast linear map) or vae (exact)",
           default="approx", choices=("approx", "vae"), in_command=False, metavar="HOW"),
    Switch("outdir", "o", str, "folder for this line's images (default: the launch --outdir)",
           in_command=False, complete="path", metavar="DIR"),
)

BY_NAME = {s.name: s for s in SWITCHES}
BY_SHORT = {s.short: s for s in SWITCHES if s.short}
BY_LONG = {alias: s for s in SWITCHES for alias in (s.name, *s.aliases)}

# Values every model has unless its entry in models.yaml says otherwise.
MODEL_DEFAULTS: dict[str, Any] = {
    "steps": 50, "cfg_scale": 7.5, "sampler": "k_lms", "width": 512, "height": 512,
}


def help_text() -> str:
    lines = ["Switches (after the prompt; text in [brackets] is the negative prompt;",
             "-s, -C, -A and -f also take comma lists, e.g. -f 0.2,0.4,0.6, for a labelled sweep):"]
    for s in SWITCHES:
        meta = f" {s.metavar}" if s.metavar else ""
        rng = s.describe_range()
        extra = f" ({rng})" if rng and not s.choices else ""
        lines.append(f"  {s.flags + meta:<28} {s.help}{extra}")
        if s.choices:
            lines.append(f"  {'':<28} {', '.join(s.choices)}")
    return "\n".join(lines)
