"""Single-file checkpoints in the original key layout, Hugging Face cache entries and other VAEs,
all loaded with the network cut off: our converter writes small-architecture models of every
family, the loader reads them back, and every tensor must come back exactly where it was."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import open_shell
from PIL import Image
from small_families import FAMILY_OF, components, save_small

from invoke_shell.errors import UsageError
from invoke_shell.models import convert
from invoke_shell.models.families import CONFIGS, FAMILIES, check_shapes, detect, read_header
from invoke_shell.models.loader import load_pipeline, open_pipeline
from invoke_shell.models.registry import ModelEntry, load_registry

pytestmark = pytest.mark.usefixtures("no_network")


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """family -> (the diffusers pipeline, its folder, the single file our converter wrote)."""
    root = tmp_path_factory.mktemp("families")
    made = {}
    for family in FAMILIES:
        pipe = save_small(family, root / family)
        made[family] = (pipe, root / family, convert.write_single_file(pipe, root / f"{family}.safetensors"))
    return made


def test_the_network_guard_refuses_connections():
    with pytest.raises(AssertionError, match="network access attempted"):
        socket.create_connection(("huggingface.co", 443), timeout=1)
    with pytest.raises(AssertionError, match="network access attempted"):
        socket.socket(socket.AF_INET, socket.SOCK_STREAM).connect(("127.0.0.1", 9))


# ---- the round trip: diffusers -> original layout -> from_single_file


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_tensor_comes_back_exactly(written, family):
    pipe, folder, file = written[family]
    opened = open_pipeline(ModelEntry(family, file, config=folder), "cpu", torch.float32)
    assert opened.family.name == family
    assert opened.how.startswith(FAMILIES[family].label + " (from its text encoder keys")
    assert type(opened.pipe).__name__ == FAMILIES[family].pipeline
    for name, module in components(pipe).items():
        want, got = module.state_dict(), getattr(opened.pipe, name).state_dict()
        assert set(got) == set(want), name  # nothing missing, nothing extra
        wrong = [k for k in want if not torch.equal(want[k], got[k])]
        assert wrong == [], f"{name}: {wrong[:5]}"  # nothing misplaced: every value where it was
    # SD 2.x's 768 model predicts v; the rest epsilon, unless models.yaml says otherwise
    assert opened.pipe.scheduler.config.prediction_type == FAMILIES[family].prediction_type


@pytest.mark.parametrize("family", list(FAMILIES))
def test_diffusers_folders_of_every_family_load_and_are_named(written, family):
    pipe, folder, _ = written[family]
    opened = open_pipeline(ModelEntry(family, folder), "cpu", torch.float32)
    assert (opened.family.name, opened.how, opened.source) == (
        family,
        f"{FAMILIES[family].label} layout",
        "diffusers folder",
    )
    assert torch.equal(opened.pipe.unet.conv_in.weight, pipe.unet.conv_in.weight)


def test_the_file_has_the_original_layout(written):
    """Keys a real SD 1.5 / 2.1 / SDXL file has, at the places those files have them."""
    sd1, sd2, xl = (read_header(written[f][2]) for f in ("sd-1", "sd-2", "sdxl"))
    assert sd1["model.diffusion_model.input_blocks.0.0.weight"] == [16, 4, 3, 3]
    assert sd1["model.diffusion_model.input_blocks.3.0.op.weight"] == [16, 16, 3, 3]  # the first downsampler
    assert "model.diffusion_model.output_blocks.2.1.conv.weight" in sd1  # the upsampler after a plain up block
    assert "model.diffusion_model.output_blocks.5.2.conv.weight" in sd1  # ... and after one with attention
    assert sd1["first_stage_model.encoder.mid.attn_1.q.weight"] == [16, 16, 1, 1]  # a 1x1 convolution there
    assert "first_stage_model.decoder.up.3.block.0.conv1.weight" in sd1
    assert "cond_stage_model.transformer.text_model.encoder.layers.1.mlp.fc2.weight" in sd1
    assert sd2["cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight"] == [96, 32]  # q, k, v in one
    assert "cond_stage_model.model.ln_final.weight" in sd2
    assert xl["conditioner.embedders.1.model.text_projection"] == [48, 48]
    assert "conditioner.embedders.0.transformer.text_model.final_layer_norm.bias" in xl
    assert "model.diffusion_model.label_emb.0.0.weight" in xl
    assert "model.diffusion_model.input_blocks.4.1.transformer_blocks.1.attn2.to_k.weight" in xl


def test_written_files_load_through_the_shell_and_draw_what_the_folder_draws(written, tmp_path):
    """An SD 1.x single file through the real shell: the load says what it detected, and a line
    gives the same pixels as the diffusers folder it was written from."""
    _, folder, file = written["sd-1"]
    config = tmp_path / "models.yaml"
    config.write_text(
        "models:\n"
        f"  folder:\n    path: {folder}\n    width: 64\n    height: 64\n"
        f"  single:\n    path: {file}\n    config: {folder}\n    width: 64\n    height: 64\n"
    )
    shell = open_shell(config, tmp_path / "out", "single")
    try:
        assert any(
            ">> model single loaded on cpu in" in line
            and line.endswith(": Stable Diffusion 1.x (from its text encoder keys), single file, float32")
            for line in shell.lines
        ), shell.lines
        shell.handle('"a red circle" -s 4 -S 11 -C 7.5 -A k_euler')
        shell.handle("!switch folder")
        shell.handle('"a red circle" -s 4 -S 11 -C 7.5 -A k_euler')
        out = tmp_path / "out" / "img-samples"
        single, from_folder = (np.asarray(Image.open(out / f"00000{n}.11.png")) for n in (1, 2))
        assert np.array_equal(single, from_folder)
        assert single.std() > 1  # a picture, not a blank
    finally:
        shell.close()


def test_an_sd2_file_draws_with_v_prediction_as_diffusers_does(written, tmp_path):
    """SD 2.x 768 predicts v: the shell's picture from the single file is diffusers' picture
    with a v-prediction scheduler, and not the epsilon one."""
    import diffusers

    _, folder, file = written["sd-2"]
    config = tmp_path / "models.yaml"
    config.write_text(f"models:\n  sd2:\n    path: {file}\n    config: {folder}\n    width: 64\n    height: 64\n")
    shell = open_shell(config, tmp_path / "out")
    try:
        shell.handle('"a red circle" -s 5 -S 21 -C 7.5 -A k_euler')
    finally:
        shell.close()
    ours = np.asarray(Image.open(tmp_path / "out" / "img-samples" / "000001.21.png")).astype(np.float32) / 255
    pipe = diffusers.StableDiffusionPipeline.from_pretrained(str(folder), local_files_only=True, safety_checker=None)
    pictures = {}
    for prediction in ("v_prediction", "epsilon"):
        pipe.scheduler = diffusers.EulerDiscreteScheduler.from_config(pipe.scheduler.config, prediction_type=prediction)
        pictures[prediction] = pipe(
            "a red circle",
            num_inference_steps=5,
            guidance_scale=7.5,
            height=64,
            width=64,
            generator=torch.Generator().manual_seed(21),
            output_type="np",
        ).images[0]
    assert np.abs(pictures["v_prediction"] - ours).max() <= 1 / 255 + 1e-4  # the PNG's 8-bit rounding
    assert np.abs(pictures["epsilon"] - ours).max() > 0.05


# ---- detection and the shipped full-size configs


def full_size_keys(family: str) -> dict[str, list[int]]:
    """The original-layout keys and shapes a real checkpoint of `family` has, from our shipped
    configs and our converter, built on the meta device (no memory, no weights)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    base = CONFIGS / family
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(str(base / "unet")))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(str(base / "vae")))
        text = CLIPTextModel(CLIPTextConfig.from_pretrained(str(base / "text_encoder")))
        text_2 = (
            CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(str(base / "text_encoder_2")))
            if (base / "text_encoder_2").is_dir()
            else None
        )

    class Pipe:  # what to_original reads
        pass

    pipe = Pipe()
    pipe.unet, pipe.vae, pipe.text_encoder, pipe.text_encoder_2 = unet, vae, text, text_2
    return {k: list(t.shape) for k, t in convert.to_original(pipe).items()}


