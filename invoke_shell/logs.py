"""Keep the user's screen clean: library warnings and logs go to <outdir>/invoke_shell.log
(and to the screen as well with --verbose)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

LOG_NAME = "invoke_shell.log"
log = logging.getLogger("invoke_shell")


def quiet_environment() -> None:
    """Before any heavy import: no hub access, no download progress bars."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def route_logs(outdir: Path, verbose: bool) -> Path:
    outdir.mkdir(parents=True, exist_ok=True)
    path = outdir / LOG_NAME
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root.addHandler(handler)
    if verbose:
        root.addHandler(logging.StreamHandler(sys.stderr))
    logging.captureWarnings(True)
    return path


def route_library_logs() -> None:
    """After diffusers and transformers are imported: their handlers off, records to ours."""
    import diffusers.utils.logging as dlog
    import transformers.utils.logging as tlog

    for lib in (dlog, tlog):
        lib.disable_default_handler()
        lib.enable_propagation()
        lib.disable_progress_bar()
        lib.set_verbosity_info()
