"""Adding and removing entries of models.yaml, keeping its comments, order and layout
(ruamel.yaml's round trip). The new text is checked by the registry's own parser before it
replaces the file, and it replaces it in one rename, so a failed edit leaves the file as it was.
The weights an entry names are never touched."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Any

from invoke_shell.errors import UsageError, quoted
from invoke_shell.models.registry import Registry, parse_registry

NAME = re.compile(r"[A-Za-z0-9][\w.\-]{0,63}")


def check_name(name: str, registry: Registry) -> None:
    if not NAME.fullmatch(name):
        raise UsageError(
            f"{quoted(name)} is not a model name", "use letters, digits, '.', '-' and '_' (up to 64), e.g. my-model"
        )
    if name in registry.models:
        raise UsageError(f"a model named {name!r} is already in {registry.source}", "choose another name")


def add_entry(registry: Registry, name: str, values: dict[str, Any]) -> Registry:
    """`registry`'s file with one more entry at the end of `models:`; the new registry."""
    check_name(name, registry)
    data = _load(registry)
    data["models"][name] = dict(values)
    return _save(registry, data)


def remove_entry(registry: Registry, name: str) -> Registry:
    """`registry`'s file without the entry `name` (its weights stay where they are)."""
    data = _load(registry)
    del data["models"][name]
    return _save(registry, data)


def _yaml() -> Any:
    from ruamel.yaml import YAML

    yaml = YAML()  # round trip: comments, key order and quoting are kept
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096  # long values stay on their line: the user's file changes only where it must
    return yaml


def _editable(registry: Registry) -> Path:
    path = registry.source
    if not path.is_file():
        raise UsageError(
            "the shell runs on its built-in model list, which is not a file it can edit",
            "start it with --config FILE (e.g. configs/models.yaml) to add or remove models",
        )
    return path


def _load(registry: Registry) -> Any:
    return _yaml().load(_editable(registry).read_text(encoding="utf-8"))


def _save(registry: Registry, data: Any) -> Registry:
    path = _editable(registry)
    out = io.StringIO()
    _yaml().dump(data, out)
    text = out.getvalue()
    new = parse_registry(text, path)  # the file as the shell will read it, checked before it is written
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.chmod(tmp, path.stat().st_mode & 0o777)  # the user's permissions stay as they were
        os.replace(tmp, path)  # readers see the old file or the new one, never half of one
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"{path} could not be written ({e.strerror or e})", "check its folder's permissions") from None
    return new
