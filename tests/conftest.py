from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
sys.path.insert(0, str(Path(__file__).parent))

DEFAULTS = {"steps": 6, "cfg_scale": 7.5, "sampler": "k_lms", "width": 64, "height": 64}


@pytest.fixture(scope="session")
def tiny_config(tmp_path_factory) -> Path:
    """models.yaml naming one small random-weights SD pipeline on disk."""
    from tiny_random import build_tiny_random_pipeline

    return build_tiny_random_pipeline(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def tiny_pipe(tiny_config):
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(str(tiny_config.parent / "model"), local_files_only=True,
                                                   safety_checker=None, requires_safety_checker=False)


@pytest.fixture(scope="session")
def engine(tiny_pipe):
    from invoke_shell.engines import Engine

    return Engine(tiny_pipe)


@pytest.fixture
def make_shell(tiny_config, tmp_path):
    """A Shell over a real worker thread and the tiny model; collects what it prints."""
    from invoke_shell.models.manager import make_loader
    from invoke_shell.models.registry import load_registry
    from invoke_shell.repl import Shell
    from invoke_shell.worker import Worker

    made = []

    def make(outdir: Path | None = None):
        lines: list[str] = []
        registry = load_registry(tiny_config)
        entry = registry.get(None)
        worker = Worker(make_loader(registry, "cpu", "fp32"), lines.append, outdir or tmp_path / "out", entry.name)
        worker.start()
        shell = Shell(registry, entry, worker, printer=lines.append, raise_errors=True)
        shell.lines = lines
        made.append(worker)
        return shell

    yield make
    for w in made:
        w.stop()
        w.join(timeout=30)
