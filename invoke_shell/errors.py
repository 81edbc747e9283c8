"""The user's mistakes, as opposed to bugs.

A UsageError carries one message naming the problem and a hint naming the fix; the shell
prints it and prompts again with the model still loaded. Anything else is a bug.
"""

from __future__ import annotations

import difflib
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


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return close[0] if close else None