@pytest.mark.parametrize(
    "family, diffusers_type, unet_params",
    [
        ("sd-1", "v1", 859_520_964),
        ("sd-1-inpaint", "inpainting", 859_535_364),
        ("sd-2", "v2", 865_910_724),
        ("sd-2-inpaint", "inpainting_v2", 865_925_124),
        ("sdxl", "xl_base", 2_567_463_684),
    ],
)
def test_shipped_configs_are_the_real_architectures_and_are_detected(family, diffusers_type, unet_params):
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    shapes = full_size_keys(family)
    found = detect(shapes, "model.safetensors")
    assert found.family.name == family
    check_shapes(shapes, "model.safetensors", CONFIGS / family)  # no complaint
    # diffusers' own detection agrees on the file our converter would write
    assert infer_diffusers_model_type({k: torch.empty(s, device="meta") for k, s in shapes.items()}) == diffusers_type
    unet = sum(int(np.prod(s)) for k, s in shapes.items() if k.startswith("model.diffusion_model."))
    assert unet == unet_params  # the published UNet sizes (SDXL base: 2.57 B)


def test_the_family_override_is_checked_against_the_shapes(written):
    _, folder, file = written["sd-1"]
    with pytest.raises(UsageError) as err:
        load_pipeline(ModelEntry("m", file, family="sd-2"), "cpu", torch.float32)
    assert err.value.message == (
        "model 'm': sd-1.safetensors: its shapes match no family: the UNet has width 16, 4 input channels and "
        "cross-attention 32, but the config sd-2 expects 320, 4 and 1024"
    )
    assert "set `family:`" in (err.value.hint or "")


