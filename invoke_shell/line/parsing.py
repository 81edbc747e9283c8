"""Pure parsing: a typed line in, a LineRequest or ShellCommand out, and back again.

    "a red circle [blurry]" -s10 -S 42 -W64 -H 64 --cfg_scale=7.5 -A k_lms

The prompt comes first, quoted or bare; switches follow, each in short form (value glued or
separate) or long form (`--name value` or `--name=value`). Everything is checked against the
switch table; a mistake raises UsageError naming the switch and the fix. `format_request`
writes any request back so that `parse_line(format_request(r)) == r`.
"""

from __future__ import annotations

import math
import re
import shlex
import unicodedata
from collections.abc import Mapping
from typing import Any

from invoke_shell.errors import CONTROL, UsageError, did_you_mean, named, quoted
from invoke_shell.line import extras, templates
from invoke_shell.line.requests import ImageRequest, LineRequest, ShellCommand
from invoke_shell.line.switches import BY_LONG, BY_SHORT, SWITCHES, Switch, defaults
from invoke_shell.schedulers import schedule_length

QUIT = {"q", "quit", "exit"}  # words that leave the shell
HELP_WORDS = {"help", "?", "h"}  # typed alone they ask for !help, not for a picture of the word
_SWITCH_START = re.compile(r"(?:^|\s)(--?[A-Za-z])")
_HELP = re.compile(r"(?:^|\s)(?:-h|--help)(?:\s|$)")
_BACKSLASHES_BEFORE = {q: re.compile(r"(\\*)(" + q + r"|$)") for q in "\"'"}
# Word processors and phones turn - and -- into these; "—s 5" is a switch typed by a person.
_TYPOGRAPHIC_DASH = re.compile(r"(?:^|\s)([\u2010-\u2015\u2212\ufe58\ufe63\uff0d]{1,2})([A-Za-z_]+)")
MAX_IMAGES = int(BY_LONG["iterations"].high or 1000)  # -n's cap holds for sweeps too
MAX_PROMPT = 2000  # characters; the model reads about 75 words per chunk, so more is a paste gone wrong


def parse_line(
    line: str, model_defaults: Mapping[str, Any], notes: list[str] | None = None
) -> LineRequest | ShellCommand | None:
    """Parse one line. `model_defaults` fills what the line leaves out (the model's entry).
    `notes` collects what the user should hear about an accepted line (a switch given twice)."""
    line = line.strip()
    _check_characters(line)
    if not line or line.startswith("#"):
        return None
    if line.startswith("!"):
        name, _, args = line[1:].partition(" ")
        return ShellCommand(name.strip(), args.strip())
    if line.lower() in HELP_WORDS:
        return ShellCommand("help", "")
    prompt, rest = _split_prompt(line)
    if _HELP.search(rest) or _HELP.fullmatch(line):
        return ShellCommand("help", "")
    _check_dashes(line)
    if len(prompt) > MAX_PROMPT:
        raise UsageError(
            f"the prompt is {len(prompt):,} characters; the longest this shell takes is {MAX_PROMPT:,}",
            "shorten it: the model reads about 75 words at a time",
        )
    values = parse_switches(rest, notes)
    request = build_line(prompt, values, model_defaults)
    if notes is None:
        return request
    if request.grid and request.iterations == 1 and not request.sweep:
        notes.append("-g/--grid makes a grid of a line's images; this line makes one, so there is no grid")
    if "intermediates_decode" in values and not request.save_intermediates:
        notes.append(
            f"{BY_LONG['intermediates_decode'].shown} sets how the step files of --save_intermediates N are "
            "drawn; this line saves none, so it is not used"
        )
    if not (request.init_img or request.hires_fix or request.upscale):  # accepted: a recalled line may carry them
        notes += [
            f"{BY_LONG[name].shown} sets how an init image (-I) is redrawn; this line has none, so it is not used"
            for name in ("strength", "exact_steps")
            if name in values
        ]
    return request


