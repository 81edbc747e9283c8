"""Checks a line before Enter submits it: the parser is pure and cheap, so a mistake is shown
under the line and the line stays in the buffer to be fixed."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from prompt_toolkit.document import Document
from prompt_toolkit.validation import ValidationError, Validator

from invoke_shell.errors import UsageError
from invoke_shell.line.parsing import QUIT, parse_line


class LineValidator(Validator):
    def __init__(self, model_defaults: Callable[[], Mapping[str, Any]]) -> None:
        self.model_defaults = model_defaults

    def validate(self, document: Document) -> None:
        if document.text.strip() in QUIT:
            return
        try:
            parse_line(document.text, self.model_defaults())
        except UsageError as e:
            message = e.message + (f" ({e.hint})" if e.hint else "")
            raise ValidationError(cursor_position=len(document.text), message=message) from None
