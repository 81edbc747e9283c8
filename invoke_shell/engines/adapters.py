"""LoRAs and textual-inversion embeddings on the resident pipeline.

LoRAs load through diffusers' `load_lora_weights` (kohya / AUTOMATIC1111 files and diffusers /
PEFT files alike) as named adapters of the shared UNet and text encoder, so every pipeline view
sees them. Each image sets the adapters its prompt names, at their weights; an adapter that the
next image does not name is deleted, so a line without LoRAs runs the model exactly as loaded.
Embeddings are added to the tokenizer and text encoder once (both of them on SDXL), under
`<name>`, and stay: a token that no prompt uses changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from invoke_shell.engines import recipe
from invoke_shell.errors import UsageError

Wanted = tuple[str, Path, float]  # name, file, weight


class Adapters:
    def __init__(self, pipe: Any, refuse: bool = False) -> None:
        """`refuse`: the model runs with query/key/value fused (the GPU recipe); a LoRA needs them
        apart, so they are separated while LoRAs are applied and fused again after."""
        self.pipe = pipe
        self.refuse = refuse
        self.loras: dict[str, Path] = {}  # adapter name -> the file it came from
        self.embeddings: dict[str, Path] = {}  # token -> file
        self._weights: tuple[tuple[str, float], ...] = ()

    @property
    def state(self) -> tuple[Any, ...]:
        """What is applied to the text encoder now: a key under which prompt embeddings stay valid."""
        return tuple(sorted((a, str(p)) for a, p in self.loras.items())), self._weights, tuple(self.embeddings)

    def use_loras(self, wanted: Sequence[Wanted]) -> None:
        names = {_adapter(name): path for name, path, _ in wanted}
        stale = [a for a, path in self.loras.items() if names.get(a) != path]
        if stale:
            self.pipe.delete_adapters(stale)
            for a in stale:
                del self.loras[a]
        if wanted:
            recipe.unfuse(self.pipe)  # a LoRA's layers wrap the separate projections
        elif self.refuse and not self.loras and not getattr(self.pipe, "fusing_unet", False):
            recipe.fuse(self.pipe)
        for adapter, path in names.items():
            if adapter not in self.loras:
                try:
                    self.pipe.load_lora_weights(str(path), adapter_name=adapter)
                except (ValueError, KeyError, RuntimeError, OSError) as e:
                    raise UsageError(
                        f"{path.name} could not be loaded as a LoRA of this model ({_first_line(e)})",
                        "is it a LoRA for this model's family (SD 1.x, 2.x, XL)? kohya/AUTOMATIC1111 and "
                        "diffusers/PEFT .safetensors files are read",
                    ) from None
                self.loras[adapter] = path
        if wanted:
            self.pipe.set_adapters([_adapter(n) for n, _, _ in wanted], [w for _, _, w in wanted])
        self._weights = tuple((_adapter(n), w) for n, _, w in wanted)

    def use_embeddings(self, wanted: Sequence[tuple[str, Path]]) -> None:
        for name, path in wanted:
            token = f"<{name}>"
            if self.embeddings.get(token) == path:
                continue
            if token in self.embeddings:
                raise UsageError(
                    f"{token} is already loaded from {self.embeddings[token].name}",
                    "restart the shell to load another file under the same name",
                )
            self._load_embedding(token, path)
            self.embeddings[token] = path

    def _load_embedding(self, token: str, path: Path) -> None:
        tensors = _read(path)
        xl = "text_encoder_2" in self.pipe.components
        if xl and not {"clip_l", "clip_g"} <= tensors.keys():
            raise UsageError(
                f"{path.name} is not an SDXL embedding (it has no clip_l and clip_g vectors)",
                "an SDXL model needs an embedding trained for SDXL, with one vector set per text encoder",
            )
        if not xl and {"clip_l", "clip_g"} <= tensors.keys():
            raise UsageError(
                f"{path.name} is an SDXL embedding (one vector set per SDXL text encoder)",
                "use it with an SDXL model, or an embedding trained for this model's family",
            )
        # SDXL files hold one vector set per text encoder, each learned in that encoder's width
        p = self.pipe
        parts = (
            [(tensors["clip_l"], p.text_encoder, p.tokenizer), (tensors["clip_g"], p.text_encoder_2, p.tokenizer_2)]
            if xl
            else []
        )
        loaded = []
        try:
            if not xl:
                p.load_textual_inversion(tensors, token=token)
            for vectors, encoder, tokenizer in parts:
                p.load_textual_inversion(vectors, token=token, text_encoder=encoder, tokenizer=tokenizer)
                loaded.append((encoder, tokenizer))
        except (ValueError, KeyError, RuntimeError) as e:
            for encoder, tokenizer in loaded:  # no half-loaded token left in the first encoder
                p.unload_textual_inversion(token, tokenizer=tokenizer, text_encoder=encoder)
            raise UsageError(
                f"{path.name} could not be loaded as an embedding of this model ({_first_line(e)})",
                "its vectors must match the text encoder's width (768 for SD 1.x, 1024 for 2.x, 768 and 1280 for SDXL)",
            ) from None


def _read(path: Path) -> dict[str, Any]:
    """An embedding's tensors: safetensors, or a pickle (.pt, .bin) read with weights_only=True,
    which refuses anything but tensors and plain values, so a pickle cannot run code."""
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path)))
    import torch

    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # the unpickler's refusals have many types
        raise UsageError(
            f"{path.name} is not a plain embedding ({_first_line(e)})", "use a .safetensors embedding"
        ) from None
    if not isinstance(data, dict):
        raise UsageError(f"{path.name} is not an embedding (no table of tensors)", "use a .safetensors embedding")
    return data


def _adapter(name: str) -> str:
    return "lora_" + re.sub(r"\W", "_", name)  # PEFT adapter names end up in module paths


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