def _check_characters(line: str) -> None:
    """Control characters (a stray escape, a NUL from a binary paste) and bytes that were not
    UTF-8 never reach a prompt, a file name or a PNG chunk."""
    m = CONTROL.search(line)
    if m is None:
        return
    c, column = m.group(), m.start() + 1
    if unicodedata.category(c) == "Cs":  # how Python keeps an undecodable byte
        raise UsageError(
            f"the line is not valid UTF-8 (byte {ord(c) - 0xDC00:#04x} at column {column})",
            "save the file or terminal as UTF-8 and type the line again",
        )
    raise UsageError(
        f"the line holds a control character {c!r} at column {column}",
        "type the line again without it (a paste can carry invisible characters)",
    )


def _check_dashes(line: str) -> None:
    """A typographic dash before a switch name is refused, never made prompt text."""
    for m in _TYPOGRAPHIC_DASH.finditer(line):
        dashes, word = m.groups()
        sw = BY_LONG.get(word) if len(word) > 1 else BY_SHORT.get(word)
        if sw is not None:
            typed = dashes + word
            raise UsageError(
                f"{typed!r} starts with a typographic dash ({unicodedata.name(dashes[0]).lower()}), not '-'",
                f"write {'-' + word if len(word) == 1 else '--' + word} (a plain hyphen-minus); "
                "editors often turn - and -- into dashes",
            )


def build_line(prompt: str, values: dict[str, Any], model_defaults: Mapping[str, Any]) -> LineRequest:
    """A LineRequest from a prompt and converted switch values (typed, or read from a PNG),
    the rest from the model's defaults; the checks that involve several switches."""
    values = dict(values)
    sweep = tuple((name, v) for name, v in values.items() if isinstance(v, tuple) and BY_LONG[name].sweep)
    if len(sweep) > 2:
        raise UsageError(
            f"{len(sweep)} comma lists on one line; a sweep has at most two (rows x columns)",
            "keep two lists, e.g. -f 0.2,0.5,0.8 -C 3,7.5",
        )
    values.update({name: v[0] for name, v in sweep})
    if sweep and values.get("iterations", 1) > 1:
        raise UsageError("a sweep and -n together are ambiguous", "use a sweep (comma list) or -n, not both")
    if not prompt.strip():
        raise UsageError("the line has no prompt", 'type the prompt first, e.g. "a red circle" -s 25')
    if prompt.count("[") != prompt.count("]"):
        raise UsageError("unbalanced [ ] in the prompt", "close the negative prompt: a cat [blurry]")
    extras.loras(prompt)  # a LoRA tag with a bad weight is refused here, before the line queues
    if templates.is_template(prompt):
        templates.check_syntax(prompt)
    else:
        for name in ("max_prompts", "random_prompts", "vary_seed"):
            if name in values:
                raise UsageError(
                    f"{BY_LONG[name].shown} works on a prompt template, and this prompt has no {{…}} or __name__",
                    "write the choices in braces, e.g. a {red|blue} circle, or leave out " + BY_LONG[name].shown,
                )
    fields = defaults()
    fields.update({k: v for k, v in model_defaults.items() if k in fields})
    fields.update(values)
    _check_init_switches(values, fields)
    if (fields["variation_amount"] or fields["with_variations"]) and fields["init_img"]:
        raise UsageError("variations work on txt2img images only", "leave out -I, or leave out -v/-V")
    strengths = dict(sweep).get("strength", (fields["strength"],))  # every image's, a sweep's too
    if len(strengths) > 1 and not (fields["init_img"] or fields["hires_fix"] or fields["upscale"]):
        typed = ",".join(BY_LONG["strength"].text(v) for v in strengths)
        raise UsageError(
            f"-f {typed} sweeps how an init image is redrawn, and this line has none: its images would all be the same",
            "add -I FILE (or -I -1, the image just made), or leave out the comma list",
        )
    if fields["exact_steps"] and fields["init_img"]:
        if 0 in strengths:
            raise UsageError(
                "--exact_steps at strength 0: no step can run", "give -f above 0, or leave out --exact_steps"
            )
        for steps in dict(sweep).get("steps", (fields["steps"],)):
            for strength in strengths:
                schedule_length(steps, strength, exact=True)  # refuses what no model can schedule
    images = math.prod(len(values) for _, values in sweep)
    if images > MAX_IMAGES:
        raise UsageError(
            f"the sweep makes {images:,} images; one line makes at most {MAX_IMAGES:,}",
            "shorten the comma lists, or split the sweep over several lines",
        )
    for dim in ("width", "height"):
        if fields[dim] % 8:
            s = fields[dim]
            raise UsageError(f"--{dim} must be a multiple of 8, got {s}", f"use {s - s % 8} or {s - s % 8 + 8}")
    line = LineRequest(prompt=" ".join(prompt.split()), sweep=sweep, **fields)
    if not line.positive.strip():  # only [a negative] or a LoRA tag: as empty as no prompt at all
        raise UsageError(
            "the line has no prompt, only a [negative] or a LoRA tag",
            'type what to draw first, e.g. "a red circle [blurry]"',
        )
    return line


