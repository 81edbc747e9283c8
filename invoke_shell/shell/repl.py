"""The thin shell: read a line, parse it, dispatch it, show what happened.

Imports no torch: the worker thread runs every job on the model session, and the screen is
drawn from the worker's frozen `Status`. Reads from a prompt_toolkit session in a terminal, or
line by line from standard input when that is a pipe or a file.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from invoke_shell.errors import Cancelled, UsageError, escaped
from invoke_shell.files.inputs import check_init_path
from invoke_shell.line.parsing import QUIT, parse_line
from invoke_shell.line.requests import ShellCommand
from invoke_shell.logs import log
from invoke_shell.models.addons import LORA_SUFFIXES, names
from invoke_shell.models.registry import ModelEntry, Registry
from invoke_shell.session.session import ModelSession, is_recall
from invoke_shell.session.worker import Generate, Job, SwitchModel, Ticket, Worker
from invoke_shell.shell.commands import run_command


class Shell:
    def __init__(
        self,
        registry: Registry,
        entry: ModelEntry,
        session: ModelSession,
        printer: Callable[[str], None] = print,
        raise_errors: bool = False,
        complain: Callable[[str], None] | None = None,
    ) -> None:
        self.registry = registry
        self.model_entry = entry  # whose defaults fill what a line leaves out
        self.print = printer
        self.complain = complain or printer  # errors: standard error when run from the console
        self.failures = 0  # lines that failed, for a piped run's exit status
        self.closed = False  # standard output was closed (`| head -1`): stop quietly
        self.output_gone: Callable[[], bool] | None = None  # asks whether that happened, while waiting
        self.raise_errors = raise_errors  # tests see bugs as exceptions; users see a short report
        self.pending_edit = ""  # text for the next prompt's buffer (!N, !fetch)
        self.interactive = False  # in a terminal: lines queue up and the prompt comes back at once
        self.last_line: Ticket | None = None  # the last line typed: its errors need no reminder of it
        self.replaying = False  # running a !replay file
        self._drawn: tuple[Any, list[tuple[str, str]]] | None = None  # the live preview and its toolbar rows
        self.worker = Worker(session, on_error=self._report_background_error)
        self.wildcard_names = session.templates.names  # for completion after __
        self.lora_names = lambda: names(session.addons.loras, LORA_SUFFIXES)  # and after <lora:
        self.worker.start()

    def load_first_model(self, wait: bool) -> None:
        """Load the launch model: in the background in a terminal (the prompt is usable at once)."""
        ticket = self.worker.submit(SwitchModel(self.model_entry.name), background=not wait)
        if wait:
            self.wait(ticket)

    def close(self) -> None:
        """Stop the worker and wait for it: a torch thread still running at exit aborts Python."""
        self.worker.stop()
        _uninterrupted(lambda: self.worker.join(timeout=60))

    def edit(self, command: str) -> None:
        """Offer `command` for editing: in the next prompt's buffer, or printed when piped."""
        if self.interactive:
            self.pending_edit = command
        else:
            self.print(command)

    def ask(self, question: str, default: str) -> str:
        """A question with its default answer ready to edit; over a pipe the default is taken and said."""
        if not self.interactive:
            self.print(f">> {question}: {default}")
            return default
        from prompt_toolkit import prompt

        try:
            answer = prompt(f"{question}: ", default=default).strip()
        except (KeyboardInterrupt, EOFError):
            raise UsageError(f"no {question} given: nothing was changed", "run the command again to answer") from None
        return answer or default

    def replay(self, path: Path) -> int:
        """Run a file of commands; a bad line is reported with its number and the rest still run.
        Bytes that are not UTF-8 reach the parser as such, which names them."""
        lines = path.read_bytes().decode("utf-8", "surrogateescape").splitlines()
        was, self.replaying = self.replaying, True  # in a terminal too, each line is waited for
        try:
            return self.run_lines(lines, source=path.name, known_total=len(lines))
        finally:
            self.replaying = was

    def handle(self, line: str, where: str | None = None) -> bool:
        """Run one line; False when the user asked to leave. `where` prefixes error messages."""
        if line.strip() in QUIT:
            return False
        try:
            notes: list[str] = []
            parsed = parse_line(line, self.model_entry.defaults, notes)
            for note in notes:
                self.print(f">> {note}")
            if parsed is None:
                return True
            if isinstance(parsed, ShellCommand):
                run_command(self, parsed.name, parsed.args)
                return True
            if parsed.init_img and not is_recall(parsed.init_img):
                check_init_path(parsed.init_img)
            if parsed.init_mask:
                check_init_path(parsed.init_mask, "mask", "-M")
            if not self.interactive or self.replaying:
                self.run_job(Generate(parsed), line.strip())
                return True
            status = self.worker.status()
            ahead = len(status.queued) + (status.running is not None)
            self.last_line = self.worker.submit(Generate(parsed), line.strip(), background=True)
            if status.state == "loading":
                self.print(">> queued: the model is still loading")
            elif ahead:
                self.print(f">> queued ({ahead} ahead of it; !queue lists them)")
        except UsageError as e:
            self.failures += 1
            self.complain(f"{where}: {e.show()}" if where else e.show())
        except Exception as e:
            if self.raise_errors:
                raise
            self.report_bug(e)
        return True

    def switch_model(self, entry: ModelEntry) -> None:
        ticket = self.run_job(SwitchModel(entry.name))
        if ticket.error is None:
            self.model_entry = entry

    def run_job(self, job: Job, text: str = "") -> Ticket:
        """Submit a job and wait for it."""
        return self.wait(self.worker.submit(job, text))

    def wait(self, ticket: Ticket) -> Ticket:
        """Block until the job is done; Ctrl-C cancels it within one step."""
        if isinstance(ticket.job, Generate) and self.worker.status().state == "loading":
            self.print(">> waiting for the model to finish loading...")
        interrupted = False
        with _typeahead_kept() if self.interactive else nullcontext():
            while True:
                try:
                    if ticket.done.wait(0.2):
                        break
                    if self.output_gone is not None and not self.closed and self.output_gone():
                        self.output_closed()  # the reader left while the image was being made
                except KeyboardInterrupt:
                    ticket.cancel.set()
                    interrupted = True
                    self.print(">> cancelling...")
        if ticket.error is not None:
            self._show_job_error(ticket.error)
        if interrupted and (not self.interactive or self.replaying):
            raise KeyboardInterrupt  # over a pipe or in !replay, Ctrl-C stops the whole run, not just this image
        return ticket

    def _report_background_error(self, ticket: Ticket, e: BaseException) -> None:
        try:
            if ticket.text and ticket is not self.last_line and not isinstance(e, Cancelled):
                self.complain(f">> in queued line: {escaped(ticket.text)}")  # lines were typed since
            self._show_job_error(e, raise_bugs=False)
        except Exception:  # reporting must never take the worker down
            log.exception("could not report a queued line's error")

    def finish_queue(self) -> None:
        """On leaving: let queued lines finish (Ctrl-C drops them and stops the running one)."""
        if not self.worker.busy():
            return
        status = self.worker.status()
        self.print(f">> finishing {len(status.queued) + 1} line(s) before leaving; Ctrl-C stops them")
        try:
            while self.worker.busy():
                time.sleep(0.05)
        except KeyboardInterrupt:
            dropped = self.worker.drop_all()
            running = self.worker.cancel_running()
            self.print(
                f">> stopping: {dropped} queued line(s) dropped"
                + (", the running image cancelled (images already made are saved)" if running else "")
            )
            _uninterrupted(self._wait_idle)  # a second Ctrl-C must not leave torch running at exit

    def _wait_idle(self) -> None:
        while self.worker.busy():
            time.sleep(0.05)

    def _show_job_error(self, e: BaseException, raise_bugs: bool = True) -> None:
        if isinstance(e, Cancelled):
            self.print(e.show())
        elif isinstance(e, UsageError):
            self.failures += 1
            self.complain(e.show())
        elif self.raise_errors and raise_bugs:
            raise e
        else:
            self.report_bug(e)

    def report_bug(self, e: BaseException) -> None:
        log.error("unexpected error\n%s", "".join(traceback.format_exception(e)))
        last = traceback.extract_tb(e.__traceback__)[-1:] if e.__traceback__ else []
        where = f" ({Path(last[0].filename).name}:{last[0].lineno})" if last else ""
        self.failures += 1
        self.complain(
            f"error: unexpected {type(e).__name__}: {e}{where}\n"
            "  the shell is still running; the full traceback is in the log file"
        )

    # ---- the loops

    def run_lines(self, lines: Iterable[str], source: str = "standard input", known_total: int | None = None) -> int:
        """Run lines from a pipe or a file, in order. The exit status: 0 when every line worked;
        1 when some failed (their count is said at the end); 130 when Ctrl-C stopped the run,
        after saying which lines did not run; 141 when standard output was closed."""
        number = ran = failed = 0  # failed: lines, where self.failures also counts a failed model load
        try:
            for number, line in enumerate(lines, 1):
                line = line.rstrip("\r\n")
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                ran += 1
                self.print(f"invoke> {escaped(line)}" + (f"    ({source}:{number})" if known_total else ""))
                before = self.failures
                go_on = not self.closed and self.handle(line, where=f"{source} line {number}")
                failed += self.failures > before
                if not go_on:
                    break
        except KeyboardInterrupt:
            rest = (
                f"lines {number + 1}-{known_total} did not run"
                if known_total and number < known_total
                else "the lines after it did not run"
            )
            self.complain(f">> interrupted at {source} line {number}: {rest}")
            return 130
        if self.closed:
            return 141  # as a program stopped by SIGPIPE
        if self.failures:
            if failed:
                self.complain(f">> {failed} of {ran} line(s) failed")
            return 1
        return 0

    def output_closed(self) -> None:
        """Standard output went away (`| head -1`): drop the queue, stop the running image, and
        let the run end quietly."""
        self.closed = True
        self.worker.drop_all()
        self.worker.cancel_running()

    def run_interactive(self, history_file: Path | None, **session_options: Any) -> None:
        """The prompt loop. `session_options` (input=, output=) let tests drive a real session."""
        from prompt_toolkit import PromptSession
        from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
        from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
        from prompt_toolkit.patch_stdout import patch_stdout

        from invoke_shell.shell.completion import ShellCompleter
        from invoke_shell.shell.history import open_history
        from invoke_shell.shell.validator import LineValidator

        keys = KeyBindings()

        @keys.add("c-c")
        def _(event: KeyPressEvent) -> None:
            """Ctrl-C: clear the line; on an empty line, stop the running image."""
            buffer = event.app.current_buffer
            if not buffer.text and self.worker.cancel_running():
                return
            buffer.reset()

        history = open_history(history_file, self.print)  # memory only, said once, if the file is unusable
        self.prompt_session: PromptSession[str] = PromptSession(
            history=history,
            auto_suggest=AutoSuggestFromHistory(),
            completer=ShellCompleter(self.registry, self.worker.status, self.wildcard_names, self.lora_names),
            validator=LineValidator(lambda: self.model_entry.defaults, _columns, self.complain),
            validate_while_typing=False,
            complete_while_typing=False,
            bottom_toolbar=self.toolbar,
            refresh_interval=0.25,
            key_bindings=keys,
            **session_options,
        )
        self.interactive = True
        with patch_stdout(raw=True):
            while True:
                try:
                    line = self.prompt_session.prompt("invoke> ", default=self.pending_edit)
                    self.pending_edit = ""
                except KeyboardInterrupt:
                    continue  # Ctrl-C at the prompt clears the line
                except EOFError:
                    break
                if not self.handle(line):
                    break
            self.finish_queue()

    def toolbar(self) -> Any:
        """Status line (and, with --preview, the picture being made above it)."""
        status = self.worker.status()
        text = status_line(self.model_entry.name, status)
        if status.preview is None:
            return text
        from invoke_shell.shell.terminal_view import toolbar_rows

        if self._drawn is None or self._drawn[0] is not status.preview:  # redrawn 4x a second, made once a step
            self._drawn = (status.preview, toolbar_rows(status.preview))
        return [*self._drawn[1], ("", text)]


