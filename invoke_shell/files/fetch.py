"""Reading the command back out of a PNG: this shell's and InvokeAI's `Dream`, InvokeAI's
`sd-metadata` JSON, or AUTOMATIC1111's `parameters` text.

A PNG is foreign input. A `Dream` command goes through the parser itself (switches this shell
lacks, such as InvokeAI's -U, are left out with a note); every value of the other two through
its switch's converter, refusing the file when one does not fit, so no value can carry another
switch. The command is written by the one formatter and read back by the parser, so what
`!fetch` puts at the prompt is always a line the parser accepts. Nothing read from a file is
printed unescaped.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import PngImagePlugin

from invoke_shell.errors import UsageError, escaped
from invoke_shell.files.inputs import BROKEN, failure, open_image
from invoke_shell.files.outputs import SHEET_KEY
from invoke_shell.line.parsing import build_line, convert, drop_unknown_switches, format_request, parse_line
from invoke_shell.line.requests import LineRequest
from invoke_shell.line.switches import BY_NAME, SWITCHES
from invoke_shell.schedulers import A1111_TO_SAMPLER, SAMPLERS

KEYS = ("Dream", "sd-metadata", "parameters")
MAX_CHUNK = 64 * 1024  # characters: real metadata is a few KB; more is damage or an attack
NOTES = 12  # notes shown at most: a settings line can name thousands of keys
LISTED = 300  # characters of a command shown in a listing; !fetch of one file gives it whole
# AUTOMATIC1111's pattern for `key: value` pairs on the settings line, anchored at a comma and with
# a key starting with a letter, so that it runs in linear time (its own takes minutes on 64 KB of spaces)
_A1111_PARAM = re.compile(r'(?:^|(?<=,))\s*(\w[\w ]*):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')
_REDO = "the file was damaged or edited: type the command yourself"


@dataclass
class Fetched:
    request: LineRequest
    source: str  # which chunk it came from
    notes: list[str] = field(default_factory=list)  # what had no equivalent, printable

    @property
    def command(self) -> str:
        return format_request(self.request)


def read_chunks(path: Path) -> dict[str, str]:
    """The metadata chunks, compressed ones (zTXt, compressed iTXt) too: Pillow inflates each only
    up to PngImagePlugin.MAX_TEXT_CHUNK (1 MB), so a compressed bomb is refused there."""
    name = escaped(str(path))
    try:
        with open_image(path) as im:
            text = im.info  # the chunks before the pixels, read with the header
            if not any(k in text for k in KEYS) and isinstance(im, PngImagePlugin.PngImageFile):
                text = im.text  # chunks after the pixels are found only by decoding them
            chunks = {k: text[k] for k in (*KEYS, SHEET_KEY) if isinstance(text.get(k), str)}
    except BROKEN as e:
        raise failure(e, path, name) from None
    for key, value in chunks.items():
        if len(value) > MAX_CHUNK:
            raise UsageError(
                f"{name}: its {key} chunk is {len(value):,} characters, more than the {MAX_CHUNK:,} metadata takes",
                _REDO,
            )
    return chunks


def fetch(path: Path, model_defaults: Mapping[str, Any], chunks: dict[str, str] | None = None) -> Fetched:
    """The command stored in `path` (its `chunks` when already read); a UsageError naming the
    file when there is none to trust."""
    name = escaped(str(path))
    chunks = read_chunks(path) if chunks is None else chunks
    refused = ""
    # a sheet or grid of ours records its whole line: its sweeps, -n and -g come back with it
    dream = functools.partial(_from_dream, whole_line=True) if SHEET_KEY in chunks else _from_dream
    for key, read in (("Dream", dream), ("sd-metadata", from_invokeai_json), ("parameters", from_a1111)):
        if not chunks.get(key):
            continue
        try:
            got = _checked(read(chunks[key], model_defaults), model_defaults)
        except UsageError as e:
            if key != "Dream":
                raise UsageError(f"{name}: {escaped(e.message, 300)}", e.hint) from None
            refused = escaped(e.message, 200)
            continue
        if refused:
            got.notes.insert(0, f"{refused}; the command is from {key} instead")
        return _saved_mask(path, got)
    if refused:
        raise UsageError(f"{name}: {refused}", _REDO)
    raise UsageError(
        f"{name} carries no generation metadata (no Dream, sd-metadata or parameters chunk)",
        "it was not written by invoke-shell, InvokeAI or AUTOMATIC1111, or its text chunks were stripped",
    )


def fetch_template(path: Path, model_defaults: Mapping[str, Any]) -> Fetched:
    """`!fetch --template`: the whole line, template and all, that made one of its images."""
    name = escaped(str(path))
    chunks = read_chunks(path)
    if SHEET_KEY in chunks:  # a template's sheet (or any sheet) already carries its whole line
        return fetch(path, model_defaults, chunks)
    raw = chunks.get("sd-metadata")
    try:
        line = json.loads(raw)["image"].get("template_line") if raw else None
    except (ValueError, KeyError, TypeError, AttributeError):
        line = None
    if not isinstance(line, str):
        raise UsageError(
            f"{name} was not made from a prompt template",
            "!fetch it without --template: its command makes this image",
        )
    return _checked(_from_dream(line, model_defaults, whole_line=True), model_defaults)


def _saved_mask(path: Path, got: Fetched) -> Fetched:
    """An inpainted image's -M is replayed from the mask saved beside it (the repainted region
    exactly as used, already inverted and sized), so a moved or edited mask file does not matter."""
    saved = path.with_name(path.name.removesuffix(".png") + ".mask.png")
    if got.request.init_mask is None or not saved.is_file():
        return got
    line = got.request.with_(init_mask=str(saved), invert_mask=False)
    note = f"-M: the mask saved beside it, {escaped(saved.name)}"
    return Fetched(line, got.source, [*got.notes, note])


def listing(paths: Iterable[Path], model_defaults: Mapping[str, Any]) -> Iterator[str]:
    """One line per file of a folder or glob: its command, or the one message why there is none."""
    for path in paths:
        try:
            yield f"{escaped(str(path))}: {escaped(fetch(path, model_defaults).command, LISTED)}"
        except UsageError as e:
            yield e.message


def _checked(got: Fetched, model_defaults: Mapping[str, Any]) -> Fetched:
    """The command as the parser reads it back, so it holds nothing the parser would refuse;
    control characters never reach the prompt buffer."""
    command = got.command
    _no_controls(command, got.source)
    if got.request.seed is not None and got.request.seed < 0:  # -S -1 here recalls an image of this session
        raise UsageError(
            f"its {got.source} chunk has seed {got.request.seed}, not a seed an image was made with", _REDO
        )
    try:
        line = parse_line(command, model_defaults)
    except UsageError as e:
        raise UsageError(f"its {got.source} chunk does not make a command: {e.message}", _REDO) from None
    if not isinstance(line, LineRequest):  # cannot happen: format_request writes a prompt first
        raise UsageError(f"its {got.source} chunk does not make a command", _REDO)
    notes = [escaped(n, 200) for n in got.notes[:NOTES]]
    if len(got.notes) > NOTES:
        notes.append(f"and {len(got.notes) - NOTES:,} more settings with no equivalent here")
    return Fetched(line, got.source, notes)


def _no_controls(text: str, source: str) -> None:
    bad = next((c for c in text if unicodedata.category(c) in ("Cc", "Cs")), None)
    if bad is not None:
        raise UsageError(f"its {source} chunk holds a control character {bad!r}", _REDO)


def _from_dream(text: str, model_defaults: Mapping[str, Any], whole_line: bool = False) -> Fetched:
    # InvokeAI writes switches this shell lacks (-U 2 0.6, -G 0.5, --hires_fix): the rest still holds
    text, unknown = drop_unknown_switches(text)
    try:
        line = parse_line(text, model_defaults)
    except UsageError as e:
        raise UsageError(f"its Dream command does not parse here: {e.message}", _REDO) from None
    if not isinstance(line, LineRequest):
        raise UsageError("its Dream command is not a generation command", _REDO)
    # a PNG records one image: switches of a whole line (-o, -n, sweeps ...) are left out, so a
    # file cannot choose where the next images go; a template's whole line keeps all but -o
    extra = {
        sw.name: sw.default
        for sw in SWITCHES
        if sw.scope == "line" and getattr(line, sw.name) != sw.default and (not whole_line or sw.name == "outdir")
    }
    why = "a file does not choose where images go" if whole_line else "a PNG records one image"
    notes = [f"its Dream command also sets {BY_NAME[n].shown}; left out ({why})" for n in extra]
    if unknown:
        notes.append(f"left out: {', '.join(unknown)} (this shell has no such switches)")
    if line.sweep and not whole_line:
        swept = ", ".join(BY_NAME[n].shown for n, _ in line.sweep)
        notes.append(f"its Dream command sweeps {swept}; only the first value is kept")
        extra["sweep"] = ()
    return Fetched(line.with_(**extra), "Dream", notes)


def _request(
    prompt: str,
    negative: str,
    raw: dict[str, tuple[str, Any]],
    model_defaults: Mapping[str, Any],
    source: str,
    notes: list[str],
) -> Fetched:
    """Convert each foreign value (`switch name: (its key in the file, value)`) as if typed; one
    that does not fit refuses the file, naming its key."""
    values = {}
    for name, (key, value) in raw.items():
        if value is None or value == "" or value == []:
            continue
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise UsageError(f"its {source} {key} is not a value: {escaped(repr(value), 40)}", _REDO)
        try:
            values[name] = convert(BY_NAME[name], str(value))
        except UsageError as e:
            raise UsageError(f"its {source} {key} is unusable: {e.message}", _REDO) from None
    text = prompt + (f" [{negative}]" if negative else "")
    _no_controls(" ".join(text.split()), source)  # before the parser's checks: the clearer message
    try:
        line = build_line(text, values, model_defaults)
    except UsageError as e:
        raise UsageError(f"its {source} chunk does not make a command: {e.message}", _REDO) from None
    return Fetched(line, source, notes)


def _text(value: Any, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise UsageError(f"its sd-metadata {what} is not text: {escaped(repr(value), 40)}", _REDO)
    return value


def _prompt(value: Any) -> str:
    """InvokeAI's prompt: text, or a list of {prompt, weight} blended as `text:weight`."""
    if not isinstance(value, list):
        return _text(value, "prompt")
    parts = []
    for p in value:
        weight = p.get("weight", 1) if isinstance(p, dict) else None
        if not isinstance(p, dict) or isinstance(weight, bool) or not isinstance(weight, int | float):
            raise UsageError(f"its sd-metadata prompt list holds {escaped(repr(p), 40)}", _REDO)
        text = _text(p.get("prompt"), "prompt")
        parts.append(text if weight == 1 else f"{text}:{weight}")
    return " ".join(parts)


