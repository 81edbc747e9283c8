"""The line history file, or memory when the file cannot be used.

prompt_toolkit's FileHistory raises inside the event loop when its file cannot be read or
appended to ("Unhandled exception in event loop ... Press ENTER"), which swallows the line
typed. So the file is tried once before the prompt starts, and a write that fails later (the
folder removed, the disk full) switches to memory; either is said once.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path

from prompt_toolkit.history import FileHistory, History, InMemoryHistory


def open_history(path: Path | None, say: Callable[[str], None]) -> History:
    """A FileHistory on `path` (kept 0600, its folder made) if it can be read and appended
    to, otherwise an InMemoryHistory, with one line saying why."""
    if path is None or str(path) == os.devnull:
        return InMemoryHistory()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)  # needs read and write
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):  # a FIFO or /dev/zero would never end
                raise OSError(0, "not a regular file")
            if info.st_mode & 0o077 and info.st_uid == os.getuid():  # prompts can be private
                os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
    except OSError as e:
        say(_unusable(path, e))
        return InMemoryHistory()
    return _GuardedFileHistory(path, say)


def _unusable(path: Path, e: OSError) -> str:
    why = str(e.strerror or e)
    why = why[:1].lower() + why[1:]  # "Is a directory" as the tail of a sentence
    return f">> history file {path} cannot be used ({why}); this session's history is kept in memory only"


class _GuardedFileHistory(FileHistory):
    """FileHistory whose read and write failures are said once instead of raised. Undecodable
    bytes are already read with errors="replace" by FileHistory."""

    def __init__(self, path: Path, say: Callable[[str], None]) -> None:
        super().__init__(str(path))
        self.path, self.say, self.broken = path, say, False

    def load_history_strings(self) -> Iterable[str]:
        try:
            return list(super().load_history_strings())
        except OSError as e:
            self._give_up(e)
            return []

    def store_string(self, string: str) -> None:
        if self.broken:
            return  # already in memory only: the string is in this history's loaded strings
        try:
            super().store_string(string)
        except OSError as e:
            self._give_up(e)

    def _give_up(self, e: OSError) -> None:
        if not self.broken:
            self.broken = True
            self.say(_unusable(self.path, e))
