"""Keep the user's screen clean: library warnings and logs go to <outdir>/invoke_shell.log
(and to the screen as well with --verbose)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

LOG_NAME = "invoke_shell.log"
log = logging.getLogger("invoke_shell")
_OURS = "invoke_shell_handler"  # marks the root handlers this module added


class _LogFile(logging.FileHandler):
    """The log file. When it cannot be written (a full disk, a folder gone read-only, a path that is a folder or a symbolic link)
    that is said once on stderr and logging to it stops, instead of a "--- Logging error ---"
    traceback on the screen for every record."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, encoding="utf-8", delay=True)
        self.broken = path.is_symlink() or path.is_dir()
        if self.broken:
            print(f">> log file {path} is a folder or a symbolic link; nothing is logged to it", file=sys.stderr)
            return
        try:
            self.stream = self._open()
        except OSError as e:
            self.broken = True
            print(f">> log file {path} cannot be written ({e.strerror}); nothing is logged to it", file=sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        if not self.broken:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        if not self.broken:
            self.broken = True
            why = sys.exc_info()[1]
            print(f">> log file {self.baseFilename} cannot be written ({why}); logging to it stops", file=sys.stderr)


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
    handlers: list[logging.Handler] = [_LogFile(path)]
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
