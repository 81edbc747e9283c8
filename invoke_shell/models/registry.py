"""configs/models.yaml: which models exist, where their weights are, and their defaults.

    default: tiny-shapes
    models:
      tiny-shapes:
        description: ...
        path: package:models/tiny_shapes/model   # inside this package
        width: 64                          # any switch default: steps, cfg_scale, sampler, ...
      sd-1.5:
        path: ~/models/v1-5-pruned-emaonly.safetensors
        config: sd-1.5                     # a folder of diffusers configs, beside models.yaml

Pure: reading the file imports no torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from invoke_shell.errors import UsageError, did_you_mean
from invoke_shell.params import BY_NAME, MODEL_DEFAULTS

PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # invoke_shell/
DEFAULT_CONFIG = Path("configs/models.yaml")


@dataclass(frozen=True)
class ModelEntry:
    name: str
    path: Path
    description: str = ""
    config: Path | None = None  # diffusers config folder for single-file checkpoints
    allow_pickle: bool = False
    defaults: dict[str, Any] = field(default_factory=dict)  # switch defaults: steps, width, ...

    @property
    def is_single_file(self) -> bool:
        return self.path.suffix in (".safetensors", ".ckpt", ".pt", ".pth", ".bin")


@dataclass(frozen=True)
class Registry:
    models: dict[str, ModelEntry]
    default: str
    source: Path

    def get(self, name: str | None) -> ModelEntry:
        name = name or self.default
        if name not in self.models:
            guess = did_you_mean(name, self.models)
            raise UsageError(f"no model named {name!r} in {self.source}",
                             (f"did you mean {guess}? " if guess else "") + "known models: " + ", ".join(self.models))
        return self.models[name]


BUILTIN = """
default: tiny-shapes
models:
  tiny-shapes:
    path: package:models/tiny_shapes/model
    width: 64
    height: 64
    steps: 25
    cfg_scale: 3.0
    sampler: ddim
"""


def builtin_config() -> Path | None:
    """configs/models.yaml of the source tree this package runs from, if there is one."""
    here = PACKAGE_ROOT.parent / "configs" / "models.yaml"
    return here if here.exists() else None


def load_registry(path: Path | None) -> Registry:
    import yaml

    if path is None:
        path = DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else builtin_config()
    if path is None:  # installed without the source tree: the embedded model alone
        path, text = PACKAGE_ROOT / "models.yaml", BUILTIN
    elif not path.exists():
        raise UsageError(f"model config {path} does not exist", "pass --config FILE, e.g. configs/models.yaml")
    else:
        text = path.read_text()
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise UsageError(f"{path} is not valid YAML: {e}".splitlines()[0], "fix the file or pass another --config") from None
    models = {}
    for name, spec in (raw.get("models") or {}).items():
        if not isinstance(spec, dict) or "path" not in spec:
            raise UsageError(f"model {name!r} in {path} has no path", "give each model a `path:`")
        defaults = {k: v for k, v in spec.items() if k in BY_NAME}
        models[name] = ModelEntry(
            name=name,
            path=_resolve(spec["path"], path),
            description=spec.get("description", ""),
            config=_resolve(spec["config"], path) if spec.get("config") else None,
            allow_pickle=bool(spec.get("allow_pickle", False)),
            defaults={**MODEL_DEFAULTS, **defaults},
        )
    if not models:
        raise UsageError(f"{path} lists no models", "add an entry under `models:`")
    default = raw.get("default") or next(iter(models))
    return Registry(models, default, path)


def _resolve(value: str, config_file: Path) -> Path:
    if value.startswith("package:"):
        return PACKAGE_ROOT / value.removeprefix("package:")
    p = Path(value).expanduser()
    return p if p.is_absolute() else (config_file.parent / p).resolve()
