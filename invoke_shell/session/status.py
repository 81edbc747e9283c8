"""What the shell may know about the session: frozen values, read without touching the model.

The worker thread makes a new `Status` whenever asked; the shell draws the toolbar, `!history`,
`!queue`, `!show -N` and seed completion from it and never reads the session's own fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from invoke_shell.line.requests import ImageRequest

if TYPE_CHECKING:
    from PIL import Image

State = Literal["loading", "ready", "no model"]


@dataclass(frozen=True)
class Made:
    """One image made this session: what `-S-N`, `-I -N`, `!N` and `!history` look back on."""

    request: ImageRequest
    path: Path
    steps_run: int
    seconds: float
    model: str = ""  # the model's name in models.yaml


@dataclass(frozen=True)
class Status:
    model: str | None  # the loaded model's name
    device: str
    state: State
    made: tuple[Made, ...]
    queued: tuple[str, ...] = ()  # lines waiting, next first
    running: str | None = None  # the line being made
    progress: tuple[int, int] | None = None  # (step, total) of the running image
    preview: Image.Image | None = None  # its predicted picture, with --preview
    cached: tuple[str, ...] = ()  # models kept in memory for a quick !switch back

    @property
    def last_seed(self) -> int | None:
        return self.made[-1].request.seed if self.made else None
