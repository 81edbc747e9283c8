"""The user's mistakes, as opposed to bugs.

A UsageError carries one message naming the problem and a hint naming the fix; the shell
prints it and prompts again with the model still loaded. Anything else is a bug.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable


class UsageError(Exception):
    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def show(self) -> str:
        return f"error: {self.message}" + (f"\n  hint: {self.hint}" if self.hint else "")


class Cancelled(Exception):
    """Raised inside a generation when the user pressed Ctrl-C or cancelled it."""

    def __init__(self, step: int) -> None:
        super().__init__(f"cancelled at step {step}")
        self.step = step
        self.not_made = 0  # the images of its line that were still to come

    def show(self) -> str:
        rest = f"; the line's other {self.not_made} image(s) were not made" if self.not_made else ""
        return f">> generation cancelled at step {self.step}{rest}; the model is still loaded"


# C0 and C1 controls but tab, and the lone surrogates that stand for bytes that were not UTF-8:
# what the parser refuses in a typed line
CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\ud800-\udfff]")


def escaped(text: str, limit: int | None = None) -> str:
    """`text` safe to print: control characters, escape sequences, bidi overrides and undecodable
    bytes written as Python escapes (`\\x1b`), so nothing read from a pipe, a file or a PNG can
    move the cursor, set colours or retitle a window; cut to `limit` characters."""
    shown = "".join(c if c.isprintable() or c == "\t" else repr(c)[1:-1] for c in text)
    return shown if limit is None or len(shown) <= limit else shown[: limit - 1] + "…"


def quoted(text: str, limit: int = 40) -> str:
    """`text` as a message echoes it: repr-quoted (control characters escaped) and shortened,
    so a 100 KB line never becomes a 100 KB message."""
    if len(text) > limit:
        return repr(text[: limit - 1] + "…")
    return repr(text)


def named(word: str, limit: int = 40) -> str:
    """A word echoed bare when it reads safely (short, printable, no spaces), else quoted()."""
    return word if len(word) <= limit and word.isprintable() and " " not in word else quoted(word, limit)


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    if len(word) > 40:  # nothing in a table is that long, and difflib is slow on long words
        return None
    # case is ignored (K_EULER means k_euler); the candidate is returned as spelled in the table
    folded = {c.casefold(): c for c in candidates}
    close = difflib.get_close_matches(word.casefold(), list(folded), n=1, cutoff=0.6)
    if close:
        return folded[close[0]]
    starting = [c for f, c in folded.items() if f.startswith(word.casefold())] if len(word) >= 3 else []
    return starting[0] if len(starting) == 1 else None  # the start of one name: !switch tiny