def test_prediction_type_override(written):
    _, folder, file = written["sd-2"]
    pipe = load_pipeline(ModelEntry("m", file, config=folder, prediction_type="epsilon"), "cpu", torch.float32)
    assert pipe.scheduler.config.prediction_type == "epsilon"  # a 512 SD 2.x base model


# ---- files that are not what they claim: one message, the current model stays loaded


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> Path:
    from safetensors.torch import save_file

    save_file(tensors, str(path))
    return path


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p, f: p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64)), "x.safetensors is not a safetensors checkpoint"),
        (lambda p, f: p.write_text("hello\n"), "x.safetensors is not a safetensors checkpoint"),
        (
            lambda p, f: p.write_bytes(f.read_bytes()[: f.stat().st_size // 2]),
            "x.safetensors is truncated: its header describes",
        ),
        (
            lambda p, f: save_tensors(p, {"lora_unet_down_blocks_0.lora_down.weight": torch.zeros(4, 8)}),
            "x.safetensors has no Stable Diffusion UNet (no model.diffusion_model.* keys; it holds 1 tensor such as "
            "'lora_unet_down_blocks_0.lora_down.weight'): it looks like a LoRA",
        ),
        (
            lambda p, f: save_tensors(
                p,
                {
                    "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(16, 8, 3, 3),
                    "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight": torch.zeros(77, 8),
                },
            ),
            "x.safetensors: its UNet takes 8 input channels, which matches no family",
        ),
    ],
    ids=["png", "text", "truncated", "lora", "8-channel"],
)
def test_a_bad_file_is_one_message_and_the_loaded_model_stays(written, tmp_path, make, message):
    _, folder, file = written["sd-1"]
    bad = tmp_path / "x.safetensors"
    make(bad, file)
    config = tmp_path / "models.yaml"
    config.write_text(f"models:\n  good:\n    path: {folder}\n    width: 64\n    height: 64\n  bad:\n    path: {bad}\n")
    shell = open_shell(config, tmp_path / "out", "good")
    try:
        shell.lines.clear()
        shell.handle("!switch bad")
        errors = [line for line in shell.lines if line.startswith("error:")]
        assert len(errors) == 1 and message in errors[0], shell.lines
        assert errors[0].startswith("error: model 'bad': ")
        assert errors[0].split("\n")[0].endswith("(model good is still loaded)")
        assert shell.worker.status().model == "good"
        shell.handle('"a red circle" -s 2 -S 3')
        assert (tmp_path / "out" / "img-samples" / "000001.3.png").is_file()
    finally:
        shell.close()


def _xl_bare(pipe, prompt: str, seed: int, **kw):
    """SDXL as a script would call it: the pipeline's defaults (1024-style micro-conditioning
    from the size, zeros for an empty negative), 64x64 for the small test model."""
    pipe.set_progress_bar_config(disable=True)
    out = pipe(
        prompt,
        num_inference_steps=3,
        guidance_scale=5.0,
        height=64,
        width=64,
        output_type="np",
        generator=torch.Generator().manual_seed(seed),
        **kw,
    )
    return out.images[0]


