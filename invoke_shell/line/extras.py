"""LoRAs and textual-inversion embeddings named inside a prompt, as users of AUTOMATIC1111 and
InvokeAI 2.3 write them:

    a red circle <lora:thick-lines:0.8>        AUTOMATIC1111 (the weight may be left out: 1.0)
    a red circle withLora(thick-lines, 0.8)    InvokeAI 2.3
    a <star-shape> on a blue background        an embedding: its file's name in angle brackets

LoRA tags are taken out of the text the model reads (the weight goes to the adapter); an
embedding's `<name>` stays in the text, as the token its vectors are loaded under. Pure text.
"""

from __future__ import annotations

import re

from invoke_shell.errors import UsageError, quoted

_A1111 = re.compile(r"<lora:([^:<>]+)(?::([^:<>]*))?(?::[^<>]*)?>")
_INVOKE = re.compile(r"withLora\(\s*([^,()]+?)\s*(?:,\s*([^()]*?)\s*)?\)")
_EMBEDDING = re.compile(r"<([\w.\-]+)>")
NAME = re.compile(r"[\w.\- ]{1,100}")
MAX_WEIGHT = 10.0  # far past any useful value: a typo, not a choice

Lora = tuple[str, float]


def loras(prompt: str) -> tuple[Lora, ...]:
    """Each LoRA the prompt names, with its weight, in order; a name given twice keeps the last."""
    found: dict[str, float] = {}
    for pattern in (_A1111, _INVOKE):
        for m in pattern.finditer(prompt):
            name, weight = m.group(1).strip(), _weight(m.group(0), m.group(2))
            if not NAME.fullmatch(name):
                raise UsageError(
                    f"{quoted(name)} in {quoted(m.group(0))} is not a LoRA name", "e.g. <lora:thick-lines:0.8>"
                )
            found.pop(name, None)
            found[name] = weight
    return tuple(found.items())


def without_loras(text: str) -> str:
    return " ".join(_INVOKE.sub(" ", _A1111.sub(" ", text)).split())


def embeddings(text: str) -> tuple[str, ...]:
    """Names in angle brackets: embeddings if a file of that name exists (checked by the session)."""
    return tuple(dict.fromkeys(_EMBEDDING.findall(without_loras(text))))


def _weight(tag: str, raw: str | None) -> float:
    if raw is None or not raw.strip():
        return 1.0
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not -MAX_WEIGHT <= value <= MAX_WEIGHT:  # nan fails too
        raise UsageError(
            f"the LoRA weight in {quoted(tag)} is not a number between -{MAX_WEIGHT:g} and {MAX_WEIGHT:g}",
            "e.g. <lora:thick-lines:0.8> or withLora(thick-lines, 0.8)",
        )
    return value
