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

Every value is checked when the file is read, with the converters the line parser uses, so a
bad value is reported with the file, the model, the key and the allowed range. Pure: reading
the file imports no torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from invoke_shell.errors import UsageError, did_you_mean
from invoke_shell.line.parsing import convert
from invoke_shell.line.switches import BY_NAME, SWITCHES, model_defaults

PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # invoke_shell/
DEFAULT_CONFIG = Path("configs/models.yaml")
ENTRY_KEYS = ("path", "description", "config", "allow_pickle")
SWITCH_KEYS = tuple(s.name for s in SWITCHES if s.model_default)


@dataclass(frozen=True)
class ModelEntry:
    name: str
    path: Path
    description: str = ""
    config: Path | None = None  # diffusers config folder for single-file checkpoints
    allow_pickle: bool = False
    defaults: dict[str, Any] = field(default_factory=lambda: model_defaults({}))  # steps, width, ...

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
            raise UsageError(
                f"no model named {name!r} in {self.source}",
                (f"did you mean {guess}? " if guess else "") + "known models: " + ", ".join(self.models),
            )
        return self.models[name]


BUILTIN = """
default: tiny-shapes
models:
  tiny-shapes:
    description: the embedded 64x64 shapes model
    path: package:models/tiny_shapes/model
    width: 64
    height: 64
    steps: 25
    cfg_scale: 3.0
    sampler: ddim
"""


def source_tree_config() -> Path | None:
    """configs/models.yaml of the source tree this package runs from, if there is one."""
    here = PACKAGE_ROOT.parent / "configs" / "models.yaml"
    return here if here.exists() else None


def builtin_registry() -> Registry:
    """The embedded model alone: what the shell starts on when no config can be used."""
    return parse_registry(BUILTIN, PACKAGE_ROOT / "models.yaml")


def load_registry(path: Path | None) -> Registry:
    if path is None:
        path = DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else source_tree_config()
    if path is None:  # installed without the source tree
        return builtin_registry()
    if not path.exists():
        raise UsageError(f"model config {path} does not exist", "pass --config FILE, e.g. configs/models.yaml")
    return parse_registry(path.read_text(encoding="utf-8"), path)


def parse_registry(text: str, path: Path) -> Registry:
    import yaml

    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise UsageError(
            f"{path} is not valid YAML: {e}".splitlines()[0], "fix the file or pass another --config"
        ) from None
    if not isinstance(raw, dict) or not isinstance(raw.get("models") or {}, dict):
        raise UsageError(f"{path} must hold `models:` with one entry per model", "see configs/models.yaml")
    models = {str(name): _entry(str(name), spec, path) for name, spec in (raw.get("models") or {}).items()}
    if not models:
        raise UsageError(f"{path} lists no models", "add an entry under `models:`")
    default = str(raw.get("default") or next(iter(models)))
    if default not in models:
        raise UsageError(f"{path}: default {default!r} is not one of its models", "known models: " + ", ".join(models))
    return Registry(models, default, path)


def _entry(name: str, spec: Any, path: Path) -> ModelEntry:
    where = f"{path}, model {name!r}"
    if not isinstance(spec, dict) or "path" not in spec:
        raise UsageError(f"{where} has no path", "give each model a `path:`")
    values: dict[str, Any] = {}
    for key, value in spec.items():
        if key in ENTRY_KEYS:
            continue
        if key not in SWITCH_KEYS:
            guess = did_you_mean(str(key), (*SWITCH_KEYS, *ENTRY_KEYS))
            raise UsageError(
                f"{where}: unknown key {key!r}",
                (f"did you mean {guess}? " if guess else "") + "keys: " + ", ".join((*ENTRY_KEYS, *SWITCH_KEYS)),
            )
        sw = BY_NAME[key]
        try:  # the line parser's converter: same types, ranges and choices as a typed value
            values[key] = convert(sw, str(value).lower() if isinstance(value, bool) else str(value))
        except UsageError as e:
            raise UsageError(
                f"{where}, key {key}: {e.message}", f"allowed: {sw.describe_range() or sw.kind.__name__}"
            ) from None
    for dim in ("width", "height"):
        if dim in values and values[dim] % 8:
            raise UsageError(f"{where}, key {dim}: must be a multiple of 8, got {values[dim]}", "e.g. 512")
    if not isinstance(spec.get("allow_pickle", False), bool):
        raise UsageError(f"{where}, key allow_pickle: must be true or false", "allow_pickle: true")
    return ModelEntry(
        name=name,
        path=_resolve(str(spec["path"]), path),
        description=str(spec.get("description", "")),
        config=_resolve(str(spec["config"]), path) if spec.get("config") else None,
        allow_pickle=spec.get("allow_pickle", False),
        defaults=model_defaults(values),
    )


def _resolve(value: str, config_file: Path) -> Path:
    if value.startswith("package:"):
        return PACKAGE_ROOT / value.removeprefix("package:")
    p = Path(value).expanduser()
    return p if p.is_absolute() else (config_file.parent / p).resolve()
