from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hypothesis import settings

from invoke_shell.models.addons import AddOns

# CI gates a merge, so there the property tests draw the same cases every run; locally they
# draw new ones each time and find new failures.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

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

    return StableDiffusionPipeline.from_pretrained(
        str(tiny_config.parent / "model"), local_files_only=True, safety_checker=None, requires_safety_checker=False
    )


@pytest.fixture(scope="session")
def engine(tiny_pipe):
    from invoke_shell.engines.generate import Engine

    return Engine(tiny_pipe)


def open_shell(config: Path, outdir: Path, model: str | None = None, addons=None):
    """A Shell over a real worker thread and model session, its model loaded; collects what it
    prints in `shell.lines`. Load failures that are bugs raise here."""
    from invoke_shell.models.loader import load_model
    from invoke_shell.models.registry import load_registry
    from invoke_shell.session.session import ModelSession
    from invoke_shell.shell.repl import Shell

    lines: list[str] = []
    registry = load_registry(config)
    entry = registry.get(model)
    session = ModelSession(registry, lambda e: load_model(e, "cpu", "fp32"), outdir, lines.append, addons=addons)
    shell = Shell(registry, entry, session, printer=lines.append, raise_errors=True)
    shell.lines = lines
    shell.load_first_model(wait=True)
    return shell


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """A Shell over the shipped configs/models.yaml (the embedded tiny-shapes model, its wildcards
    and LoRAs) and a real worker thread, shared by a module's tests; `shell.out` is its outdir."""
    out = tmp_path_factory.mktemp("shapes")
    shell = open_shell(Path(__file__).parent.parent / "configs" / "models.yaml", out)
    shell.out = out
    yield shell
    shell.close()


@pytest.fixture
def make_shell(tiny_config, tmp_path):
    """Shells over the tiny random model, writing to tmp_path/out unless told otherwise."""
    made = []

    def make(outdir: Path | None = None, config: Path | None = None):
        shell = open_shell(config or tiny_config, outdir or tmp_path / "out")
        made.append(shell)
        return shell

    yield make
    for shell in made:
        shell.close()


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test: every load must be from disk.
    (Unix sockets stay allowed: they are local, e.g. tmux's.)"""
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args or kwargs}")

    real_connect = socket.socket.connect

    def connect(self, address):
        if self.family == getattr(socket, "AF_UNIX", None):
            return real_connect(self, address)
        refuse(address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture(scope="session")
def addons(tiny_config, tmp_path_factory) -> AddOns:
    """A random LoRA for the tiny model in diffusers/PEFT form and the same weights in kohya
    form, and embeddings for its 32-wide text encoder."""
    import pickle

    import torch
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("addons")
    loras, embeddings = root / "loras", root / "embeddings"
    loras.mkdir()
    embeddings.mkdir()
    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_config.parent / "model"), local_files_only=True)
    torch.manual_seed(0)
    targets = ["to_q", "to_k", "to_v", "to_out.0"]
    pipe.unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=targets, init_lora_weights=False))
    state = {k: v * 4 for k, v in get_peft_model_state_dict(pipe.unet).items()}  # strong enough to see
    StableDiffusionPipeline.save_lora_weights(loras, unet_lora_layers=state, weight_name="thick.safetensors")
    kohya = {}
    for (
        key,
        value,
    ) in state.items():  # down_blocks.0...to_q.lora_A.weight -> lora_unet_down_blocks_0_..._to_q.lora_down.weight
        module, _, rest = key.rpartition(".lora_")
        kohya[f"lora_unet_{module.replace('.', '_')}.lora_{'down' if rest.startswith('A') else 'up'}.weight"] = value
        kohya[f"lora_unet_{module.replace('.', '_')}.alpha"] = torch.tensor(4.0)
    save_file(kohya, str(loras / "thick-kohya.safetensors"))
    save_file({"emb_params": torch.randn(1, 32) * 3}, str(embeddings / "star.safetensors"))
    vector = torch.randn(1, 32) * 3
    torch.save({"string_to_param": {"*": vector}, "name": "spiky", "step": 100}, embeddings / "spiky.pt")
    (embeddings / "evil.pt").write_bytes(pickle.dumps(print))  # a pickle that names a callable
    return AddOns(loras, embeddings)
