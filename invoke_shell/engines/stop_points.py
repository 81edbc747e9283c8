"""Ctrl-C inside a model call, not only between denoising steps.

diffusers checks nothing while the text encoder, one UNet step or the VAE decode runs, and at
4096x4096 one step takes minutes. A forward pre-hook on each block of those models checks the
cancel flag, so a request stops within one block (one VAE tile when decoding is tiled) at any
size. Hooks cost a Python call per block, far below one block's work.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from invoke_shell.errors import Cancelled


def _blocks(model: Any, depth: int = 4) -> Iterator[Any]:
    """The numbered blocks down to `depth` levels and the mid blocks (UNet: down_blocks.0,
    down_blocks.0.resnets.1; VAE: decoder.up_blocks.2.resnets.0; text encoder:
    text_model.encoder.layers.5): fine enough to stop fast, few enough to cost nothing."""
    for name, module in model.named_modules():
        last = name.rpartition(".")[2]
        if name.count(".") < depth and (last.isdigit() or last == "mid_block"):
            yield module


@contextmanager
def stop_points(models: list[Any], cancel: threading.Event | None, step: Callable[[], int]) -> Iterator[None]:
    """While inside, any of `models` raises Cancelled(step()) at its next block once `cancel` is set."""
    if cancel is None:
        yield
        return

    def check(module: Any, args: Any) -> None:
        if cancel.is_set():
            raise Cancelled(step())

    handles = [block.register_forward_pre_hook(check) for model in models for block in _blocks(model)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()
