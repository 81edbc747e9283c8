"""models.yaml checks, the embedded fallback, device and precision choice, the model hash, and
where library logs go. Pure or cheap, except one run of the console script."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from invoke_shell.errors import UsageError
from invoke_shell.logs import LOG_NAME, route_library_logs, route_logs
from invoke_shell.models.loader import model_hash, pick_device, pick_dtype
from invoke_shell.models.registry import PACKAGE_ROOT, builtin_registry, load_registry

# ---- models.yaml validation


def write_config(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "models.yaml"
    path.write_text(f"default: mine\nmodels:\n  mine:\n    path: weights\n    {extra}\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "extra, key, message_has, hint_has",
    [
        ("steps: ten", "models.mine.steps", "expects a whole number, got 'ten'", "allowed: between 1 and 1000"),
        ("steps: 0", "models.mine.steps", "must be between 1 and 1000, got 0", "allowed: between 1 and 1000"),
        ("sampler: foo", "models.mine.sampler", "unknown sampler 'foo'", "allowed: one of k_lms, k_euler,"),
        ("cfg_scale: 99", "models.mine.cfg_scale", "must be between 0 and 50, got 99", "allowed: between 0 and 50"),
        ("width: 100", "models.mine.width", "100 is not a multiple of 8", "use 96 or 104"),
        ("cfg: 7", "models.mine.cfg", "unknown key", "cfg_scale"),
    ],
)
def test_a_bad_value_names_file_model_key_and_range(tmp_path, extra, key, message_has, hint_has):
    path = write_config(tmp_path, extra)
    with pytest.raises(UsageError) as err:
        load_registry(path)
    message = err.value.message
    assert message.startswith(f"{path} line 5: {key}: ")
    assert key in message and message_has in message
    assert hint_has in (err.value.hint or "")


def test_good_values_become_the_models_defaults(tmp_path):
    path = write_config(tmp_path, "steps: 10\n    sampler: ddim\n    cfg_scale: 5\n    width: 96")
    entry = load_registry(path).get(None)
    assert entry.path == (tmp_path / "weights").resolve()
    d = entry.defaults
    assert (d["steps"], d["sampler"], d["cfg_scale"], d["width"], d["height"]) == (10, "ddim", 5.0, 96, 512)


def test_console_script_starts_on_the_embedded_model_when_the_config_is_bad(tmp_path):
    bad = write_config(tmp_path, "steps: ten")
    exe = Path(sys.executable).parent / "invoke-shell"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "invoke_shell"]
    proc = subprocess.run(
        [*cmd, "--config", str(bad), "--outdir", str(tmp_path / "o"), "--history", str(tmp_path / "h")],
        input="a red circle -s 2 -S 3\n",
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    assert f"error: {bad} line 5: models.mine.steps: expects a whole number, got 'ten'" in proc.stderr
    assert ">> starting on the embedded model tiny-shapes" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    png = tmp_path / "o" / "img-samples" / "000001.3.png"
    assert f"{png}  seed 3  2 steps" in proc.stdout
    meta = json.loads(Image.open(png).text["sd-metadata"])
    assert meta["model_weights"] == "tiny-shapes" and meta["image"]["steps"] == 2


# ---- the embedded fallback


def test_builtin_registry_is_the_embedded_model_alone():
    reg = builtin_registry()
    assert list(reg.models) == ["tiny-shapes"] and reg.default == "tiny-shapes"
    entry = reg.get(None)
    d = entry.defaults
    assert (d["width"], d["height"], d["steps"], d["sampler"], d["cfg_scale"]) == (64, 64, 25, "ddim", 3.0)
    assert entry.path == PACKAGE_ROOT / "models" / "tiny_shapes" / "model"
    assert (entry.path / "model_index.json").is_file()


# ---- device and precision


def test_device_choice_on_this_machine():
    if torch.cuda.is_available() or torch.backends.mps.is_available():
        pytest.skip("a GPU is visible")
    assert pick_device("auto") == "cpu"
    assert pick_device("cpu") == "cpu"
    with pytest.raises(UsageError) as err:
        pick_device("cuda")
    assert "no CUDA GPU is visible" in err.value.message
    assert "--device cpu" in (err.value.hint or "")


def test_precision_choice():
    assert pick_dtype("auto", "cpu") == torch.float32
    assert pick_dtype("auto", "cuda") == torch.float16
    assert pick_dtype("auto", "mps") == torch.float16
    assert pick_dtype("auto", "cuda", small=True) == torch.float32  # launch-bound: fp32 costs nothing
    assert pick_dtype("bf16", "cpu") == torch.bfloat16
    assert pick_dtype("fp16", "cpu") == torch.float16
    assert pick_dtype("fp32", "cuda") == torch.float32


# ---- the model hash


def test_model_hash_is_the_unet_weights_sha256(tmp_path):
    from safetensors.torch import save_file

    folder = tmp_path / "model"
    for part, name in (
        ("text_encoder", "model"),
        ("unet", "diffusion_pytorch_model"),
        ("vae", "diffusion_pytorch_model"),
    ):
        (folder / part).mkdir(parents=True)
        save_file({"w": torch.full((4, 4), float(len(part)))}, str(folder / part / f"{name}.safetensors"))
    unet = folder / "unet" / "diffusion_pytorch_model.safetensors"
    first = model_hash(folder)
    assert first == hashlib.sha256(unet.read_bytes()).hexdigest()[:10]
    assert model_hash(unet) == first  # a single file hashes the same way
    save_file({"w": torch.full((4, 4), 4.05)}, str(unet))
    second = model_hash(folder)
    assert second != first and second == hashlib.sha256(unet.read_bytes()).hexdigest()[:10]
    assert model_hash(tmp_path / "model" / "vae") != second


# ---- logs


def test_route_logs_twice_keeps_one_handler_and_catches_library_records(tmp_path):
    root = logging.getLogger()
    level = root.level
    try:
        route_logs(tmp_path / "a", verbose=False)
        path = route_logs(tmp_path / "b", verbose=False)
        assert path == tmp_path / "b" / LOG_NAME
        ours = [h for h in root.handlers if h.get_name() == "invoke_shell_handler"]
        assert len(ours) == 1
        route_library_logs()  # what load_model does once diffusers is imported
        logging.getLogger("diffusers.x").warning("a library record")
        ours[0].flush()
        text = path.read_text(encoding="utf-8")
        assert "diffusers.x WARNING a library record" in text
        assert "a library record" not in (tmp_path / "a" / LOG_NAME).read_text(encoding="utf-8")
    finally:
        for h in [h for h in root.handlers if h.get_name() == "invoke_shell_handler"]:
            root.removeHandler(h)
            h.close()
        root.setLevel(level)
        logging.captureWarnings(False)


def test_threads_sets_torch_cpu_threads_for_the_session(tiny_config):
    import torch

    from invoke_shell.models.loader import load_model
    from invoke_shell.models.registry import load_registry

    before = torch.get_num_threads()
    try:
        load_model(load_registry(tiny_config).get(None), "cpu", "fp32", threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_a_small_model_on_the_cpu_gets_one_thread_and_a_large_one_torchs_default():
    import torch

    from invoke_shell.models import loader

    before = torch.get_num_threads()
    try:
        loader.set_threads(None, "cpu", 4_000_000)
        assert torch.get_num_threads() == 1
        loader.set_threads(None, "cpu", 860_000_000)  # Stable Diffusion 1.5's UNet
        assert torch.get_num_threads() == loader._torch_default_threads
        loader.set_threads(2, "cpu", 4_000_000)  # --threads wins
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
