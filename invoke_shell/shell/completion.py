"""Tab completion from the same tables the parser uses: switches, samplers, commands, models,
paths after -I / !fetch / !replay, seeds from this session's images after -S, and wildcard
names after __ in a prompt template, LoRA names after <lora:."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prompt_toolkit.completion import CompleteEvent, Completer, Completion, PathCompleter
from prompt_toolkit.document import Document

from invoke_shell.line.switches import BY_LONG, BY_SHORT, SWITCHES
from invoke_shell.models.registry import Registry
from invoke_shell.schedulers import SAMPLERS
from invoke_shell.session.status import Status
from invoke_shell.shell.commands import COMMANDS

PATH_COMMANDS = {"!fetch", "!replay", "!show", "!save"}


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
            for c in self.paths.get_completions(Document(word, len(word)), CompleteEvent()):
                yield Completion(glued + word + c.text, start, display=c.display)

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
