"""Diffusers -> the original single-file key layout (CompVis / Stability): the layout of the
`.safetensors` checkpoints people download, for SD 1.x, SD 2.x (and their inpainting UNets) and
SDXL base.

    python -m invoke_shell.models.convert DIFFUSERS_FOLDER OUT.safetensors [--fp16]

Our own mapping, written from the structure of both layouts (diffusers' single_file utilities
hold the reverse). Every tensor of the diffusers model gets exactly one original key, and a
tensor no rule knows is an error rather than a silent drop, so a round trip through
`from_single_file` can prove the mapping complete. The tests do that on small and full-size
models with random weights.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = {"sd-1": "cond_stage_model.transformer.", "sdxl": "conditioner.embedders.0.transformer."}
OPENCLIP_PREFIX = {"sd-2": "cond_stage_model.model.", "sdxl": "conditioner.embedders.1.model."}

_UNET_NAMES = {  # whole keys that only change name
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
    "add_embedding.linear_1": "label_emb.0.0",  # SDXL's size and pooled-text embedding
    "add_embedding.linear_2": "label_emb.0.2",
}
_RESNET_NAMES = {  # inside a UNet ResBlock
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}
_VAE_ATTENTION_NAMES = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
_OPENCLIP_LAYER_NAMES = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
    "self_attn.out_proj": "attn.out_proj",
}


class UnknownTensor(ValueError):
    """A diffusers tensor that no rule maps: the converter does not know this architecture."""


def _split(key: str) -> tuple[str, str]:
    """`a.b.weight` -> (`a.b`, `weight`)."""
    head, _, leaf = key.rpartition(".")
    return head, leaf


def unet_to_original(state: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """UNet2DConditionModel keys -> the LDM UNet's. Each down block has `layers_per_block`
    layers (ResBlock, then its transformer if any) and a downsampler but the last; each up block
    one layer more, its upsampler after the last layer's transformer."""
    per = int(config["layers_per_block"])
    up_attends = [t.startswith("CrossAttn") for t in config["up_block_types"]]
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        module, leaf = _split(key)
        if module in _UNET_NAMES:
            out[f"{_UNET_NAMES[module]}.{leaf}"] = tensor
            continue
        if m := re.fullmatch(r"(down|up)_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
            side, block, kind, layer, rest = m[1], int(m[2]), m[3], int(m[4]), m[5]
            index = block * (per + 1) + layer + (1 if side == "down" else 0)
            where = "input_blocks" if side == "down" else "output_blocks"
            new = f"{where}.{index}." + (f"0.{_resnet(rest)}" if kind == "resnets" else f"1.{rest}")
        elif m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(\w+)", key):
            new = f"input_blocks.{int(m[1]) * (per + 1) + per + 1}.0.op.{m[2]}"
        elif m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(\w+)", key):
            block = int(m[1])
            new = f"output_blocks.{block * (per + 1) + per}.{2 if up_attends[block] else 1}.conv.{m[2]}"
        elif m := re.fullmatch(r"mid_block\.resnets\.(\d+)\.(.+)", key):
            new = f"middle_block.{2 * int(m[1])}.{_resnet(m[2])}"
        elif m := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", key):
            new = f"middle_block.1.{m[1]}"
        else:
            raise UnknownTensor(f"UNet tensor {key!r} has no original name")
        out[new] = tensor
    return out


def _resnet(rest: str) -> str:
    module, leaf = _split(rest)
    if module not in _RESNET_NAMES:
        raise UnknownTensor(f"UNet ResBlock tensor {rest!r} has no original name")
    return f"{_RESNET_NAMES[module]}.{leaf}"


def vae_to_original(state: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """AutoencoderKL keys -> the LDM autoencoder's. The decoder's up blocks are numbered the
    other way round there, and the mid-block attention is 1x1 convolutions, not linear layers."""
    ups = len(config["up_block_types"])
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        new: str
        if m := re.fullmatch(r"(encoder|decoder)\.conv_norm_out\.(\w+)", key):
            new = f"{m[1]}.norm_out.{m[2]}"
        elif re.fullmatch(r"((encoder|decoder)\.conv_(in|out)|quant_conv|post_quant_conv)\.\w+", key):
            new = key
        elif m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            new = f"encoder.down.{m[1]}.block.{m[2]}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
        elif m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(\w+)", key):
            new = f"encoder.down.{m[1]}.downsample.conv.{m[2]}"
        elif m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            new = f"decoder.up.{ups - 1 - int(m[1])}.block.{m[2]}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
        elif m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(\w+)", key):
            new = f"decoder.up.{ups - 1 - int(m[1])}.upsample.conv.{m[2]}"
        elif m := re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)", key):
            new = f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
        elif m := re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)\.(\w+)", key):
            if m[2] not in _VAE_ATTENTION_NAMES:
                raise UnknownTensor(f"VAE attention tensor {key!r} has no original name")
            new = f"{m[1]}.mid.attn_1.{_VAE_ATTENTION_NAMES[m[2]]}.{m[3]}"
            if tensor.ndim == 2:  # a linear weight is a 1x1 convolution's there
                tensor = tensor[:, :, None, None]
        else:
            raise UnknownTensor(f"VAE tensor {key!r} has no original name")
        out[new] = tensor
    return out