def _variations(value: Any) -> str | None:
    """seed:weight pairs from numbers only, so no text of the file enters the chain."""
    if not value:
        return None
    pairs = []
    for v in value if isinstance(value, list) else [value]:
        seed, weight = (v.get("seed"), v.get("weight")) if isinstance(v, dict) else (None, None)
        numbers = isinstance(seed, int) and isinstance(weight, int | float)
        if not numbers or isinstance(seed, bool) or isinstance(weight, bool):
            raise UsageError(f"its sd-metadata variations hold {escaped(repr(v), 40)}", _REDO)
        pairs.append(f"{seed}:{weight}")
    return ",".join(pairs)


def from_invokeai_json(raw: str, model_defaults: Mapping[str, Any]) -> Fetched:
    try:
        meta = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: arrays nested thousands deep
        raise UsageError("its sd-metadata chunk is not JSON", _REDO) from None
    image = meta.get("image") if isinstance(meta, dict) else None
    if not isinstance(image, dict):
        raise UsageError("its sd-metadata chunk is JSON but not InvokeAI's (no image record)", _REDO)
    notes: list[str] = []
    sampler = _text(image.get("sampler"), "sampler")
    if sampler and sampler not in SAMPLERS:
        notes.append(f"sampler {escaped(sampler, 40)} has no equivalent here; left out")
        sampler = ""
    values: dict[str, tuple[str, Any]] = {
        name: (name, image.get(name)) for name in ("steps", "seed", "width", "height", "cfg_scale")
    }
    values["sampler"] = ("sampler", sampler)
    if image.get("type") == "img2img" or image.get("init_image_path"):
        values["init_img"] = ("init_image_path", image.get("init_image_path"))
        values["strength"] = ("strength", image.get("strength"))
        values["init_mask"] = ("init_mask", image.get("init_mask"))  # InvokeAI 2.x's key, and ours
    values["with_variations"] = ("variations", _variations(image.get("variations")))
    negative = _text(image.get("negative_prompt"), "negative_prompt")
    return _request(_prompt(image.get("prompt")), negative, values, model_defaults, "sd-metadata", notes)


