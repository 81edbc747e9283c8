"""Checks a line before Enter submits it: the parser is pure and cheap, so a mistake is shown
under the line and the line stays in the buffer to be fixed. The line under it is one terminal
row: a problem wider than that is written in full above the prompt as well."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from prompt_toolkit.document import Document
from prompt_toolkit.validation import ValidationError, Validator

from invoke_shell.errors import UsageError
from invoke_shell.line.parsing import QUIT, parse_line


class LineValidator(Validator):
    def __init__(
        self, model_defaults: Callable[[], Mapping[str, Any]], columns: Callable[[], int], show: Callable[[str], None]
    ) -> None:
        self.model_defaults, self.columns, self.show = model_defaults, columns, show

    def validate(self, document: Document) -> None:
        if document.text.strip() in QUIT:
            return
        try:
            parse_line(document.text, self.model_defaults())
        except UsageError as e:
            message = e.message + (f" ({e.hint})" if e.hint else "")
            if len(message) > self.columns():
                self.show(e.show())
                message = message[: max(self.columns() - 16, 8)] + "... (see above)"
            raise ValidationError(cursor_position=len(document.text), message=message) from None
