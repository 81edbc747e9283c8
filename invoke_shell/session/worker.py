"""One worker thread runs the jobs the shell submits, one at a time, on the model session.

The worker only queues: what a job does is the session's business. In a terminal the shell goes
back to the prompt at once and jobs wait here (`!queue`, `!cancel`); over a pipe it waits for
each. Ctrl-C sets the running ticket's cancel event and the engine stops within one step.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from invoke_shell.errors import Cancelled, UsageError
from invoke_shell.line.requests import LineRequest
from invoke_shell.session.session import ModelSession
from invoke_shell.session.status import Status


@dataclass(frozen=True)
class Generate:
    line: LineRequest


@dataclass(frozen=True)
class SwitchModel:
    name: str | None  # None: the config's default model


@dataclass(frozen=True)
class Action:
    """Other work that needs the model, e.g. `!schedule`: a call on the session."""

    run: Callable[[ModelSession], None]


Job = Generate | SwitchModel | Action


@dataclass(eq=False)
class Ticket:
    """A submitted job and what became of it."""

    job: Job
    text: str = ""  # the line as typed, for !queue and error reports
    background: bool = False  # nobody waits on it: errors go to the worker's on_error
    done: threading.Event = field(default_factory=threading.Event)
    cancel: threading.Event = field(default_factory=threading.Event)
    outputs: list[Path] = field(default_factory=list)
    error: BaseException | None = None


class Worker(threading.Thread):
    def __init__(self, session: ModelSession, on_error: Callable[[Ticket, BaseException], None]) -> None:
        super().__init__(name="invoke-worker", daemon=True)
        self.session = session
        self.on_error = on_error
        self._pending: deque[Ticket | None] = deque()
        self._current: Ticket | None = None
        self._lock = threading.Condition()

    # ---- called from the shell thread

    def submit(self, job: Job, text: str = "", background: bool = False) -> Ticket:
        ticket = Ticket(job, text, background)
        with self._lock:
            self._pending.append(ticket)
            self._lock.notify()
        return ticket

    def stop(self) -> None:
        with self._lock:
            self._pending.append(None)
            self._lock.notify()

    def drop(self, number: int) -> Ticket:
        """Remove queued line `number` (1 = next to run) before it starts."""
        with self._lock:
            waiting = [t for t in self._pending if t is not None and isinstance(t.job, Generate)]
            if not 1 <= number <= len(waiting):
                raise UsageError(f"there is no queued line {number} ({len(waiting)} queued)", "see !queue")
            ticket = waiting[number - 1]
            self._pending.remove(ticket)
        ticket.error = Cancelled(0)
        ticket.done.set()
        return ticket

    def drop_all(self) -> int:
        """Remove every queued line at once (under the lock: none can start in between); how many."""
        with self._lock:
            waiting = [t for t in self._pending if t is not None and isinstance(t.job, Generate)]
            for ticket in waiting:
                self._pending.remove(ticket)
        for ticket in waiting:
            ticket.error = Cancelled(0)
            ticket.done.set()
        return len(waiting)

    def cancel_running(self) -> bool:
        """Stop the image being made; False when no image is being made."""
        with self._lock:
            current = self._current
        if current is None or not isinstance(current.job, Generate):
            return False
        current.cancel.set()
        return True

    def busy(self) -> bool:
        with self._lock:
            return self._current is not None or any(t is not None for t in self._pending)

    def status(self) -> Status:
        with self._lock:
            queued = tuple(t.text for t in self._pending if t is not None and isinstance(t.job, Generate))
            current = self._current
        running = current.text if current is not None and isinstance(current.job, Generate) else None
        return replace(self.session.status(), queued=queued, running=running)

    # ---- the thread

    def run(self) -> None:
        while (ticket := self._next()) is not None:
            try:
                self._run(ticket)
            except BaseException as e:  # reported to whoever waits, or to on_error
                ticket.error = e
            finally:
                with self._lock:
                    self._current = None
                if ticket.background and ticket.error is not None:
                    self.on_error(ticket, ticket.error)
                ticket.done.set()
        self.session.close()

    def _next(self) -> Ticket | None:
        with self._lock:
            while not self._pending:
                self._lock.wait()
            ticket = self._pending.popleft()
            self._current = ticket  # under the lock: busy() never sees a popped job as idle
            return ticket

    def _run(self, ticket: Ticket) -> None:
        job = ticket.job
        if isinstance(job, Generate):
            ticket.outputs += self.session.run_line(job.line, ticket.cancel, quiet=ticket.background)
        elif isinstance(job, SwitchModel):
            self.session.load(job.name)
        else:
            job.run(self.session)
