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
      sd-2.1:
        path: hf:stabilityai/stable-diffusion-2-1   # a repo already in the Hugging Face cache
        family: sd-2                       # overrides what the loader detects (families.FAMILIES)
        prediction_type: v_prediction      # epsilon or v_prediction
        vae: ~/models/vae.safetensors      # another VAE

Every value is checked when the file is read, with the converters the line parser uses; any
mistake (a bad value, a list where a mapping belongs, bad YAML, binary bytes) is one UsageError
naming the file, the line and the key path, with the allowed range. Pure: imports no torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from invoke_shell.errors import UsageError, did_you_mean, quoted
from invoke_shell.line.parsing import convert
from invoke_shell.line.switches import BY_NAME, SWITCHES, Switch, model_defaults
from invoke_shell.models.families import FAMILIES, PREDICTION_TYPES, native_side

PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # invoke_shell/
DEFAULT_CONFIG = Path("configs/models.yaml")
TOP_KEYS = ("default", "models", "wildcards", "loras", "embeddings")
ENTRY_KEYS = ("path", "description", "config", "allow_pickle", "family", "prediction_type", "vae")
SWITCH_KEYS = tuple(s.name for s in SWITCHES if s.model_default)
WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")  # single-file weights, lower case


@dataclass(frozen=True)
class ModelEntry:
    name: str
    path: Path
    description: str = ""
    config: Path | None = None  # diffusers config folder for single-file checkpoints
    allow_pickle: bool = False
    family: str | None = None  # overrides the family detected from a checkpoint (families.FAMILIES)
    prediction_type: str | None = None  # overrides the family's: epsilon or v_prediction
    vae: Path | None = None  # another VAE: a diffusers folder or a single file
    repo_id: str | None = None  # `path: hf:owner/name`: a Hugging Face cache entry already on disk
    defaults: dict[str, Any] = field(default_factory=lambda: model_defaults({}))  # steps, width, ...

    @property
    def is_single_file(self) -> bool:
        # MODEL.CKPT is a checkpoint too; a Hugging Face cache entry is always a folder
        return self.repo_id is None and self.path.suffix.lower() in WEIGHT_SUFFIXES


@dataclass(frozen=True)
class Registry:
    models: dict[str, ModelEntry]
    default: str
    source: Path
    wildcards: Path | None = None  # the folder of __name__ wildcard lists, relative to the file
    loras: Path | None = None  # the folder of LoRA files prompts name with <lora:NAME:W>
    embeddings: Path | None = None  # the folder of textual-inversion embeddings (<NAME> in a prompt)

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
loras: package:models/tiny_shapes/loras
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
    try:
        data = path.read_bytes()
    except OSError as e:  # a folder, no permission, ...
        why = e.strerror or str(e)
        raise UsageError(f"model config {path} cannot be read ({why.lower()})", "pass --config FILE") from None
    return parse_registry(data, path)


def parse_registry(data: str | bytes, path: Path) -> Registry:
    """Walk the YAML node tree rather than the loaded dict: nodes carry line numbers, so every
    mistake names the file, the line and the key path, e.g. `line 7: models.sd15.width: ...`."""
    root = _compose(data, path)
    if root is None:
        _fail(path, None, "", "the file is empty (or all comments)", "list models under `models:`, each with a `path:`")
    top = _mapping(root, path, "", "a mapping with `default:` and `models:`")
    for key, (key_node, _) in top.items():
        if key not in TOP_KEYS:
            _unknown(path, key_node, key, TOP_KEYS)
    if "models" not in top:
        _fail(path, root, "", "the file has no `models:`", "list models under `models:`, each with a `path:`")
    listing = top["models"][1]
    if _is_null(listing):
        _fail(path, listing, "models", "lists no models", "add an entry under `models:`, with its `path:`")
    specs = _mapping(listing, path, "models", "a mapping of model names to their settings")
    models = {name: _entry(name, key_node, spec, path) for name, (key_node, spec) in specs.items()}
    if not models:
        _fail(path, listing, "models", "lists no models", "add an entry under `models:`, with its `path:`")
    default = next(iter(models))  # no `default:`: the first model
    if "default" in top:
        node = top["default"][1]
        default = _text(node, path, "default", "a model name")
        if default not in models:
            guess = did_you_mean(default, models)
            _fail(
                path,
                node,
                "default",
                f"{quoted(default)} is not one of its models",
                (f"did you mean {guess}? " if guess else "") + "known models: " + ", ".join(models),
            )
    folders = {
        key: _resolve(_text(top[key][1], path, key, "a folder path"), path) if key in top else None
        for key in ("wildcards", "loras", "embeddings")
    }
    return Registry(models, default, path, **folders)