def test_sdxl_generates_from_a_single_file_and_a_folder_like_diffusers(written, tmp_path):
    """SDXL from the same line syntax: txt2img and img2img equal the XL pipelines' own pictures,
    weighting goes through compel's SDXL path, and the metadata is written as for SD 1.x."""
    from diffusers import DDIMScheduler, StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

    from invoke_shell.files.fetch import read_chunks

    _, folder, file = written["sdxl"]
    pipe = StableDiffusionXLPipeline.from_pretrained(str(folder), local_files_only=True)  # as a script loads it
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    config = tmp_path / "models.yaml"
    config.write_text(
        f"models:\n  xl:\n    path: {file}\n    config: {folder}\n    width: 64\n    height: 64\n"
        f"    sampler: ddim\n    steps: 3\n    cfg_scale: 5.0\n  xl-folder:\n    path: {folder}\n"
        "    width: 64\n    height: 64\n    sampler: ddim\n    steps: 3\n    cfg_scale: 5.0\n"
    )
    shell = open_shell(config, tmp_path / "out", "xl")
    try:
        shell.handle('"a red circle on a blue background" -S 7')
        made = tmp_path / "out" / "img-samples" / "000001.7.png"
        want = _xl_bare(pipe, "a red circle on a blue background", 7)
        got = np.asarray(Image.open(made), dtype=np.float32) / 255
        assert np.abs(got - want).max() <= 1 / 255 + 1e-6, shell.lines  # rounding to 8 bits only

        shell.handle(f'"a green square" -S 8 -I {made} -f 0.6')
        i2i = StableDiffusionXLImg2ImgPipeline.from_pipe(pipe)
        i2i.set_progress_bar_config(disable=True)
        want = i2i(
            "a green square",
            image=Image.open(made).convert("RGB"),
            strength=0.6,
            num_inference_steps=3,
            guidance_scale=5.0,
            output_type="np",
            generator=torch.Generator().manual_seed(8),
        ).images[0]
        got = np.asarray(Image.open(tmp_path / "out" / "img-samples" / "000002.8.png"), dtype=np.float32) / 255
        assert np.abs(got - want).max() <= 1 / 255 + 1e-6

        shell.handle('"a (red)1.6 circle" -S 7')  # weighted: compel's SDXL path, another picture
        weighted = np.asarray(Image.open(tmp_path / "out" / "img-samples" / "000003.7.png"), dtype=np.int16)
        assert np.abs(weighted - np.asarray(Image.open(made), dtype=np.int16)).max() > 0

        mask = Image.new("L", (64, 64), 0)
        mask.paste(255, (16, 16, 48, 48))
        mask.save(tmp_path / "mask.png")
        shell.handle(f'"a blue square" -S 9 -I {made} -M {tmp_path / "mask.png"} -f 0.9')  # XL inpaint view
        kept = np.asarray(Image.open(tmp_path / "out" / "img-samples" / "000004.9.png"), dtype=np.int16)
        first = np.asarray(Image.open(made), dtype=np.int16)
        assert np.abs(kept - first)[:8].max() <= 3 and np.abs(kept - first)[20:44, 20:44].max() > 3  # kept / repainted
        shell.handle('"a red circle" -S 7 --hires_fix --hires_scale 2')  # the refining pass at 128x128
        assert Image.open(tmp_path / "out" / "img-samples" / "000005.7.png").size == (128, 128)

        shell.handle("!switch xl-folder")
        shell.handle('"a red circle on a blue background" -S 7')  # the same weights from the folder
        again = tmp_path / "out" / "img-samples" / "000006.7.png"
        assert np.array_equal(np.asarray(Image.open(again)), np.asarray(Image.open(made)))
        dream = read_chunks(made)["Dream"]
        assert dream.startswith('"a red circle on a blue background"') and "-S 7" in dream and "-A ddim" in dream
        assert not [line for line in shell.lines if line.startswith("error")], shell.lines
    finally:
        shell.close()


