"""Where the LoRAs and embeddings a prompt names are found: a `loras/` and an `embeddings/`
folder (`loras:` / `embeddings:` in models.yaml, or the launch flags), a file per name."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from invoke_shell.errors import UsageError, did_you_mean, quoted

LORA_SUFFIXES = (".safetensors",)
EMBEDDING_SUFFIXES = (".safetensors", ".pt", ".bin")


@dataclass(frozen=True)
class AddOns:
    loras: Path | None = None
    embeddings: Path | None = None

    def lora_file(self, name: str) -> Path:
        found = _find(self.loras, name, LORA_SUFFIXES)
        if found is not None:
            return found
        if self.loras is None or not self.loras.is_dir():
            where = f"the LoRA folder {self.loras} does not exist" if self.loras else "no LoRA folder is set"
            raise UsageError(
                f"the prompt names the LoRA {quoted(name)}, but {where}",
                "give one with `loras:` in models.yaml or the launch flag --loras DIR (NAME.safetensors per LoRA)",
            )
        known = names(self.loras, LORA_SUFFIXES)
        guess = did_you_mean(name, known)
        raise UsageError(
            f"no LoRA {quoted(name)} in {self.loras}",
            (f"did you mean {guess}? " if guess else "")
            + ("known: " + ", ".join(known[:12]) if known else "the folder has no .safetensors files"),
        )

    def embedding_file(self, name: str) -> Path | None:
        """None: `<name>` is plain prompt text (no embedding of that name)."""
        return _find(self.embeddings, name, EMBEDDING_SUFFIXES)


def names(folder: Path | None, suffixes: tuple[str, ...]) -> list[str]:
    if folder is None or not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.iterdir() if p.suffix.lower() in suffixes and p.is_file())


def short_hash(path: Path) -> str:
    """The first 10 hex digits of the file's sha256, as the PNG records a LoRA."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:10]


def _find(folder: Path | None, name: str, suffixes: tuple[str, ...]) -> Path | None:
    if folder is None or "/" in name or "\\" in name or name.startswith("."):
        return None
    for suffix in suffixes:
        path = folder / f"{name}{suffix}"
        if path.is_file():
            return path
    return None
