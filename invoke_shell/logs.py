"""Keep the user's screen clean: library warnings and logs go to <outdir>/invoke_shell.log
(and to the screen as well with --verbose)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

LOG_NAME = "invoke_shell.log"
log = logging.getLogger("invoke_shell")
_OURS = "invoke_shell_handler"  # marks the root handlers this module added


def route_logs(outdir: Path, verbose: bool) -> Path:
    """Records of every logger to <outdir>/invoke_shell.log (and stderr with --verbose).
    Calling it again replaces the handlers it added before instead of stacking more."""
    outdir.mkdir(parents=True, exist_ok=True)
    path = outdir / LOG_NAME
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "name", None) == _OURS]:
        root.removeHandler(old)
        old.close()
    root.setLevel(logging.INFO)
    handlers: list[logging.Handler] = [logging.FileHandler(path, encoding="utf-8")]
    if verbose:
        handlers.append(logging.StreamHandler(sys.stderr))
    for handler in handlers:
        handler.set_name(_OURS)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        root.addHandler(handler)
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
