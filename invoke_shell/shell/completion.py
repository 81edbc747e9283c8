"""Tab completion from the same tables the parser uses: switches, samplers, commands, models,
paths after -I / !fetch / !replay, seeds from this session's images after -S, and wildcard
names after __ in a prompt template, LoRA names after <lora:."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from prompt_toolkit.completion import CompleteEvent, Completer, Completion, PathCompleter
from prompt_toolkit.document import Document

from invoke_shell.line.switches import BY_LONG, BY_SHORT, SWITCHES
from invoke_shell.models.registry import Registry
from invoke_shell.schedulers import SAMPLERS
from invoke_shell.session.status import Status
from invoke_shell.shell.commands import COMMANDS

PATH_COMMANDS = {"!fetch", "!replay", "!show", "!save", "!import_model"}
PATH_SWITCHES = {f"--{s.name}" for s in SWITCHES if s.complete == "path"} | {
    f"-{s.short}" for s in SWITCHES if s.complete == "path" and s.short
}


def open_quote(text: str) -> tuple[str, str] | None:
    """The quote and the path typed after it, when the cursor is inside a quoted path that
    follows a path switch or command (-I "my pi); None elsewhere (an apostrophe in a prompt)."""
    for quote in "\"'":
        at = text.rfind(quote)
        if at >= 0 and text.count(quote) % 2:
            before = text[:at].split()
            if before and (before[-1] in PATH_SWITCHES or before[-1] in PATH_COMMANDS or before[-1] == "--template"):
                return quote, text[at + 1 :]
    return None


class ShellCompleter(Completer):
    def __init__(
        self,
        registry: Registry,
        status: Callable[[], Status],
        wildcards: Callable[[], list[str]] = list,
        loras: Callable[[], list[str]] = list,
    ) -> None:
        self.registry = registry
        self.status = status
        self.wildcards = wildcards  # names in the wildcard folder, read when asked
        self.loras = loras  # names in the LoRA folder
        self.paths = PathCompleter(expanduser=True)

    def get_completions(self, document: Document, event: CompleteEvent) -> Iterable[Completion]:
        text = document.text_before_cursor
        word = document.get_word_before_cursor(WORD=True)
        words = text.split()
        before = words[:-1] if word else words
        prev = before[-1] if before else ""
        quoted = open_quote(text)
        if quoted:  # -I "my pi<TAB>: the path so far, spaces and all
            quote, typed = quoted
            yield from self._paths(typed, -len(typed) - 1, quote=quote)
            return
        if text.lstrip().startswith("!"):
            yield from self._command_completions(text.lstrip(), word, before)
            return
        if "<lora:" in word and ">" not in word.rpartition("<lora:")[2]:  # <lora:thi<TAB>
            partial = word.rpartition("<lora:")[2]
            for name in self.loras():
                if name.startswith(partial):
                    yield Completion(f"<lora:{name}:1>", -len(partial) - 6, display_meta="LoRA")
            return
        if word.count("__") % 2 == 1:  # inside a wildcard: a{__col<TAB>
            partial = word.rpartition("__")[2]
            for name in self.wildcards():
                if name.startswith(partial):
                    yield Completion(f"__{name}__", -len(partial) - 2, display_meta="wildcard")
            return
        sw = BY_LONG.get(prev[2:]) if prev.startswith("--") else BY_SHORT.get(prev[1:]) if len(prev) == 2 else None
        if word.startswith("-") and len(word) > 2 and word[1] in BY_SHORT and not word.startswith("--"):
            sw, word_value = BY_SHORT[word[1]], word[2:]  # glued: -Ak_e<TAB>
            yield from self._values(sw.complete, word_value, glued=word[:2])
            return
        if sw is not None and sw.complete:
            yield from self._values(sw.complete, word)
            return
        if word.startswith("-"):
            for s in SWITCHES:
                for flag in ([f"-{s.short}"] if s.short else []) + [f"--{s.name}"]:
                    if flag.startswith(word):
                        yield Completion(flag, -len(word), display_meta=s.help)

    def _values(self, kind: str | None, word: str, glued: str = "") -> Iterable[Completion]:
        start = -len(glued + word)
        if kind == "sampler":
            for name in SAMPLERS:
                if name.startswith(word):
                    yield Completion(glued + name, start)
        elif kind == "seed":
            seen = set()
            for m in reversed(self.status().made):
                seed = str(m.request.seed)
                if seed.startswith(word) and seed not in seen:
                    seen.add(seed)
                    yield Completion(glued + seed, start, display_meta=m.path.name)
        elif kind == "path":
            yield from self._paths(word, start, prefix=glued)

    def _paths(self, typed: str, start: int, prefix: str = "", quote: str = "") -> Iterable[Completion]:
        """Paths that complete `typed`. A folder keeps its slash, so Tab goes on into it; a path
        with a space is put in quotes, which the parser needs, and closed once it names a file."""
        for c in self.paths.get_completions(Document(typed, len(typed)), CompleteEvent()):
            path = typed + c.text
            folder = os.path.isdir(os.path.expanduser(path))
            path += "/" if folder else ""
            q = quote or ('"' if " " in path else "")
            yield Completion(prefix + q + path + ("" if folder else q), start, display=c.display)

    def _command_completions(self, text: str, word: str, before: list[str]) -> Iterable[Completion]:
        if not before:  # the command name itself
            for c in COMMANDS.values():
                if c.name != "N" and ("!" + c.name).startswith(word):
                    yield Completion("!" + c.name, -len(word), display_meta=c.help)
            return
        if before[0] in PATH_COMMANDS:
            yield from self._values("path", word)
        elif before[0] == "!switch":
            for name, entry in self.registry.models.items():
                if name.startswith(word):
                    yield Completion(name, -len(word), display_meta=entry.description)
