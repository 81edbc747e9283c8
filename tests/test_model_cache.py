"""Switching models: recently used ones stay in memory (a switch back reads no weight file),
`!models` shows family, format, size and state, and `!import_model` / `!del_model` edit
models.yaml keeping its comments, never touching weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from invoke_shell.models.loader import load_model
from invoke_shell.models.registry import load_registry
from invoke_shell.session.session import ModelSession
from invoke_shell.shell.repl import Shell

COMMON = "    width: 64\n    height: 64\n    steps: 3\n    cfg_scale: 7.5\n    sampler: k_lms\n"


@pytest.fixture(scope="module")
def models(tiny_config, tmp_path_factory) -> Path:
    """models.yaml (with comments) naming three copies of the tiny model and one missing entry."""
    import torch
    from safetensors.torch import load_file, save_file

    folder = tmp_path_factory.mktemp("cache")
    tiny = tiny_config.parent / "model"
    for i, name in enumerate(("one", "two", "three")):
        shutil.copytree(tiny, folder / name)
        unet = folder / name / "unet" / "diffusion_pytorch_model.safetensors"
        weights = load_file(str(unet))
        save_file({k: v + 0.03 * i if torch.is_floating_point(v) else v for k, v in weights.items()}, str(unet))
    config = folder / "models.yaml"
    config.write_text(
        "# my models: keep this comment\n"
        "default: one\n"
        "models:\n"
        f"  one:\n    description: the first   # a comment on a value\n    path: {folder / 'one'}\n{COMMON}"
        f"  two:\n    description: {LONG}\n    path: {folder / 'two'}\n{COMMON}"
        f"  three:\n    description: the third\n    path: {folder / 'three'}\n{COMMON}"
        "  # gone: a model whose file was deleted\n"
        f"  gone:\n    description: not here\n    path: {folder / 'gone.safetensors'}\n{COMMON}"
    )
    return config


LONG = "the second model, with a description longer than the eighty columns YAML writers fold lines at"


def shell_on(config: Path, outdir: Path, keep: int = 2) -> tuple[Shell, list[str], list[str]]:
    lines: list[str] = []
    loads: list[str] = []

    def load(entry):
        loads.append(entry.name)  # every read of weights from disk passes here
        return load_model(entry, "cpu", "fp32")

    registry = load_registry(config)
    session = ModelSession(registry, load, outdir, lines.append, keep_models=keep)
    shell = Shell(registry, registry.get(None), session, printer=lines.append, raise_errors=True)
    shell.load_first_model(wait=True)
    return shell, lines, loads


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_switching_back_takes_the_model_from_the_cache_without_reading_weights(models, tmp_path):
    shell, lines, loads = shell_on(models, tmp_path / "out")
    try:
        shell.handle("a red circle -S 4")
        shell.handle("!switch two")
        shell.handle("a red circle -S 4")
        shell.handle("!switch one")
        assert loads == ["one", "two"]  # one came back from memory
        assert any(line.startswith(">> model one back from the cache on cpu in ") for line in lines)
        shell.handle("a red circle -S 4")
        out = tmp_path / "out" / "img-samples"
        assert np.array_equal(pixels(out / "000003.4.png"), pixels(out / "000001.4.png"))  # the same weights
        assert not np.array_equal(pixels(out / "000002.4.png"), pixels(out / "000001.4.png"))
        assert json.loads(Image.open(out / "000003.4.png").text["sd-metadata"])["model_weights"] == "one"
        assert shell.worker.status().cached == ("two",)
        lines.clear()
        shell.handle("!history")  # several models this session: each row names its own
        assert [row.split()[1:3] for row in lines[:3]] == [
            ["000001.4.png", "one"],
            ["000002.4.png", "two"],
            ["000003.4.png", "one"],
        ]

        shell.handle("!switch three")  # two models in memory at most: the least recently used (two) goes
        shell.handle("!switch two")
        assert loads == ["one", "two", "three", "two"]
        assert shell.worker.status().cached == ("three",)
        shell.handle("!switch two")
        assert lines[-1] == ">> model two is already loaded" and loads[-1] == "two" and len(loads) == 4
    finally:
        shell.close()


def test_with_one_loaded_model_every_switch_reads_the_weights(models, tmp_path):
    shell, lines, loads = shell_on(models, tmp_path / "out", keep=1)
    try:
        shell.handle("!switch two")
        shell.handle("!switch one")
        assert loads == ["one", "two", "one"] and shell.worker.status().cached == ()
    finally:
        shell.close()


def test_models_lists_family_format_size_and_state(models, tmp_path):
    shell, lines, loads = shell_on(models, tmp_path / "out")
    try:
        shell.handle("!switch two")
        lines.clear()
        shell.handle("!models")
        assert lines[0].split() == ["name", "family", "format", "size", "state", "description"]
        assert lines[1].startswith("   one ") and lines[2].startswith(" * two ")
        states = {
            name: next(s for s in ("current", "cached", "on disk", "missing") if f"  {s}  " in line)
            for name, line in zip(["one", "two", "three", "gone"], lines[1:], strict=True)
        }
        assert states == {"one": "cached", "two": "current", "three": "on disk", "gone": "missing"}
        assert "diffusers folder" in lines[1] and "single file" in lines[4]
        assert "Stable Diffusion 1.x layout" in lines[1]
        assert " KB " in lines[1] or " MB " in lines[1]  # the folder's weights, measured
        assert f"[not found: {models.parent / 'gone.safetensors'}]" in lines[4]
    finally:
        shell.close()


def test_import_and_delete_edit_models_yaml_keeping_comments_and_weights(models, tmp_path):
    config = tmp_path / "models.yaml"
    shutil.copy(models, config)
    extra = tmp_path / "My Model v2"
    shutil.copytree(models.parent / "three", extra)
    shell, lines, loads = shell_on(config, tmp_path / "out")
    try:
        shell.handle(f"!import_model {extra}")
        assert (
            ">> name: my-model-v2" in lines
            and f">> description: Stable Diffusion 1.x layout (32-wide text), imported from {extra.name}" in lines
        )
        text = config.read_text()
        assert "# my models: keep this comment" in text and "# a comment on a value" in text
        assert "# gone: a model whose file was deleted" in text
        assert f"    description: {LONG}\n" in text  # a long value is not folded onto a second line
        assert load_registry(config).get("my-model-v2").path == extra
        shell.handle("!switch my-model-v2")  # the shell reads the edited file at once
        shell.handle("a red circle -S 2")
        assert loads[-1] == "my-model-v2"

        shell.handle(f"!import_model {extra}")  # the same folder again gets a name of its own
        assert ">> name: my-model-v2-2" in lines

        shell.handle("!del_model two")
        assert lines[-1] == f">> removed two from {config}; its weights at {models.parent / 'two'} are untouched"
        assert "two" not in load_registry(config).models and (models.parent / "two" / "model_index.json").exists()
        assert "# my models: keep this comment" in config.read_text()
        for name, message in (
            ("my-model-v2", "my-model-v2 is the loaded model"),
            ("one", "one is the default model of"),
            ("tow", "no model named 'tow'"),
            ("onee", "hint: the nearest name, one, is the default model, which cannot be removed"),
            ("thre", "hint: did you mean three?"),
        ):
            lines.clear()
            shell.handle(f"!del_model {name}")
            assert message in lines[0], lines
        assert set(load_registry(config).models) == {"one", "three", "gone", "my-model-v2", "my-model-v2-2"}
    finally:
        shell.close()


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda p: p.with_suffix(".ckpt").write_bytes(b"PK\x03\x04"),
            "only .safetensors checkpoints and diffusers folders",
        ),
        (lambda p: p.write_bytes(b"not a checkpoint at all"), "is not a safetensors checkpoint"),
        (lambda p: p.mkdir(), "a folder without model_index.json"),
        (lambda p: p.with_suffix(".png").write_bytes(b"\x89PNG"), "thing.png is not a model"),
        (None, "does not exist"),
    ],
)
def test_import_refuses_what_it_cannot_load_and_changes_nothing(models, tmp_path, make, message):
    config = tmp_path / "models.yaml"
    shutil.copy(models, config)
    before = config.read_text()
    target = tmp_path / "thing.safetensors"
    if make is not None:
        make(target)
    if make is not None and not target.exists():
        target = next(p for p in tmp_path.glob("thing.*") if p.suffix in (".ckpt", ".png"))
    shell, lines, loads = shell_on(config, tmp_path / "out")
    try:
        lines.clear()
        shell.handle(f"!import_model {target}")
        assert message in lines[0]
        assert config.read_text() == before
    finally:
        shell.close()


def test_import_detects_a_lora_and_refuses_it(models, tmp_path):
    import torch
    from safetensors.torch import save_file

    lora = tmp_path / "style.safetensors"
    save_file({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 320)}, str(lora))
    shell, lines, loads = shell_on(models, tmp_path / "out")
    try:
        lines.clear()
        shell.handle(f"!import_model {lora}")
        assert "it looks like a LoRA" in lines[0]
        assert lines[0].endswith(
            "hint: a LoRA is not a model: put it in the LoRA folder (--loras DIR) and name it in a prompt, <lora:NAME:0.8>"
        )
    finally:
        shell.close()