def _entry(name: str, key_node: Any, spec: Any, path: Path) -> ModelEntry:
    import yaml

    where = f"models.{name}"
    if _is_null(spec):
        _fail(path, key_node, where, "has no settings", "give it at least a `path:`")
    items = _mapping(spec, path, where, "a mapping of settings (path:, width:, ...)")
    if "path" not in items:
        _fail(path, key_node, where, "has no `path:`", "give each model a `path:` to its weights")
    values: dict[str, Any] = {}
    for key, (knode, node) in items.items():
        at = f"{where}.{key}"
        if key not in (*ENTRY_KEYS, *SWITCH_KEYS):
            _unknown(path, knode, at, (*SWITCH_KEYS, *ENTRY_KEYS))
        if key in ENTRY_KEYS:
            continue
        if not isinstance(node, yaml.ScalarNode) or _is_null(node):
            _fail(path, node, at, f"must be one value, got {_kind(node)}", f"e.g. {key}: {BY_NAME[key].example}")
        values[key] = _switch_value(BY_NAME[key], node, path, at)
    pickle = items.get("allow_pickle", (None, None))[1]
    if pickle is not None and pickle.tag != "tag:yaml.org,2002:bool":
        _fail(
            path, pickle, f"{where}.allow_pickle", f"must be true or false, got {_kind(pickle)}", "allow_pickle: true"
        )
    config = items.get("config")
    family = _choice(items, "family", tuple(FAMILIES), path, where)
    prediction = _choice(items, "prediction_type", PREDICTION_TYPES, path, where)
    vae = items.get("vae")
    if family is not None:  # the family's native size unless the entry says otherwise
        values.setdefault("width", FAMILIES[family].size)
        values.setdefault("height", FAMILIES[family].size)
    weights = _text(items["path"][1], path, f"{where}.path", "a file or folder path")
    repo_id = weights.removeprefix("hf:") if weights.startswith("hf:") else None
    if repo_id is not None and not re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id):
        _fail(
            path, items["path"][1], f"{where}.path", f"{quoted(weights)} is not a repo id", "e.g. path: hf:owner/name"
        )
    side = None if repo_id or "width" in values or "height" in values else native_side(_resolve(weights, path))
    if side is not None:  # the size the weights were trained at (SDXL: 1024) unless the entry says
        values.setdefault("width", side)
        values.setdefault("height", side)
    return ModelEntry(
        name=name,
        path=Path(weights) if repo_id else _resolve(weights, path),
        description=_text(items["description"][1], path, f"{where}.description", "text", any_scalar=True)
        if "description" in items
        else "",
        config=_resolve(_text(config[1], path, f"{where}.config", "a folder path"), path) if config else None,
        allow_pickle=pickle is not None and pickle.value.lower() in ("true", "yes", "on"),
        family=family,
        prediction_type=prediction,
        vae=_resolve(_text(vae[1], path, f"{where}.vae", "a file or folder path"), path) if vae else None,
        repo_id=repo_id,
        defaults=model_defaults(values),
    )


def _choice(
    items: dict[str, tuple[Any, Any]], key: str, allowed: tuple[str, ...], path: Path, where: str
) -> str | None:
    if key not in items:
        return None
    node = items[key][1]
    value = _text(node, path, f"{where}.{key}", "one of " + ", ".join(allowed))
    if value not in allowed:
        guess = did_you_mean(value, allowed)
        _fail(
            path,
            node,
            f"{where}.{key}",
            f"{quoted(value)} is not one of " + ", ".join(allowed),
            (f"did you mean {guess}? " if guess else "") + f"e.g. {key}: {allowed[0]}",
        )
    return value


def _switch_value(sw: Switch, node: Any, path: Path, at: str) -> Any:
    """The value as the line parser would take it typed after the switch (the raw text, so
    `.nan` or `yes` is refused as it would be at the prompt)."""
    try:
        value = convert(sw, node.value)
    except UsageError as e:  # the parser's words, naming the key instead of the switch
        problem = e.message.replace(f" for {sw.shown}", "").removeprefix(f"{sw.shown} ")
        guess = (e.hint or "").partition("? ")[0] + "? " if (e.hint or "").startswith("did you mean") else ""
        hint = f"{guess}allowed: {sw.describe_range()}, e.g. {sw.name}: {sw.example}"
        _fail(path, node, at, problem, hint)
    if sw.name in ("width", "height") and value % 8:
        _fail(
            path,
            node,
            at,
            f"{value} is not a multiple of 8",
            f"use {value - value % 8 or 8} or {value - value % 8 + 8}",
        )
    return value


