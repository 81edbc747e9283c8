"""The README's session lines work as shown: every `invoke>` line parses with the embedded
model's defaults, and where the README shows an error under a line, the parser gives exactly
that error."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from invoke_shell.errors import UsageError
from invoke_shell.line.parsing import parse_line
from invoke_shell.line.templates import Templates
from invoke_shell.models.registry import builtin_registry

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8").splitlines()
DEFAULTS = builtin_registry().get(None).defaults
WILDCARDS = Path(__file__).parent.parent / "configs" / "wildcards"


def _examples() -> list[tuple[int, str, str | None]]:
    """(README line number, the typed line without its trailing comment, the error shown under it)."""
    found = []
    for i, text in enumerate(README):
        if not text.startswith("invoke> "):
            continue
        typed = re.split(r"\s{2,}#", text[len("invoke> ") :])[0].strip()
        below = README[i + 1] if i + 1 < len(README) else ""
        found.append((i + 1, typed, below[len("error: ") :] if below.startswith("error: ") else None))
    return found


@pytest.mark.parametrize(("number", "typed", "error"), _examples(), ids=lambda v: str(v))
def test_every_readme_line_parses_or_fails_as_shown(number, typed, error):
    if typed in ("q", "quit", "exit") or typed.startswith("!"):
        return
    if error is None or "image(s) at" in error or "could not save" in error:  # run time: the work, not the line
        parse_line(typed, DEFAULTS)
        return
    if "does not exist" in error or error.startswith("no LoRA"):  # checked when the line runs, not parsed
        return
    if "prompt template makes" in error:  # expanded when it runs, with the shipped wildcards
        line = parse_line(typed, DEFAULTS)
        with pytest.raises(UsageError) as e:
            Templates(WILDCARDS).expand(line.prompt, line.max_prompts, line.random_prompts, 0)
        assert e.value.message == error, f"README line {number}"
        return
    with pytest.raises(UsageError) as e:
        parse_line(typed, DEFAULTS)
    assert e.value.message == error, f"README line {number}"
