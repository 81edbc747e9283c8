"""The thin shell: read a line, parse it, dispatch it, show what happened.

Imports no torch: the worker thread owns the model. Reads from a prompt_toolkit session in a
terminal, or line by line from standard input when that is a pipe or a file.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path

from invoke_shell.commands import run_command
from invoke_shell.errors import Cancelled, UsageError
from invoke_shell.inputs import check_init_path
from invoke_shell.models.registry import ModelEntry, Registry
from invoke_shell.parsing import parse_line
from invoke_shell.request import ShellCommand
from invoke_shell.worker import Job, Worker, is_recall

QUIT = {"q", "quit", "exit"}


class Shell:
    def __init__(self, registry: Registry, entry: ModelEntry, worker: Worker,
                 printer: Callable[[str], None] = print, raise_errors: bool = False) -> None:
        self.registry = registry
        self.model_entry = entry
        self.worker = worker
        self.print = printer
        self.raise_errors = raise_errors  # tests see bugs as exceptions; users see a short report
        self.pending_edit = ""  # text for the next prompt's buffer (!N, !fetch)
        self.interactive = False  # in a terminal: lines queue up and the prompt comes back at once
        worker.report = self._report_background_error

    def edit(self, command: str) -> None:
        """Offer `command` for editing: in the next prompt's buffer, or printed when piped."""
        if self.interactive:
            self.pending_edit = command
        else:
            self.print(command)

    def replay(self, path: Path) -> None:
        """Run a file of commands; a bad line is reported with its number and the rest still run."""
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            self.print(f"invoke> {line}    ({path.name}:{number})")
            if not self.handle(line, where=f"{path.name} line {number}"):
                return

    def handle(self, line: str, where: str | None = None) -> bool:
        """Run one line; False when the user asked to leave. `where` prefixes error messages."""
        if line.strip() in QUIT:
            return False
        try:
            parsed = parse_line(line, self.model_entry.defaults)
            if parsed is None:
                return True
            if isinstance(parsed, ShellCommand):
                run_command(self, parsed.name, parsed.args)
                return True
            if parsed.init_img and not is_recall(parsed.init_img):
                check_init_path(parsed.init_img)
            job = Job(parsed, line=line.strip())
            if not self.interactive:
                self.wait(self.worker.submit(job))
                return True
            job.background = True
            ahead = len(self.worker.queued()) + (self.worker.current is not None)
            self.worker.submit(job)
            if not self.worker.ready.is_set():
                self.print(">> queued: the model is still loading")
            elif ahead:
                self.print(f">> queued ({ahead} ahead of it; !queue lists them)")
        except UsageError as e:
            self.print(f"{where}: {e.show()}" if where else e.show())
        except Exception as e:
            if self.raise_errors:
                raise
            self.report_bug(e)
        return True

    def switch_model(self, entry: ModelEntry) -> None:
        job = self.wait(self.worker.submit(Job(None, model=entry.name)))
        if job.error is None:
            self.model_entry = entry

    def wait(self, job: Job) -> Job:
        """Block until the job is done; Ctrl-C cancels it within one step."""
        if not self.worker.ready.is_set() and job.request is not None:
            self.print(">> waiting for the model to finish loading...")
        while True:
            try:
                while not job.done.wait(0.05):
                    pass
                break
            except KeyboardInterrupt:
                job.cancel.set()
                self.print(">> cancelling...")
        if job.error is not None:
            self._show_job_error(job.error)
        return job

    def _report_background_error(self, e: BaseException, line: str) -> None:
        try:
            if not isinstance(e, Cancelled):
                self.print(f">> in queued line: {line}")
            self._show_job_error(e, raise_bugs=False)
        except Exception:  # reporting must never take the worker down
            pass

    def cancel_running(self) -> bool:
        job = self.worker.current
        if job is None or job.request is None:
            return False
        job.cancel.set()
        return True

    def finish_queue(self) -> None:
        """On leaving: let queued lines finish (Ctrl-C drops them and stops the running one)."""
        if not self.worker.busy():
            return
        self.print(f">> finishing {len(self.worker.queued()) + 1} line(s) before leaving; Ctrl-C stops them")
        try:
            while self.worker.busy():
                time.sleep(0.05)
        except KeyboardInterrupt:
            for _ in self.worker.queued():
                self.worker.drop(1)
            self.cancel_running()

    def _show_job_error(self, e: BaseException, raise_bugs: bool = True) -> None:
        if isinstance(e, Cancelled):
            self.print(f">> generation cancelled at step {e.step}; the model is still loaded")
        elif isinstance(e, UsageError):
            self.print(e.show())
        elif self.raise_errors and raise_bugs:
            raise e
        else:
            self.report_bug(e)

    def report_bug(self, e: BaseException) -> None:
        from invoke_shell.logs import log

        log.error("unexpected error\n%s", "".join(traceback.format_exception(e)))
        last = traceback.extract_tb(e.__traceback__)[-1:] if e.__traceback__ else []
        where = f" ({Path(last[0].filename).name}:{last[0].lineno})" if last else ""
        self.print(f"error: unexpected {type(e).__name__}: {e}{where}\n"
                   "  the shell is still running; the full traceback is in the log file")

    # ---- the loops

    def run_lines(self, lines: Iterable[str], echo: bool = True) -> None:
        for line in lines:
            line = line.rstrip("\n")
            if echo:
                self.print(f"invoke> {line}")
            if not self.handle(line):
                return

    def run_interactive(self, history_file: Path | None, **session_options) -> None:
        """The prompt loop. `session_options` (input=, output=) let tests drive a real session."""
        from prompt_toolkit import PromptSession
        from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
        from prompt_toolkit.history import FileHistory, InMemoryHistory
        from prompt_toolkit.key_binding import KeyBindings
        from prompt_toolkit.patch_stdout import patch_stdout

        from invoke_shell.completion import ShellCompleter

        keys = KeyBindings()

        @keys.add("c-c")
        def _(event) -> None:
            """Ctrl-C: clear the line; on an empty line, stop the running image."""
            buffer = event.app.current_buffer
            if not buffer.text and self.cancel_running():
                return
            buffer.reset()

        history = FileHistory(str(history_file)) if history_file else InMemoryHistory()
        session: PromptSession[str] = PromptSession(
            history=history, auto_suggest=AutoSuggestFromHistory(), completer=ShellCompleter(self),
            complete_while_typing=False, bottom_toolbar=self.toolbar, refresh_interval=0.25,
            key_bindings=keys, **session_options)
        self.interactive = True
        with patch_stdout(raw=True):
            while True:
                try:
                    line = session.prompt("invoke> ", default=self.pending_edit)
                    self.pending_edit = ""
                except KeyboardInterrupt:
                    continue  # Ctrl-C at the prompt clears the line
                except EOFError:
                    break
                if not self.handle(line):
                    break
            self.finish_queue()


    def toolbar(self):
        """Status line (and, with --preview, the picture being made above it)."""
        status = self.status()
        preview = self.worker.preview
        if preview is None:
            return status
        from invoke_shell.terminal_view import toolbar_rows

        return [*toolbar_rows(preview), ("", status)]

    def status(self) -> str:
        w = self.worker
        state = "ready" if w.ready.is_set() and w.engine is not None else "loading..." if not w.ready.is_set() else "no model"
        device = str(w.engine.device) if w.engine is not None else "-"
        last = w.made[-1].request.seed if w.made else "-"
        running = ""
        if w.progress:
            step, total = w.progress
            running = f" | running {step}/{total} " + "#" * (10 * step // max(total, 1)) + "." * (10 - 10 * step // max(total, 1))
        return (f" model {self.model_entry.name} ({state}) | device {device} | last seed {last} | "
                f"queue {len(w.queued())}{running}")


def stdin_is_terminal() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()