def clip_to_original(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OpenAI CLIP (SD 1.x, SDXL's first encoder) is stored in transformers' own layout under
    `text_model.`; newer transformers leave that level out of CLIPTextModel."""
    return {k if k.startswith("text_model.") else f"text_model.{k}": t for k, t in state.items()}


def openclip_to_original(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OpenCLIP's text tower (SD 2.x, SDXL's second encoder): q, k and v in one in_proj tensor,
    the projection stored as the matrix text features are multiplied by (the linear weight's transpose)."""
    import torch

    state = {k.removeprefix("text_model."): t for k, t in state.items()}
    out: dict[str, torch.Tensor] = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        if key == "embeddings.token_embedding.weight":
            out["token_embedding.weight"] = tensor
        elif key == "embeddings.position_embedding.weight":
            out["positional_embedding"] = tensor
        elif m := re.fullmatch(r"final_layer_norm\.(\w+)", key):
            out[f"ln_final.{m[1]}"] = tensor
        elif key == "text_projection.weight":
            out["text_projection"] = tensor.T.contiguous()
        elif m := re.fullmatch(r"encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)", key):
            qkv.setdefault(f"transformer.resblocks.{m[1]}.attn.in_proj_{m[3]}", {})[m[2]] = tensor
        elif m := re.fullmatch(r"encoder\.layers\.(\d+)\.(.+)\.(weight|bias)", key):
            if m[2] not in _OPENCLIP_LAYER_NAMES:
                raise UnknownTensor(f"text encoder tensor {key!r} has no original name")
            out[f"transformer.resblocks.{m[1]}.{_OPENCLIP_LAYER_NAMES[m[2]]}.{m[3]}"] = tensor
        else:
            raise UnknownTensor(f"text encoder tensor {key!r} has no original name")
    for key, parts in qkv.items():
        out[key] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


def pipeline_family(pipe: Any) -> str:
    """sd-1, sd-2 or sdxl, from the components (the inpainting variants share their layout)."""
    if getattr(pipe, "text_encoder_2", None) is not None:
        return "sdxl"
    # OpenCLIP's text tower uses GELU, OpenAI CLIP's quick GELU
    return "sd-2" if pipe.text_encoder.config.hidden_act == "gelu" else "sd-1"


def to_original(pipe: Any) -> dict[str, torch.Tensor]:
    """Every weight of a diffusers Stable Diffusion pipeline, under its original key."""
    family = pipeline_family(pipe)
    parts = [
        (UNET_PREFIX, unet_to_original(pipe.unet.state_dict(), pipe.unet.config)),
        (VAE_PREFIX, vae_to_original(pipe.vae.state_dict(), pipe.vae.config)),
    ]
    if family in CLIP_PREFIX:
        parts.append((CLIP_PREFIX[family], clip_to_original(pipe.text_encoder.state_dict())))
    if family in OPENCLIP_PREFIX:
        encoder = pipe.text_encoder_2 if family == "sdxl" else pipe.text_encoder
        parts.append((OPENCLIP_PREFIX[family], openclip_to_original(encoder.state_dict())))
    out: dict[str, torch.Tensor] = {}
    for prefix, state in parts:
        for key, tensor in state.items():
            if prefix + key in out:
                raise UnknownTensor(f"two tensors map to {prefix + key!r}")
            out[prefix + key] = tensor
    return out


def write_single_file(pipe: Any, path: Path, dtype: torch.dtype | None = None) -> Path:
    """The pipeline as one original-layout .safetensors file (in `dtype` if given)."""
    from safetensors.torch import save_file

    state = {k: (t.to(dtype) if dtype is not None else t).contiguous() for k, t in to_original(pipe).items()}
    save_file(state, str(path), metadata={"format": "pt"})
    return path


def main(argv: list[str]) -> int:
    import torch
    from diffusers import DiffusionPipeline

    args = [a for a in argv if not a.startswith("--")]
    if len(args) != 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    pipe = DiffusionPipeline.from_pretrained(args[0], local_files_only=True, safety_checker=None)
    out = write_single_file(pipe, Path(args[1]), torch.float16 if "--fp16" in argv else None)
    print(f"{out}: {pipeline_family(pipe)}, {len(to_original(pipe))} tensors")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