def test_sdxl_loras_and_embeddings(written, tmp_path):
    """An SDXL LoRA changes the picture by its weight and is gone the next line; an SDXL
    embedding's two vector sets go to both text encoders; SD 1.x embeddings are refused on SDXL
    (and SDXL ones on SD 1.x) with one message, and the model stays loaded."""
    from diffusers import StableDiffusionXLPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    from invoke_shell.models.addons import AddOns

    _, folder, _ = written["sdxl"]
    pipe = StableDiffusionXLPipeline.from_pretrained(str(folder), local_files_only=True)
    loras, embeddings = tmp_path / "loras", tmp_path / "embeddings"
    loras.mkdir()
    embeddings.mkdir()
    torch.manual_seed(0)
    targets = ["to_q", "to_k", "to_v", "to_out.0"]
    pipe.unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=targets, init_lora_weights=False))
    state = {k: v * 4 for k, v in get_peft_model_state_dict(pipe.unet).items()}
    StableDiffusionXLPipeline.save_lora_weights(loras, unet_lora_layers=state, weight_name="ink.safetensors")
    widths = pipe.text_encoder.config.hidden_size, pipe.text_encoder_2.config.hidden_size
    glow = {"clip_l": torch.randn(1, widths[0]) * 3, "clip_g": torch.randn(1, widths[1]) * 3}
    save_file(glow, str(embeddings / "glow.safetensors"))
    save_file({"emb_params": torch.randn(1, widths[0]) * 3}, str(embeddings / "flat.safetensors"))
    config = tmp_path / "models.yaml"
    config.write_text(
        f"models:\n  xl:\n    path: {folder}\n    width: 64\n    height: 64\n    sampler: ddim\n    steps: 3\n"
        f"  sd1:\n    path: {written['sd-1'][1]}\n    width: 64\n    height: 64\n    steps: 3\n"
    )
    shell = open_shell(config, tmp_path / "out", "xl", addons=AddOns(loras, embeddings))
    try:
        for line in (
            "a red circle -S 5",
            "a red circle <lora:ink:0> -S 5",
            "a red circle <lora:ink:1> -S 5",
            "a red circle -S 5",
            "a <glow> circle -S 5",
        ):
            shell.handle(line)
        out = tmp_path / "out" / "img-samples"
        plain, zero, full, after, glowing = (
            np.asarray(Image.open(next(out.glob(f"{n:06d}.*.png"))), dtype=np.int16) for n in range(1, 6)
        )
        assert np.array_equal(zero, plain) and np.array_equal(after, plain)
        assert np.abs(full - plain).mean() > 2
        assert np.abs(glowing - plain).mean() > 1
        xl_pipe = shell.worker.session.model().engine.txt2img
        tokenizers = xl_pipe.tokenizer, xl_pipe.tokenizer_2
        assert all("<glow>" in t.get_vocab() for t in tokenizers)  # both encoders learned the token
        shell.handle("a <flat> circle -S 5")
        assert "flat.safetensors is not an SDXL embedding" in shell.lines[-2] + shell.lines[-1]
        shell.handle("!switch sd1")
        shell.handle("a <glow> circle -S 5")
        assert "glow.safetensors is an SDXL embedding" in shell.lines[-2] + shell.lines[-1]
        shell.handle("a red circle -S 5")  # the model stays loaded and draws
        assert len(list(out.glob("*.png"))) == 6
    finally:
        shell.close()


class Boom:
    def __reduce__(self):
        return (print, ("this ran",))


def test_pickles_need_allow_pickle_and_then_load_weights_only(written, tmp_path, capsys):
    pipe, folder, _ = written["sd-1"]
    state = convert.to_original(pipe)
    ckpt = tmp_path / "model.ckpt"
    torch.save({"state_dict": state}, ckpt)
    with pytest.raises(UsageError) as err:
        load_pipeline(ModelEntry("old", ckpt, config=folder), "cpu", torch.float32)
    assert "holds pickled weights (model.ckpt)" in err.value.message
    loaded = load_pipeline(ModelEntry("old", ckpt, config=folder, allow_pickle=True), "cpu", torch.float32)
    assert torch.equal(loaded.unet.conv_in.weight, pipe.unet.conv_in.weight)

    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": state, "extra": Boom()}, evil)
    with pytest.raises(UsageError) as err:
        load_pipeline(ModelEntry("evil", evil, config=folder, allow_pickle=True), "cpu", torch.float32)
    assert "evil.ckpt holds more than weights, refused even with allow_pickle" in err.value.message
    assert "this ran" not in capsys.readouterr().out


# ---- the Hugging Face cache and a separate VAE