_INIT_ONLY = ("fit", "resize_mode", "init_mask", "invert_mask", "mask_blur", "outcrop")
_HIRES_ONLY = ("hires_scale", "hires_strength", "hires_upscaler")


def _check_init_switches(typed: Mapping[str, Any], fields: Mapping[str, Any]) -> None:
    """Switches that shape an init image mean nothing without one, and some exclude each other."""
    for name in _INIT_ONLY:
        if name in typed and not fields["init_img"]:
            raise UsageError(
                f"{BY_LONG[name].shown} works on an init image, and the line has no -I",
                f"add -I PATH (or -I -1 for the last image), or leave out {BY_LONG[name].shown}",
            )
    if "invert_mask" in typed and not fields["init_mask"]:
        raise UsageError("--invert_mask inverts a mask, and the line has no -M", "add -M MASK.png")
    for name in _HIRES_ONLY:
        if name in typed and not fields["hires_fix"] and not fields["upscale"]:
            raise UsageError(
                f"{BY_LONG[name].shown} sets the refining pass of --hires_fix or -U, and the line has neither",
                "add --hires_fix (draw, then upscale) or -U SCALE with -I (upscale the init image)",
            )
    alone = fields["upscale"] and fields["init_img"] and not fields["hires_fix"]  # -U upscales the init itself
    if alone and (fields["outcrop"] or fields["init_mask"]):
        other = "--outcrop" if fields["outcrop"] else "-M"
        raise UsageError(
            f"-U with -I upscales the init image as it is; it does not combine with {other}",
            f"make the picture with {other} first, then upscale it: -I -1 -U 2",
        )
    if fields["fit"] and fields["resize_mode"] != "just":
        raise UsageError(
            f"--fit keeps the init image's shape, so --resize_mode {fields['resize_mode']} has nothing to do",
            "use one: --fit (the output takes the image's shape) or --resize_mode (the output is -W x -H)",
        )