def _compose(data: str | bytes, path: Path) -> Any:
    import yaml

    try:
        text = data.decode("utf-8-sig") if isinstance(data, bytes) else data
    except UnicodeDecodeError as e:
        bad = e.object[e.start]
        line = e.object[: e.start].count(b"\n") + 1
        _fail(
            path, line, "", f"the file is not UTF-8 text (byte 0x{bad:02x})", "is it the right file? save it as UTF-8"
        )
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark, start = e.problem_mark or e.context_mark, e.context_mark
        context = ""
        if e.context and start and mark and start.line != mark.line:  # where an unclosed thing began
            context = f" ({e.context} that starts on line {start.line + 1})"
        _fail(path, mark.line + 1 if mark else 1, "", f"not valid YAML: {e.problem}{context}", "fix the file")
    except yaml.reader.ReaderError as e:  # a control character
        line = text[: e.position].count("\n") + 1
        _fail(
            path,
            line,
            "",
            f"the file holds a character YAML does not allow (code {e.character})",
            "is it the right file?",
        )
    except RecursionError:
        _fail(path, 1, "", "the file is nested too deeply to read", "is it the right file?")


def _mapping(node: Any, path: Path, at: str, what: str) -> dict[str, tuple[Any, Any]]:
    """{key text: (key node, value node)} of a mapping node; a list, text or a repeated key is
    a mistake (yaml.safe_load would keep the last of a repeated key without a word)."""
    import yaml

    if not isinstance(node, yaml.MappingNode):
        problem = f"must be {what}, got {_kind(node)}"
        _fail(path, node, at, problem if at else "the file " + problem, "see configs/models.yaml")
    items: dict[str, tuple[Any, Any]] = {}
    for key, value in node.value:
        if not isinstance(key, yaml.ScalarNode) or _is_null(key):
            _fail(path, key, at, f"has a key that is {_kind(key)}", "keys are plain names")
        if key.value in items:
            first = items[key.value][0].start_mark.line + 1
            _fail(
                path,
                key,
                f"{at}.{key.value}" if at else key.value,
                f"is given twice (first on line {first})",
                "keep one",
            )
        items[key.value] = (key, value)
    return items


def _text(node: Any, path: Path, at: str, what: str, any_scalar: bool = False) -> str:
    """A string value; a number where a path belongs is a slip (`path: 5`), refused."""
    import yaml

    if not isinstance(node, yaml.ScalarNode) or _is_null(node) or not (any_scalar or node.tag.endswith(":str")):
        _fail(
            path,
            node,
            at,
            f"must be {what}, got {_kind(node)}",
            "write it as text, in quotes if it looks like a number",
        )
    return str(node.value)


def _is_null(node: Any) -> bool:
    return bool(node.tag == "tag:yaml.org,2002:null")


def _kind(node: Any) -> str:
    import yaml

    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    kind = node.tag.rpartition(":")[2]
    if kind == "null" or not node.value:
        return "nothing"
    if kind in ("int", "float"):
        return f"the number {node.value}"
    return {"bool": f"{node.value}", "str": f"the text {quoted(node.value)}"}.get(
        kind, f"a {kind} ({quoted(node.value)})"
    )


def _unknown(path: Path, node: Any, at: str, keys: tuple[str, ...]) -> NoReturn:
    name = str(node.value)
    guess = did_you_mean(name, keys)
    _fail(path, node, at, "unknown key", (f"did you mean {guess}? " if guess else "") + "keys: " + ", ".join(keys))


def _fail(path: Path, where: Any, at: str, problem: str, hint: str) -> NoReturn:
    """One message: the file, the line (a node's, or a number) and the key path."""
    line = where if isinstance(where, int) else where.start_mark.line + 1 if where is not None else 1
    raise UsageError(f"{path} line {line}: " + (f"{at}: " if at else "") + problem, hint)


def _resolve(value: str, config_file: Path) -> Path:
    if value.startswith("package:"):
        return PACKAGE_ROOT / value.removeprefix("package:")
    p = Path(value).expanduser()
    return p if p.is_absolute() else (config_file.parent / p).resolve()
