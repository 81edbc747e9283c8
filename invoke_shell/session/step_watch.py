"""What an image's sampler steps are watched for: the toolbar's live preview (`--preview`) and
the per-step files (`--save_intermediates N`). The engine computes each step's x0 only for a
watcher, so `on_step` is handed to it only when one of them is asked for."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from invoke_shell.files import intermediates
from invoke_shell.files.outputs import WriteError
from invoke_shell.files.step_files import Finishing, StepFiles, StepWriter
from invoke_shell.line.requests import LineRequest

if TYPE_CHECKING:
    from PIL import Image

    from invoke_shell.engines.generate import StepState
    from invoke_shell.models.loader import LoadedModel


class StepWatch:
    def __init__(
        self,
        line: LineRequest,
        model: LoadedModel,
        img2img: bool,
        samples: Path,
        writer: StepWriter,
        show: Callable[[Image.Image], None],
    ) -> None:
        self.line, self.model, self.img2img, self.show = line, model, img2img, show
        self.every = line.save_intermediates or 0
        self.files: StepFiles | None = None  # written while the image is made, named when it has a name
        if self.every:
            self.files = StepFiles(samples, model.previewer, writer)

    @property
    def on_step(self) -> Callable[[StepState], None] | None:
        return self._on_step if self.line.preview or self.files is not None else None

    def _on_step(self, state: StepState) -> None:
        if self.line.preview and state.denoised is not None:
            self.show(self.model.previewer(state.denoised))  # ~2 ms: the preview decoder
        if self.files is not None and intermediates.chosen(state, self.every, self.img2img):
            pictures = None  # the fast previews, made by the writer process
            if self.line.intermediates_decode == "vae":  # the exact pictures: on this thread, the model's
                decode = self.model.engine.decode
                pictures = (
                    decode(state.latents * state.preview_scale),
                    decode(state.denoised) if state.denoised is not None else None,
                )
            self.files.step(state, pictures)


class StepReports:
    """A line's intermediates folders being finished, each said once it is written (the next
    image's line waits for the previous folder, long done by then, so the order stays); the
    errors of those that could not be written, whose images are saved all the same."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say
        self.unwritten: list[WriteError] = []
        self._pending: list[tuple[Finishing, str]] = []

    def add(self, finishing: Finishing, done: str) -> None:
        self._pending.append((finishing, done))

    def report(self) -> None:
        """Wait for the folders handed over so far; say where each went."""
        for finishing, done in self._pending:
            try:
                finishing.result()
                self.say(done)
            except WriteError as e:
                self.unwritten.append(e)
        self._pending.clear()
