"""Write invoke_shell/models/configs/: the diffusers config folders that loading a single-file
checkpoint of each family needs with no network, and the one CLIP BPE table they share.

    python configs/make_family_configs.py BPE_GZ

BPE_GZ is CLIP's `bpe_simple_vocab_16e6.txt.gz` (inside the open_clip_torch wheel). Only the
48,894 merges CLIP uses are kept (gzipped, 208 KB); the vocabulary is derived from them when a
tokenizer is built (invoke_shell.models.families.clip_tokenizer), as CLIP itself does. The
component configs are those of the models' own diffusers repositories (runwayml/
stable-diffusion-v1-5, stabilityai/stable-diffusion-2-1 and -2-base, -2-inpainting,
stabilityai/stable-diffusion-xl-base-1.0), reduced to the keys that change the architecture.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from make_sd15_config import INDEX as SD_INDEX  # noqa: E402  (SD 1.5: the base for the rest)
from make_sd15_config import SCHEDULER, TEXT, UNET, VAE  # noqa: E402

OUT = Path(__file__).parent.parent / "invoke_shell" / "models" / "configs"

SD2_UNET = {
    **UNET,
    "attention_head_dim": [5, 10, 20, 20],
    "cross_attention_dim": 1024,
    "use_linear_projection": True,
    "sample_size": 96,
    "upcast_attention": True,  # 2.1 768-v: its attention overflows in fp16 otherwise
}
SD2_TEXT = {  # OpenCLIP ViT-H/14's text tower, less its last layer (SD 2 reads the penultimate one)
    **TEXT,
    "hidden_act": "gelu",
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_attention_heads": 16,
    "num_hidden_layers": 23,
    "projection_dim": 512,
}
XL_UNET = {
    **UNET,
    "block_out_channels": [320, 640, 1280],
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "attention_head_dim": [5, 10, 20],
    "transformer_layers_per_block": [1, 2, 10],
    "cross_attention_dim": 2048,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
    "sample_size": 128,
}
XL_TEXT_2 = {  # OpenCLIP ViT-bigG/14's text tower with its projection
    **TEXT,
    "architectures": ["CLIPTextModelWithProjection"],
    "hidden_act": "gelu",
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_attention_heads": 20,
    "num_hidden_layers": 32,
    "projection_dim": 1280,
}
XL_SCHEDULER = {
    **{k: v for k, v in SCHEDULER.items() if k not in ("skip_prk_steps",)},
    "_class_name": "EulerDiscreteScheduler",
    "interpolation_type": "linear",
    "use_karras_sigmas": False,
}
XL_INDEX = {
    "_class_name": "StableDiffusionXLPipeline",
    "force_zeros_for_empty_prompt": True,
    "scheduler": ["diffusers", "EulerDiscreteScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "tokenizer_2": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}
INPAINT_INDEX = {**SD_INDEX, "_class_name": "StableDiffusionInpaintPipeline"}

FAMILIES: dict[str, dict[str, dict[str, object]]] = {
    "sd-1": {
        "": SD_INDEX,
        "scheduler": SCHEDULER,
        "unet": UNET,
        "vae": VAE,
        "text_encoder": TEXT,
    },
    "sd-1-inpaint": {
        "": INPAINT_INDEX,
        "scheduler": SCHEDULER,
        "unet": {**UNET, "in_channels": 9},
        "vae": VAE,
        "text_encoder": TEXT,
    },
    "sd-2": {
        "": SD_INDEX,
        "scheduler": {**SCHEDULER, "prediction_type": "v_prediction"},
        "unet": SD2_UNET,
        "vae": {**VAE, "sample_size": 768},
        "text_encoder": SD2_TEXT,
    },
    "sd-2-inpaint": {
        "": INPAINT_INDEX,
        "scheduler": SCHEDULER,
        "unet": {**SD2_UNET, "in_channels": 9, "sample_size": 64, "upcast_attention": False},
        "vae": VAE,
        "text_encoder": SD2_TEXT,
    },
    "sdxl": {
        "": XL_INDEX,
        "scheduler": XL_SCHEDULER,
        "unet": XL_UNET,
        "vae": {**VAE, "sample_size": 1024, "scaling_factor": 0.13025, "force_upcast": True},
        "text_encoder": TEXT,
        "text_encoder_2": XL_TEXT_2,
    },
}


def write(bpe_gz: Path, out: Path = OUT) -> None:
    merges = gzip.open(bpe_gz).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    out.mkdir(parents=True, exist_ok=True)
    # mtime=0: the same bytes on every run
    (out / "clip_merges.txt.gz").write_bytes(gzip.compress(("\n".join(merges) + "\n").encode(), 9, mtime=0))
    for family, parts in FAMILIES.items():
        for sub, data in parts.items():
            name = "model_index.json" if sub == "" else "scheduler_config.json" if sub == "scheduler" else "config.json"
            (out / family / sub).mkdir(parents=True, exist_ok=True)
            (out / family / sub / name).write_text(json.dumps(data, indent=2) + "\n")


if __name__ == "__main__":
    write(Path(sys.argv[1]))
