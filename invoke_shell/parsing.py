"""Pure parsing: a typed line in, a GenerationRequest or ShellCommand out, and back again.

    "a red circle [blurry]" -s10 -S 42 -W64 -H 64 --cfg_scale=7.5 -A k_lms

The prompt comes first, quoted or bare; switches follow, each in short form (value glued or
separate) or long form (`--name value` or `--name=value`). Everything is checked against the
switch table in params.py; a mistake raises UsageError naming the switch and the fix.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from typing import Any

from invoke_shell.errors import UsageError, did_you_mean
from invoke_shell.params import BY_LONG, BY_NAME, BY_SHORT, SWITCHES, Switch
from invoke_shell.request import GenerationRequest, ShellCommand

_SWITCH_START = re.compile(r"(?:^|\s)(--?[A-Za-z])")
_HELP = re.compile(r"(?:^|\s)(?:-h|--help)(?:\s|$)")


def parse_line(line: str, defaults: Mapping[str, Any]) -> GenerationRequest | ShellCommand | None:
    """Parse one line. `defaults` fills what the line leaves out (the model's entry)."""
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    if line.startswith("!"):
        name, _, args = line[1:].partition(" ")
        return ShellCommand(name.strip(), args.strip())
    prompt, rest = _split_prompt(line)
    if _HELP.search(rest) or _HELP.fullmatch(line):
        return ShellCommand("help", "")
    values = _parse_switches(rest)
    sweep = tuple((name, v) for name, v in values.items() if BY_NAME[name].sweep and isinstance(v, tuple))
    if len(sweep) > 2:
        raise UsageError(f"{len(sweep)} comma lists on one line; a sweep has at most two (rows x columns)",
                         "keep two lists, e.g. -f 0.2,0.5,0.8 -C 3,7.5")
    values.update({name: v[0] for name, v in sweep})
    if sweep:
        values["sweep"] = sweep
        if values.get("iterations", 1) > 1:
            raise UsageError("a sweep and -n together are ambiguous", "use a sweep (comma list) or -n, not both")
    if not prompt.strip():
        raise UsageError("the line has no prompt", 'type the prompt first, e.g. "a red circle" -s 25')
    if prompt.count("[") != prompt.count("]"):
        raise UsageError("unbalanced [ ] in the prompt", "close the negative prompt: a cat [blurry]")
    fields = {s.name: s.default for s in SWITCHES}
    fields.update({k: v for k, v in defaults.items() if k in fields})
    fields.update(values)
    if (fields["variation_amount"] or fields["with_variations"]) and fields["init_img"]:
        raise UsageError("variations work on txt2img images only", "leave out -I, or leave out -v/-V")
    if fields["exact_steps"] and fields["init_img"] and fields["strength"] == 0:
        raise UsageError("--exact_steps at strength 0: no step can run", "give -f above 0, or leave out --exact_steps")
    for dim in ("width", "height"):
        if fields[dim] % 8:
            s = fields[dim]
            raise UsageError(f"--{dim} must be a multiple of 8, got {s}",
                             f"use {s - s % 8} or {s - s % 8 + 8}")
    return GenerationRequest(prompt=" ".join(prompt.split()), **fields)


def _split_prompt(line: str) -> tuple[str, str]:
    if line[0] in "\"'":
        end = line.find(line[0], 1)
        if end < 0:
            raise UsageError(f"unbalanced quote {line[0]} in the prompt",
                             f"close the prompt with {line[0]}, e.g. \"a red circle\" -s 25")
        return line[1:end], line[end + 1 :]
    m = _SWITCH_START.search(line)
    if not m:
        return line, ""
    return line[: m.start(1)], line[m.start(1) :]


def parse_switches(text: str) -> dict[str, Any]:
    """Switches alone (for ! commands that take some), checked against the same table."""
    return _parse_switches(text)


def _parse_switches(text: str) -> dict[str, Any]:
    try:
        tokens = shlex.split(text)
    except ValueError:
        raise UsageError("unbalanced quote among the switches",
                         "quote a path with spaces on both sides: -I \"my drawings/fire.png\"") from None
    values: dict[str, Any] = {}
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        i += 1
        sw, glued = _lookup(tok)
        if sw.kind is bool:
            if glued:
                raise UsageError(f"{_show(sw)} takes no value, got {glued!r}", f"write {_show(sw).split('/')[0]} alone")
            values[sw.name] = True
            continue
        if glued is None:
            if i >= len(tokens):
                raise UsageError(f"{_show(sw)} needs a value", f"e.g. {_example(sw)}")
            glued = tokens[i]
            i += 1
        if sw.sweep and "," in glued:
            items = tuple(convert(sw, part.strip()) for part in glued.split(",") if part.strip())
            values[sw.name] = items if len(items) > 1 else items[0]
        else:
            values[sw.name] = convert(sw, glued)
    return values


def _lookup(tok: str) -> tuple[Switch, str | None]:
    if tok.startswith("--"):
        name, eq, value = tok[2:].partition("=")
        sw = BY_LONG.get(name)
        if sw is None:
            guess = did_you_mean(name, BY_LONG)
            raise UsageError(f"unknown switch --{name}",
                             f"did you mean --{guess}?" if guess else "type !help for the list of switches")
        return sw, value if eq else None
    if tok.startswith("-") and len(tok) >= 2 and tok[1].isalpha():
        sw = BY_SHORT.get(tok[1])
        if sw is None:
            other = BY_SHORT.get(tok[1].swapcase())
            hint = f"switches are case-sensitive: did you mean -{other.short} ({other.help})?" if other else \
                "type !help for the list of switches"
            raise UsageError(f"unknown switch -{tok[1]}", hint)
        return sw, tok[2:] or None
    raise UsageError(f"unexpected {tok!r} after the switches",
                     "put the whole prompt first, in quotes if it contains a dash: \"a -x b\" -s 10")


def convert(sw: Switch, raw: str) -> Any:
    """Turn one switch's text into its typed, range-checked value."""
    if sw.kind is int:
        try:
            value: Any = int(raw)
        except ValueError:
            raise UsageError(f"{_show(sw)} expects a whole number, got {raw!r}", f"e.g. {_example(sw)}") from None
    elif sw.kind is float:
        try:
            value = float(raw)
        except ValueError:
            raise UsageError(f"{_show(sw)} expects a number, got {raw!r}", f"e.g. {_example(sw)}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise UsageError(f"{_show(sw)} expects a finite number, got {raw!r}", f"e.g. {_example(sw)}")
    elif sw.name == "with_variations":
        return parse_variations(raw)
    else:
        value = raw
    if sw.choices and value not in sw.choices:
        guess = did_you_mean(value, sw.choices)
        raise UsageError(f"unknown {sw.name} {value!r} for {_show(sw)}",
                         (f"did you mean {guess}? " if guess else "") + "choose one of " + ", ".join(sw.choices))
    if sw.low is not None and value < sw.low or sw.high is not None and value > sw.high:
        raise UsageError(f"{_show(sw)} must be {sw.describe_range()}, got {raw}", f"e.g. {_example(sw)}")
    return value


def parse_variations(raw: str) -> tuple[tuple[int, float], ...]:
    """`seed:weight,seed:weight` -> ((seed, weight), ...), checked."""
    chain = []
    for part in raw.split(","):
        seed, colon, weight = part.strip().partition(":")
        try:
            pair = (int(seed), float(weight))
        except ValueError:
            pair = None
        if not colon or pair is None or not 0 <= pair[0] < 2**32 or not 0 <= pair[1] <= 1:
            raise UsageError(f"-V/--with_variations expects seed:weight pairs, got {part.strip()!r}",
                             "e.g. -V 1234:0.2,5678:0.1 (seeds 0..4294967295, weights 0..1)")
        chain.append(pair)
    return tuple(chain)


def _show(sw: Switch) -> str:
    return f"-{sw.short}/--{sw.name}" if sw.short else f"--{sw.name}"


_EXAMPLES = {"variation_amount": "0.2", "with_variations": "1234:0.2", "save_intermediates": "1", "intermediates_decode": "vae", "steps": "25", "seed": "42", "width": "512", "height": "512", "cfg_scale": "7.5",
             "sampler": "k_lms", "init_img": "drawing.png", "strength": "0.75", "iterations": "4",
             "outdir": "outputs/tries"}


def _example(sw: Switch) -> str:
    flag = f"-{sw.short}" if sw.short else f"--{sw.name}"
    return f"{flag} {_EXAMPLES.get(sw.name, '1')}"


# ---------------------------------------------------------------- writing the command back


def quote_prompt(prompt: str) -> str:
    """The prompt in the quotes the parser reads back: double, or single if it holds a double."""
    q = "'" if '"' in prompt and "'" not in prompt else '"'
    return q + prompt.replace(q, "'") + q


def format_request(req: GenerationRequest) -> str:
    """The command that reproduces `req`, in InvokeAI 2.x's Dream shape:
    "prompt" -s 10 -S 42 -W 64 -H 64 -C 7.5 -A k_lms [-I path -f 0.75]"""
    parts = [quote_prompt(req.prompt)]
    swept = dict(req.sweep)
    for sw in SWITCHES:
        value = swept.get(sw.name, getattr(req, sw.name))
        if not sw.in_command or value is None or value is False:
            continue
        if sw.name in ("strength", "exact_steps") and not req.init_img:
            continue
        flag = f"-{sw.short}" if sw.short else f"--{sw.name}"
        if value is True:
            parts.append(flag)
            continue
        if sw.name == "with_variations":
            parts.append(f"{flag} " + ",".join(f"{s}:{w!r}" for s, w in value))
            continue
        values = value if isinstance(value, tuple) else (value,)
        text = ",".join(repr(v) if isinstance(v, float) else str(v) for v in values)
        parts.append(f"{flag} {shlex.quote(text) if sw.kind is str else text}")
    return " ".join(parts)
