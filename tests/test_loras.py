"""LoRAs and embeddings named in a prompt: kohya and PEFT files, weights, unloading, metadata,
!fetch, missing files, and embeddings in safetensors and (safe) pickle form."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from invoke_shell.models.loader import load_model
from invoke_shell.models.registry import load_registry
from invoke_shell.session.session import ModelSession
from invoke_shell.shell.repl import Shell


@pytest.fixture
def shell(tiny_config, addons, tmp_path):
    lines: list[str] = []
    registry = load_registry(tiny_config)
    session = ModelSession(
        registry, lambda e: load_model(e, "cpu", "fp32"), tmp_path / "out", lines.append, addons=addons
    )
    shell = Shell(registry, registry.get(None), session, printer=lines.append, raise_errors=True)
    shell.lines = lines
    shell.load_first_model(wait=True)
    yield shell
    shell.close()


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(np.int16)


def made(tmp_path: Path, n: int) -> Path:
    return next((tmp_path / "out" / "img-samples").glob(f"{n:06d}.*.png"))


def test_a_lora_changes_the_picture_by_its_weight_and_is_gone_the_next_line(shell, tmp_path):
    for line in (
        "a red circle -s 3 -S 8",
        "a red circle <lora:thick:0> -s 3 -S 8",
        "a red circle <lora:thick:1> -s 3 -S 8",
        "a red circle withLora(thick, 1) -s 3 -S 8",
        "a red circle <lora:thick-kohya:1> -s 3 -S 8",
        "a red circle -s 3 -S 8",
        "a red circle <lora:thick:0.5> -s 3 -S 8",
        "a red sparkly circle <lora:thick:0> -s 3 -S 8",
    ):
        shell.handle(line)
    plain, zero, full, invoke, kohya, after, half, unknown = (pixels(made(tmp_path, n)) for n in range(1, 9))
    assert np.array_equal(zero, plain)  # weight 0: exactly the model as loaded
    assert np.array_equal(unknown, plain)  # ... which leaves out the words it does not know, as without the tag
    assert np.abs(full - plain).mean() > 2  # the LoRA is applied
    assert np.array_equal(invoke, full)  # InvokeAI's syntax is the same LoRA at the same weight
    assert np.abs(kohya.astype(float) - full).max() <= 1  # the kohya file holds the same weights
    assert np.array_equal(after, plain)  # a line that names no LoRA: unloaded
    assert 0 < np.abs(half - plain).mean() < np.abs(full - plain).mean()


def test_the_png_records_the_lora_and_fetch_brings_it_back(shell, tmp_path):
    shell.handle("a red circle <lora:thick:0.8> [blurry] -s 3 -S 9")
    path = made(tmp_path, 1)
    chunks = Image.open(path).text
    meta = json.loads(chunks["sd-metadata"])["image"]
    digest = meta["loras"][0].pop("hash")
    assert meta["loras"] == [{"name": "thick", "weight": 0.8}] and len(digest) == 10
    assert chunks["parameters"].startswith("a red circle <lora:thick:0.8>\nNegative prompt: blurry\n")
    assert f'Lora hashes: "thick: {digest}"' in chunks["parameters"]
    assert chunks["Dream"].startswith('"a red circle <lora:thick:0.8> [blurry]"')
    shell.handle("!fetch " + str(path))
    shell.handle(shell.lines[-1])
    assert np.array_equal(pixels(made(tmp_path, 2)), pixels(path))


def test_a_missing_lora_or_a_bad_weight_stops_the_line_before_any_image(shell, tmp_path):
    shell.handle("a red circle <lora:thik:1> -s 3 -S 1")
    assert "no LoRA 'thik' in" in shell.lines[-1] and "did you mean thick?" in shell.lines[-1]
    shell.handle("a red circle <lora:thick:x> -s 3 -S 1")
    assert "the LoRA weight in '<lora:thick:x>' is not a number between -10 and 10" in shell.lines[-1]
    assert not (tmp_path / "out" / "img-samples").exists() or not list((tmp_path / "out" / "img-samples").glob("*.png"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch on the refused pickle
def test_embeddings_load_from_safetensors_and_safe_pickles_and_unknown_names_stay_text(shell, tmp_path):
    for line in (
        "a <cat> circle -s 3 -S 4",
        "a <star> circle -s 3 -S 4",
        "a <spiky> circle -s 3 -S 4",
        "a <star> circle -s 3 -S 4",
    ):
        shell.handle(line)
    cat, star, spiky, star_again = (pixels(made(tmp_path, n)) for n in range(1, 5))
    assert np.abs(star - cat).mean() > 1 and np.abs(spiky - star).mean() > 1
    assert np.array_equal(star_again, star)
    shell.handle("a <evil> circle -s 3 -S 4")
    assert "evil.pt is not a plain embedding" in shell.lines[-1]


def test_completion_offers_lora_names_after_lora_colon(addons):
    from prompt_toolkit.completion import CompleteEvent
    from prompt_toolkit.document import Document

    from invoke_shell.models.addons import LORA_SUFFIXES, names
    from invoke_shell.shell.completion import ShellCompleter

    completer = ShellCompleter(None, lambda: None, list, lambda: names(addons.loras, LORA_SUFFIXES))  # type: ignore[arg-type]
    got = [
        (c.text, c.start_position)
        for c in completer.get_completions(Document("a red circle <lora:th"), CompleteEvent())
    ]
    assert got == [("<lora:thick:1>", -8), ("<lora:thick-kohya:1>", -8)]


SEEDS = (0, 1, 2)  # the first three: the LoRA draws a cross in 97.5 % of the evaluation's prompts


def test_the_shipped_lora_teaches_the_embedded_model_a_cross(tmp_path):
    """loras/cross.safetensors (trained by tiny_shapes/train_lora.py) draws a shape the model
    cannot: a plus-shaped cross; without it the same line draws no cross."""
    from conftest import open_shell

    from invoke_shell.models.tiny_shapes import data

    shell = open_shell(Path(__file__).parent.parent / "configs" / "models.yaml", tmp_path / "out")
    shapes = data.SHAPES + data.LORA_SHAPES
    try:
        for seed in SEEDS:
            shell.handle(f"a red cross on a blue background <lora:cross:1> -S {seed}")
            with_lora = data.judge(Image.open(shell.worker.status().made[-1].path), shapes)
            shell.handle(f"a red cross on a blue background -S {seed}")
            without = data.judge(Image.open(shell.worker.status().made[-1].path), shapes)
            assert (with_lora.shape, with_lora.colour, with_lora.background) == ("cross", "red", "blue"), seed
            assert without.shape != "cross", seed
    finally:
        shell.close()
