"""The shipped configs: models.yaml and the offline Stable Diffusion 1.5 config folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from invoke_shell.errors import UsageError
from invoke_shell.models.registry import load_registry

ROOT = Path(__file__).parent.parent
SD15 = ROOT / "configs" / "sd-1.5"


def test_models_yaml_names_the_embedded_default():
    reg = load_registry(ROOT / "configs" / "models.yaml")
    entry = reg.get(None)
    assert entry.name == "tiny-shapes"
    assert (entry.defaults["width"], entry.defaults["height"], entry.defaults["steps"]) == (64, 64, 25)
    assert reg.get("sd-1.5").config == SD15.resolve()
    with pytest.raises(UsageError) as err:
        reg.get("tiny-shape")
    assert "did you mean tiny-shapes?" in err.value.hint


def test_sd15_tokenizer_loads_offline_with_clip_ids():
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(str(SD15), subfolder="tokenizer", local_files_only=True)
    assert len(tok) == 49408
    assert tok("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]


def test_sd15_component_configs_have_the_real_shapes():
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.device("meta"):  # shapes only, no memory
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(str(SD15 / "unet")))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(str(SD15 / "vae")))
        text = CLIPTextModel(CLIPTextConfig.from_pretrained(str(SD15 / "text_encoder")))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert (count(unet), count(vae), count(text)) == (859_520_964, 83_653_863, 123_060_480)


def test_pickle_checkpoints_are_refused_unless_allowed(tmp_path):
    from invoke_shell.models.loader import load_pipeline
    from invoke_shell.models.registry import ModelEntry

    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"not loaded")
    with pytest.raises(UsageError) as err:
        load_pipeline(ModelEntry("old", ckpt, config=SD15), "cpu", torch.float32)
    assert "holds pickled weights (model.ckpt)" in err.value.message and "allow_pickle: true" in err.value.hint