def from_a1111(raw: str, model_defaults: Mapping[str, Any]) -> Fetched:
    lines = raw.strip().split("\n")
    settings = lines[-1] if _A1111_PARAM.findall(lines[-1]) and "Steps:" in lines[-1] else ""
    body = lines[:-1] if settings else lines
    prompt_lines: list[str] = []
    negative_lines: list[str] = []
    in_negative = False
    for line in body:
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line.removeprefix("Negative prompt:").strip()
        (negative_lines if in_negative else prompt_lines).append(line)
    params = {k.strip(): v.strip().strip('"') for k, v in _A1111_PARAM.findall(settings)}
    notes: list[str] = []
    sampler_name = params.pop("Sampler", None)
    schedule = params.pop("Schedule type", None)
    if sampler_name and schedule == "Karras" and f"{sampler_name} Karras" in A1111_TO_SAMPLER:
        sampler_name = f"{sampler_name} Karras"
    elif schedule and schedule not in ("Automatic",):
        notes.append(f"Schedule type: {schedule} has no equivalent here")
    sampler = A1111_TO_SAMPLER.get(sampler_name) if sampler_name else None
    if sampler_name and sampler is None:
        notes.append(f"Sampler: {sampler_name} has no equivalent here; left out")
    width = height = None
    if "Size" in params:
        width, _, height = params.pop("Size").partition("x")
    values: dict[str, tuple[str, Any]] = {
        "steps": ("Steps", params.pop("Steps", None)),
        "seed": ("Seed", params.pop("Seed", None)),
        "width": ("Size", width),
        "height": ("Size", height),
        "cfg_scale": ("CFG scale", params.pop("CFG scale", None)),
        "sampler": ("Sampler", sampler),
    }
    strength = params.pop("Denoising strength", None)
    if "Hires upscale" in params:  # txt2img's hires pass: its strength is the Denoising strength
        values["hires_fix"] = ("Hires upscale", "true")
        values["hires_scale"] = ("Hires upscale", params.pop("Hires upscale"))
        upscaler = params.pop("Hires upscaler", "")
        if upscaler.lower() in ("lanczos", "latent"):
            values["hires_upscaler"] = ("Hires upscaler", upscaler.lower())
        elif upscaler:
            notes.append(f"Hires upscaler: {upscaler} has no equivalent here; Lanczos is used")
        if strength is not None:
            values["hires_strength"] = ("Denoising strength", strength)
    elif strength is not None:
        values["strength"] = ("Denoising strength", strength)
        notes.append("Denoising strength given but no init image path: add -I PATH")
    params.pop("Model hash", None)
    if "Model" in params:
        notes.append(f"Model: {params.pop('Model')} (use !switch if you have it)")
    notes += [f"{k}: {v} has no equivalent here" for k, v in params.items()]
    return _request(
        "\n".join(prompt_lines).strip(), "\n".join(negative_lines).strip(), values, model_defaults, "parameters", notes
    )