def _columns() -> int:
    from prompt_toolkit.application import get_app

    return get_app().output.get_size().columns


def status_line(model_name: str, status: Any) -> str:
    state = {"ready": "ready", "loading": "loading...", "no model": "no model"}[status.state]
    if status.progress and status.state == "ready":
        state = "busy"  # loaded, and making an image: what you type waits its turn
    last = status.last_seed if status.last_seed is not None else "-"
    running = ""
    if status.progress:
        step, total = status.progress
        done = 10 * step // max(total, 1)
        running = f" | running {step}/{total} " + "#" * done + "." * (10 - done)
    return (
        f" model {status.model or model_name} ({state}) | device {status.device} | last seed {last} | "
        f"queue {len(status.queued)}{running}"
    )


@contextmanager
def _typeahead_kept() -> Iterator[None]:
    """While the shell waits for a job (!schedule, !switch) there is no prompt on screen, and the
    terminal would echo what is typed between the worker's lines: stray text with no invoke>.
    Echo is off meanwhile; the keys stay queued and appear in the next prompt."""
    try:
        import termios
    except ImportError:  # Windows: no termios
        yield
        return
    try:
        fd = sys.stdin.fileno()
        before = termios.tcgetattr(fd)
    except (OSError, ValueError, termios.error):  # not a terminal (tests, pipes): nothing echoes
        yield
        return
    quiet = list(before)
    quiet[3] &= ~termios.ECHO  # lflags
    termios.tcsetattr(fd, termios.TCSANOW, quiet)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSANOW, before)


def _uninterrupted(wait: Callable[[], None]) -> None:
    """Run `wait` to the end even through Ctrl-C presses (the worker stops within one block)."""
    while True:
        try:
            wait()
            return
        except KeyboardInterrupt:
            continue


def stdin_is_terminal() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()