def _split_prompt(line: str) -> tuple[str, str]:
    quote = line[0]
    if quote in "\"'":
        text, i, backslashes = [], 1, 0
        while i < len(line):  # backslashes count only before the quote (see quote_prompt)
            c = line[i]
            if c == "\\":
                backslashes += 1
            elif c == quote:
                text.append("\\" * (backslashes // 2))
                if backslashes % 2 == 0:
                    return "".join(text), line[i + 1 :]
                text.append(quote)
                backslashes = 0
            else:
                text.append("\\" * backslashes + c)
                backslashes = 0
            i += 1
        raise UsageError(
            f"unbalanced quote {quote} in the prompt", f'close the prompt with {quote}, e.g. "a red circle" -s 25'
        )
    m = _SWITCH_START.search(line)
    if not m:
        return line, ""
    return line[: m.start(1)], line[m.start(1) :]


def parse_switches(text: str, notes: list[str] | None = None) -> dict[str, Any]:
    """Switches alone (also for ! commands that take some), checked against the table. A switch
    given twice takes its last value, as when a recalled command gets " -C 3" appended, and a
    note in `notes` says so."""
    try:
        tokens = shlex.split(text)
    except ValueError:
        raise UsageError(
            "unbalanced quote among the switches", 'quote a path with spaces on both sides: -I "my drawings/fire.png"'
        ) from None
    values: dict[str, Any] = {}
    i = 0
    path: tuple[Switch, str] | None = None  # the path just given: a stray word after it is its rest
    while i < len(tokens):
        tok = tokens[i]
        i += 1
        try:
            sw, glued = _lookup(tok)
        except UsageError as e:
            if path is None or _is_switch(tok) or not (path[1] + tok).isprintable():
                raise
            shown = f'{path[0].flag} "{path[1]} {tok}"'
            raise UsageError(e.message, f"a path with spaces goes in quotes: {shown}") from None
        path = None
        if sw.kind is bool:
            if glued:
                raise UsageError(f"{sw.shown} takes no value, got {quoted(glued)}", f"write {sw.flag} alone")
            values[sw.name] = True
            continue
        typed_apart = glued is None  # `-I my doodle.png`, not `-Imy`
        if glued is None:
            if i >= len(tokens):
                raise UsageError(f"{sw.shown} needs a value", sw.usage())
            glued = tokens[i]
            i += 1
        while sw.words and i < len(tokens) and not _is_switch(tokens[i]):  # --outcrop top 32 left 16
            glued += " " + tokens[i]
            i += 1
        if sw.complete == "path" and typed_apart:
            path = (sw, glued)
        earlier = values.pop(sw.name, None)
        if earlier is not None and notes is not None:
            notes.append(f"{sw.shown} is given twice: the last one is used")
        if sw.sweep and "," in glued:
            parts = [part.strip() for part in glued.split(",")]
            if not all(parts):
                raise UsageError(
                    f"{sw.shown} has an empty item in its comma list {quoted(glued)}",
                    "remove the extra commas: values go between single commas, as in -f 0.2,0.5,0.8",
                )
            items = tuple(convert(sw, part) for part in parts)
            values[sw.name] = items if len(items) > 1 else items[0]
        else:
            values[sw.name] = convert(sw, glued)
    return values


def drop_unknown_switches(line: str) -> tuple[str, list[str]]:
    """`line` without the switches this shell lacks (InvokeAI's -U 2 0.6, --hires_fix), each
    taking the words after it up to the next switch; returns what was dropped, as written.
    For commands read from files: a typed line with an unknown switch is refused instead."""
    line = line.strip()
    try:
        _, rest = _split_prompt(line) if line else ("", "")
        tokens = shlex.split(rest)
    except (UsageError, ValueError):
        return line, []  # the parser names the unbalanced quote
    kept: list[str] = []
    dropped: list[list[str]] = []
    for tok in tokens:
        if _is_switch(tok):
            known = BY_LONG.get(tok[2:].partition("=")[0]) if tok.startswith("--") else BY_SHORT.get(tok[1])
            if known is None:
                dropped.append([tok])
                continue
            dropped.append([])  # a known switch ends the unknown one's values
        if dropped and dropped[-1]:
            dropped[-1].append(tok)
        else:
            kept.append(tok)
    if not any(dropped):
        return line, []
    head = line[: len(line) - len(rest)]
    return f"{head.rstrip()} {shlex.join(kept)}", [" ".join(d) for d in dropped if d]


def _is_switch(tok: str) -> bool:
    return tok.startswith("--") and len(tok) > 2 or tok.startswith("-") and len(tok) >= 2 and tok[1].isalpha()


def _lookup(tok: str) -> tuple[Switch, str | None]:
    if tok.startswith("--"):
        name, eq, value = tok[2:].partition("=")
        sw = BY_LONG.get(name)
        if sw is None:
            guess = did_you_mean(name, BY_LONG)
            raise UsageError(
                f"unknown switch {named('--' + name)}",
                f"did you mean --{guess}?" if guess else "type !help for the list of switches",
            )
        return sw, value if eq else None
    if tok.startswith("-") and len(tok) >= 2 and tok[1].isalpha():
        sw = BY_SHORT.get(tok[1])
        if sw is None:
            other = BY_SHORT.get(tok[1].swapcase())
            hint = (
                f"switches are case-sensitive: did you mean -{other.short} ({other.help})?"
                if other
                else "type !help for the list of switches"
            )
            raise UsageError(f"unknown switch {named('-' + tok[1])}", hint)
        return sw, tok[2:] or None
    raise UsageError(
        f"unexpected {quoted(tok)} after the switches",
        'put the whole prompt first, in quotes if it contains a dash: "a -x b" -s 10',
    )


def convert(sw: Switch, raw: str) -> Any:
    """Turn one switch's text into its typed, range-checked value."""
    value: Any
    if sw.parse is not None:
        return sw.parse(raw)
    if sw.kind is bool:
        if raw.lower() not in ("true", "false"):
            raise UsageError(f"{sw.shown} is on or off, got {quoted(raw)}", "use true or false")
        return raw.lower() == "true"
    if sw.kind is int:
        try:
            value = int(raw)
        except ValueError:
            raise UsageError(f"{sw.shown} expects a whole number, got {quoted(raw)}", sw.usage()) from None
    elif sw.kind is float:
        try:
            value = float(raw)
        except ValueError:
            raise UsageError(f"{sw.shown} expects a number, got {quoted(raw)}", sw.usage()) from None
        if value != value or value in (float("inf"), float("-inf")):
            raise UsageError(f"{sw.shown} expects a finite number, got {quoted(raw)}", sw.usage())
    else:
        value = raw.lower() if sw.choices else raw  # the choices are lower case: -A DDIM is ddim
    if sw.choices and value not in sw.choices:
        guess = did_you_mean(value, sw.choices)
        raise UsageError(
            f"unknown {sw.name} {quoted(value)} for {sw.shown}",
            (f"did you mean {guess}? " if guess else "") + "choose one of " + ", ".join(sw.choices),
        )
    if sw.low is not None and value < sw.low or sw.high is not None and value > sw.high:
        raise UsageError(f"{sw.shown} must be {sw.describe_range()}, got {quoted(raw, 24)[1:-1]}", sw.usage())
    return value


# ---------------------------------------------------------------- writing the command back


def quote_prompt(prompt: str) -> str:
    """The prompt in quotes the parser reads back exactly: double quotes, single where the prompt
    holds only double ones; with both kinds, a backslash before each quote (and before the
    backslashes that precede one, as in Windows command lines)."""
    q = "'" if '"' in prompt and "'" not in prompt else '"'
    if q not in prompt and not prompt.endswith("\\"):
        return q + prompt + q
    escaped = _BACKSLASHES_BEFORE[q].sub(lambda m: m.group(1) * 2 + ("\\" + q if m.group(2) else ""), prompt)
    return q + escaped + q


def format_request(req: LineRequest | ImageRequest) -> str:
    """The command that reproduces `req`, in InvokeAI 2.x's Dream shape:
    "prompt" -s 10 -S 42 -W 64 -H 64 -C 7.5 -A k_lms [-I path -f 0.75]

    Image switches are always written; line switches when they differ from their default;
    a switch that needs another (strength needs an init image) only with it, or when not default."""
    parts = [quote_prompt(req.prompt)]
    swept = dict(getattr(req, "sweep", ()))
    for sw in SWITCHES:
        if not hasattr(req, sw.name) or sw.name in swept:
            continue
        value = getattr(req, sw.name)
        if value is None or value is False or value == ():
            continue
        quiet = sw.scope == "line" or not sw.write_default or (sw.needs and not getattr(req, sw.needs))
        if quiet and value == sw.default:
            continue
        if value is True:
            parts.append(sw.flag)
            continue
        parts.append(_flag_value(sw, (value,)))
    parts += [_flag_value(BY_LONG[name], values) for name, values in swept.items()]  # rows, then columns
    return " ".join(parts)


def _flag_value(sw: Switch, values: tuple[Any, ...]) -> str:
    text = ",".join(sw.text(v) for v in values)
    return f"{sw.flag} {shlex.quote(text) if sw.kind is str and not sw.words else text}"