def test_a_hugging_face_cache_entry_loads_by_repo_id(written, tmp_path, monkeypatch):
    import huggingface_hub.constants

    pipe, folder, _ = written["sd-1"]
    cache = tmp_path / "hub"
    snapshot = cache / "models--someone--small-sd" / "snapshots" / "0123abcd"
    shutil.copytree(folder, snapshot)
    (cache / "models--someone--small-sd" / "refs").mkdir()
    (cache / "models--someone--small-sd" / "refs" / "main").write_text("0123abcd")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    config = tmp_path / "models.yaml"
    config.write_text("models:\n  cached:\n    path: hf:someone/small-sd\n  missing:\n    path: hf:someone/other\n")
    registry = load_registry(config)
    opened = open_pipeline(registry.get("cached"), "cpu", torch.float32)
    assert opened.source == "Hugging Face cache"
    assert torch.equal(opened.pipe.unet.conv_in.weight, pipe.unet.conv_in.weight)
    with pytest.raises(UsageError) as err:
        open_pipeline(registry.get("missing"), "cpu", torch.float32)
    assert err.value.message == "model 'missing': someone/other is not in the Hugging Face cache on this machine"
    assert "never downloads" in (err.value.hint or "")


def test_vae_entry_loads_another_vae_from_a_folder_or_a_single_file(written, tmp_path):
    pipe, folder, file = written["sd-1"]
    other = save_small("sd-1", tmp_path / "other", seed=1).vae
    single = tmp_path / "other-vae.safetensors"
    save_tensors(
        single,
        {
            convert.VAE_PREFIX + k: t.contiguous()
            for k, t in convert.vae_to_original(other.state_dict(), other.config).items()
        },
    )
    for vae in (tmp_path / "other" / "vae", single):
        loaded = load_pipeline(ModelEntry("m", file, config=folder, vae=vae), "cpu", torch.float32)
        assert all(torch.equal(t, other.state_dict()[k]) for k, t in loaded.vae.state_dict().items())
        assert torch.equal(loaded.unet.conv_in.weight, pipe.unet.conv_in.weight)  # the rest is the checkpoint's


def test_registry_checks_family_prediction_type_and_hf_paths(tmp_path):
    cases = [
        ("family: sd-3", "models.m.family: 'sd-3' is not one of sd-1, sd-1-inpaint, sd-2, sd-2-inpaint, sdxl"),
        ("prediction_type: v", "models.m.prediction_type: 'v' is not one of epsilon, v_prediction"),
    ]
    for extra, message in cases:
        path = tmp_path / "models.yaml"
        path.write_text(f"models:\n  m:\n    path: w.safetensors\n    {extra}\n")
        with pytest.raises(UsageError) as err:
            load_registry(path)
        assert err.value.message == f"{path} line 4: {message}"
    path.write_text("models:\n  m:\n    path: hf:not a repo\n")
    with pytest.raises(UsageError) as err:
        load_registry(path)
    assert err.value.message == f"{path} line 3: models.m.path: 'hf:not a repo' is not a repo id"
    path.write_text("models:\n  m:\n    path: x.safetensors\n    family: sdxl\n    vae: vae.safetensors\n")
    entry = load_registry(path).get("m")
    assert (entry.family, entry.vae, entry.defaults["width"], entry.defaults["height"]) == (
        "sdxl",
        tmp_path / "vae.safetensors",
        1024,
        1024,
    )


def test_converter_refuses_a_tensor_it_has_no_name_for():
    with pytest.raises(convert.UnknownTensor, match="'down_blocks.0.motion_modules.0.w'"):
        convert.unet_to_original(
            {"down_blocks.0.motion_modules.0.w": torch.zeros(1)},
            {"layers_per_block": 2, "up_block_types": ["UpBlock2D"]},
        )


def test_family_of_small_builders_is_the_converters(written):
    assert {f: convert.pipeline_family(written[f][0]) for f in FAMILIES} == FAMILY_OF
    assert json.loads((written["sdxl"][1] / "model_index.json").read_text())["_class_name"] == (
        "StableDiffusionXLPipeline"
    )


def test_an_entry_without_a_size_draws_at_the_size_its_weights_were_trained_at(written, tmp_path):
    config = tmp_path / "models.yaml"
    config.write_text(
        f"models:\n  xl:\n    path: {written['sdxl'][2]}\n  sd1:\n    path: {written['sd-1'][2]}\n"
        f"  folder:\n    path: {written['sdxl'][1]}\n  sized:\n    path: {written['sdxl'][2]}\n    width: 768\n"
        "  absent:\n    path: nowhere.safetensors\n"
    )
    registry = load_registry(config)
    sides = {name: (e.defaults["width"], e.defaults["height"]) for name, e in registry.models.items()}
    # single files by family (SDXL 1024), a folder by its UNet's sample size x the VAE's factor
    assert sides == {
        "xl": (1024, 1024),
        "sd1": (512, 512),
        "folder": (64, 64),
        "sized": (768, 512),
        "absent": (512, 512),
    }
