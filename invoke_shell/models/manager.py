"""Turning a model name into a resident Engine (runs on the worker thread)."""

from __future__ import annotations

from collections.abc import Callable

from invoke_shell.models.registry import Registry


def make_loader(registry: Registry, device: str, precision: str) -> Callable[[str | None], tuple]:
    def load(name: str | None):
        from invoke_shell.logs import route_library_logs

        route_library_logs()  # imports diffusers/transformers, then silences their handlers
        from invoke_shell.engines import Engine
        from invoke_shell.metadata import ModelInfo
        from invoke_shell.models.loader import load_pipeline, pick_device, pick_dtype
        from invoke_shell.worker import model_hash

        entry = registry.get(name)
        dev = pick_device(device)
        pipe = load_pipeline(entry, dev, pick_dtype(precision, dev))
        return Engine(pipe), ModelInfo(entry.name, str(entry.path), model_hash(entry.path))

    return load
