"""Ctrl-C inside a model call, not only between denoising steps.

diffusers checks nothing while the text encoder, one UNet step or the VAE decode runs, and at
4096x4096 one step takes minutes. A forward pre-hook on each block of those models checks the
cancel flag, so a request stops within one block (one VAE tile when decoding is tiled) at any
size. Hooks cost a Python call per block: at ordinary sizes only the top-level blocks are
hooked (a tiny model's whole step is milliseconds), inside them only for large images.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from invoke_shell.errors import Cancelled


def _blocks(model: Any, depth: int) -> Iterator[Any]:
    """The numbered blocks and mid blocks named with fewer than `depth` dots (2: the UNet's
    down_blocks.0 and mid_block; 3: the VAE's decoder.up_blocks.2, the text encoder's
    text_model.encoder.layers.5; 4: down_blocks.0.resnets.1 inside them)."""
    for name, module in model.named_modules():
        last = name.rpartition(".")[2]
        if name.count(".") < depth and (last.isdigit() or last == "mid_block"):
            yield module


@contextmanager
def stop_points(
    models: list[tuple[Any, int]], cancel: threading.Event | None, step: Callable[[], int]
) -> Iterator[None]:
    """While inside, each (model, depth) raises Cancelled(step()) at its next block once `cancel`
    is set. Deeper means finer stops and more hooks: each costs a Python call per block."""
    if cancel is None:
        yield
        return

    def check(module: Any, args: Any) -> None:
        if cancel.is_set():
            raise Cancelled(step())

    handles = [block.register_forward_pre_hook(check) for model, depth in models for block in _blocks(model, depth)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()
