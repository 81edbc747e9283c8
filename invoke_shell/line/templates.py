"""Prompt templates: one line that means many prompts, expanded by the dynamicprompts library.

    a {red|blue} circle on a {white|black} background   4 prompts, one per combination
    a {2$$red|blue|green} circle                        picks: 'red,blue', 'red,green', ...
    a {1-2$$red|blue} circle                            ranges of picks
    a __colors__ circle                                 one prompt per line of wildcards/colors.txt

Only a prompt holding `{` or `__name__` is a template; any other prompt is left exactly as
typed (the library would refuse a bare `%` or `$`, and read `#` as a comment). Weighting
(`(word)1.3`, `word+`) and `[negative]` parts are plain text to the library and pass through.

Each top-level group (a `{...}` or a `__name__`) becomes one labelled axis of the line's sheet:
the library expands each group by itself, and the prompts are the product of the groups, first
group slowest, which is the library's own order for the whole template (tested). Templates that
use the library's variables (`${...}`) or escapes are expanded whole, labelled by their prompt.
This module reads the wildcard folder and nothing else.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from invoke_shell.errors import UsageError, did_you_mean, quoted

if TYPE_CHECKING:
    from dynamicprompts.wildcards import WildcardManager

_WILDCARD = re.compile(r"__([\w./*\-]+?)__")
Axis = tuple[str, tuple[str, ...]]  # (the group as typed, its values)


@dataclass(frozen=True)
class Expansion:
    prompts: tuple[str, ...]
    axes: tuple[Axis, ...]  # when the prompts are the whole product of these groups; else ()
    labels: tuple[tuple[str, ...], ...]  # per prompt: its value of each group (or the whole prompt)
    note: str | None = None


def is_template(prompt: str) -> bool:
    return "{" in prompt or "}" in prompt or _WILDCARD.search(prompt) is not None


def wildcard_names(prompt: str) -> list[str]:
    return _WILDCARD.findall(prompt)


def check_syntax(prompt: str) -> None:
    """A UsageError for a template the library cannot read; nothing else is looked at."""
    if not is_template(prompt):
        return
    if "#" in prompt:
        raise UsageError(
            "'#' starts a comment in a prompt template: the words after it would be dropped",
            "leave out the #, or the {…} and __name__ parts",
        )
    from dynamicprompts.parser.parse import parse
    from pyparsing import ParseBaseException

    try:
        parse(prompt)
    except (ParseBaseException, ValueError) as e:
        column = getattr(e, "col", None)
        where = f" at column {column}" if column else ""
        raise UsageError(
            f"the prompt template cannot be read{where}: {quoted(prompt)}",
            "variants are {red|blue} (close each brace), picks {2$$a|b|c}, wildcards __name__; "
            "'$' and '%' have meanings inside a template",
        ) from None


class Templates:
    """Expands templates, with wildcards from one folder (None: wildcards are refused)."""

    def __init__(self, wildcards: Path | None) -> None:
        self.folder = wildcards
        self._manager: WildcardManager | None = None

    def manager(self) -> WildcardManager:
        if self._manager is None:
            from dynamicprompts.wildcards import WildcardManager

            self._manager = WildcardManager(self.folder)
            self._manager.sort_wildcards = False  # a wildcard's lines in the file's order, as braces keep theirs
        return self._manager

    def names(self) -> list[str]:
        """The wildcard names in the folder, for completion and hints."""
        if self.folder is None or not self.folder.is_dir():
            return []
        return sorted(self.manager().get_collection_names())

    def expand(self, template: str, max_prompts: int, sample: int | None, seed: int) -> Expansion:
        """Every prompt of `template` (at most `max_prompts`), or `sample` of them drawn with
        `seed`: the same seed always draws the same prompts."""
        check_syntax(template)
        self._check_wildcards(template)
        parts = _top_level(template)
        if parts is None:
            return self._expand_whole(template, max_prompts, sample, seed)
        groups = [(text, self._values(text)) for is_group, text in parts if is_group]
        total = math.prod(len(values) for _, values in groups)
        note = None
        picks: Sequence[int]
        if sample is None:
            if total > max_prompts:
                raise _too_many(f"{total:,}", max_prompts)
            picks = range(total)
        elif sample >= total:
            picks = range(total)
            if sample > total:
                note = f"--random_prompts {sample}: the template makes only {total} prompt(s); all of them are made"
        else:
            picks = sorted(random.Random(seed).sample(range(total), sample))  # no repeats, in order
        prompts, labels = [], []
        for index in picks:
            chosen = _digits(index, [len(values) for _, values in groups])
            values = iter(groups[g][1][k] for g, k in enumerate(chosen))
            prompts.append(_tidy("".join(next(values) if is_group else text for is_group, text in parts)))
            labels.append(tuple(groups[g][1][k] for g, k in enumerate(chosen)))
        whole = sample is None or sample >= total  # every prompt: a sheet by the template's groups
        axes = tuple((text, tuple(values)) for text, values in groups) if whole else ()
        return Expansion(tuple(prompts), axes, tuple(labels), note)

    def _values(self, group: str) -> list[str]:
        from dynamicprompts.generators import CombinatorialPromptGenerator

        gen = CombinatorialPromptGenerator(wildcard_manager=self.manager())
        return [_tidy(v) for v in gen.generate(group, max_prompts=None)]

    def _expand_whole(self, template: str, max_prompts: int, sample: int | None, seed: int) -> Expansion:
        from dynamicprompts.generators import CombinatorialPromptGenerator, RandomPromptGenerator

        if sample is None:
            gen = CombinatorialPromptGenerator(wildcard_manager=self.manager())
            prompts = [_tidy(p) for p in gen.generate(template, max_prompts=max_prompts + 1)]
            if len(prompts) > max_prompts:
                raise _too_many(f"more than {max_prompts:,}", max_prompts)
        else:
            rgen = RandomPromptGenerator(wildcard_manager=self.manager(), seed=seed)
            prompts = [_tidy(p) for p in rgen.generate(template, num_images=sample)]
        return Expansion(tuple(prompts), (), tuple((p,) for p in prompts))

    def _check_wildcards(self, template: str) -> None:
        names = wildcard_names(template)
        if not names:
            return
        if self.folder is None or not self.folder.is_dir():
            where = (
                f"the wildcards folder {self.folder} does not exist" if self.folder else "no wildcards folder is set"
            )
            raise UsageError(
                f"{quoted('__' + names[0] + '__')} is a wildcard, but {where}",
                "give one with the launch flag --wildcards DIR (or `wildcards:` in models.yaml): "
                "one NAME.txt per wildcard, a value per line",
            )
        known = self.names()
        for name in names:
            if not self.manager().get_values(name).string_values:
                guess = did_you_mean(name, known)
                raise UsageError(
                    f"no wildcard {quoted('__' + name + '__')} in {self.folder}",
                    (f"did you mean __{guess}__? " if guess else "")
                    + (
                        "known: " + ", ".join(f"__{n}__" for n in known[:12])
                        if known
                        else "the folder has no .txt files"
                    ),
                )


def _top_level(template: str) -> list[tuple[bool, str]] | None:
    """The template as (is_group, text) pieces at brace depth 0; None when it uses what a
    piece-wise expansion cannot reproduce (variables, escapes)."""
    if "$" in template.replace("$$", "") or "\\" in template:
        return None
    pieces: list[tuple[bool, str]] = []
    depth, start = 0, 0
    for i, c in enumerate(template):
        if c == "{":
            if depth == 0:
                pieces.append((False, template[start:i]))
                start = i
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                pieces.append((True, template[start : i + 1]))
                start = i + 1
    pieces.append((False, template[start:]))
    out: list[tuple[bool, str]] = []
    for is_group, text in pieces:  # wildcards outside braces are groups too
        if is_group:
            out.append((True, text))
            continue
        last = 0
        for m in _WILDCARD.finditer(text):
            out += [(False, text[last : m.start()]), (True, m.group())]
            last = m.end()
        out.append((False, text[last:]))
    return [(g, t) for g, t in out if g or t]


def _digits(index: int, sizes: list[int]) -> list[int]:
    """`index` in the mixed radix of `sizes`, first group slowest (itertools.product's order)."""
    out = []
    for size in reversed(sizes):
        index, k = divmod(index, size)
        out.append(k)
    return out[::-1]


def _tidy(text: str) -> str:
    return " ".join(text.split())


def _too_many(count: str, cap: int) -> UsageError:
    return UsageError(
        f"the prompt template makes {count} prompts; this line allows {cap:,} (--max_prompts)",
        "raise --max_prompts (up to 1000), draw some with --random_prompts N, or offer fewer choices",
    )
