"""One worker thread owns the model: it loads it at launch and runs one request at a time.

The shell (which imports no torch) submits Jobs: in a terminal it goes back to the prompt at
once and the jobs wait in a queue (`!queue`, `!cancel`); over a pipe it waits for each. Ctrl-C
sets a job's cancel event and the engine stops within one step. Seeds are resolved here, at run
time, so -S-1 always means the image made just before.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from invoke_shell.errors import Cancelled, UsageError
from invoke_shell.request import GenerationRequest


@dataclass
class Job:
    request: GenerationRequest | None  # None: a model switch or an action
    model: str | None = None
    action: Callable[[Worker], None] | None = None  # work that needs the model (e.g. !schedule)
    done: threading.Event = field(default_factory=threading.Event)
    cancel: threading.Event = field(default_factory=threading.Event)
    outputs: list[Path] = field(default_factory=list)
    error: BaseException | None = None
    line: str = ""  # as typed, for !queue
    background: bool = False  # nobody waits on it: the worker reports its errors itself


@dataclass(frozen=True)
class Made:
    """One image made this session: what `-S-N` and history look back on."""

    request: GenerationRequest  # resolved: concrete seed, one iteration
    path: Path
    steps_run: int
    seconds: float


class Worker(threading.Thread):
    def __init__(self, load_model: Callable[[str | None], object], printer: Callable[[str], None],
                 outdir: Path, model_name: str | None) -> None:
        super().__init__(name="invoke-worker", daemon=True)
        self.pending: deque[Job | None] = deque()
        self.wake = threading.Condition()
        self.progress: tuple[int, int] | None = None  # (step, total) of the running image
        self.preview = None  # the running image's predicted picture, with --preview
        self.report: Callable[[BaseException, str], None] = lambda e, line: printer(f"error: {e}")
        self.ready = threading.Event()
        self.load_model = load_model
        self.print = printer
        self.outdir = outdir
        self.model_name = model_name
        self.engine = None
        self.model_info = None
        self.load_error: BaseException | None = None
        self.made: list[Made] = []
        self.current: Job | None = None
        self.writer = ThreadPoolExecutor(1, thread_name_prefix="invoke-writer")  # files off the denoising path
        self.previewer = None

    # ---- called from the shell thread

    def submit(self, job: Job) -> Job:
        with self.wake:
            self.pending.append(job)
            self.wake.notify()
        return job

    def stop(self) -> None:
        with self.wake:
            self.pending.append(None)
            self.wake.notify()

    def queued(self) -> list[Job]:
        with self.wake:
            return [j for j in self.pending if j is not None]

    def drop(self, number: int) -> Job:
        """Remove queued job `number` (1 = next to run) before it starts."""
        with self.wake:
            jobs = [j for j in self.pending if j is not None]
            if not 1 <= number <= len(jobs):
                raise UsageError(f"there is no queued line {number} ({len(jobs)} queued)", "see !queue")
            job = jobs[number - 1]
            self.pending.remove(job)
        job.error = Cancelled(0)
        job.done.set()
        return job

    def busy(self) -> bool:
        return self.current is not None or bool(self.queued())

    # ---- the thread

    def run(self) -> None:
        self._load(self.model_name)
        self._serve()
        self.writer.shutdown(wait=True)

    def _next(self) -> Job | None:
        with self.wake:
            while not self.pending:
                self.wake.wait()
            return self.pending.popleft()

    def _serve(self) -> None:
        while (job := self._next()) is not None:
            self.current = job
            try:
                if job.request is None and job.action is None:
                    self._load(job.model)
                    if self.load_error:
                        job.error = self.load_error
                elif self.engine is None:
                    job.error = UsageError(f"no model is loaded ({self.load_error})",
                                           "fix models.yaml, or load another model with !switch NAME")
                elif job.action is not None:
                    job.action(self)
                else:
                    self._run(job)
            except BaseException as e:  # reported to the shell, which decides how to show it
                job.error = e
            finally:
                self.current = None
                self.progress = None
                self.preview = None
                if job.background and job.error is not None:
                    self.report(job.error, job.line)
                job.done.set()

    def _load(self, name: str | None) -> None:
        self.ready.clear()
        t0 = time.perf_counter()
        try:
            engine, info = self.load_model(name)
        except BaseException as e:
            self.load_error = e
            msg = e.show() if isinstance(e, UsageError) else f"error: the model could not be loaded: {e}"
            self.print(msg)
            if not isinstance(e, UsageError):
                from invoke_shell.logs import log

                log.error("model load failed\n%s", traceback.format_exc())
        else:
            from invoke_shell.previews import LatentPreviewer

            self.engine, self.model_info, self.load_error = engine, info, None
            self.previewer = LatentPreviewer.for_model(Path(info.path))
            self.model_name = info.name
            self.print(f">> model {info.name} loaded on {engine.device} in {time.perf_counter() - t0:.1f} s")
        finally:
            self.ready.set()

    def resolve_seed(self, seed: int | None) -> int:
        if seed is None:
            return secrets.randbelow(2**32)
        if seed >= 0:
            return seed
        if -seed > len(self.made):
            have = len(self.made)
            raise UsageError(f"-S {seed} looks back {-seed} image(s), but this session has made {have}",
                             "use -S-1 for the previous image's seed, or give a seed number")
        return self.made[seed].request.seed  # type: ignore[return-value]

    def resolve_init(self, init: str | None) -> str | None:
        """`-I -1` / `-I last`: the image made just before (-2 the one before that)."""
        if init is None or not is_recall(init):
            return init
        back = 1 if init == "last" else -int(init)
        if back > len(self.made):
            raise UsageError(f"-I {init} looks back {back} image(s), but this session has made {len(self.made)}",
                             "make an image first, or give a file path after -I")
        return str(self.made[-back].path)

    def _run(self, job: Job) -> None:
        from invoke_shell.jobs import run_request

        run_request(self, job)


def is_recall(init: str) -> bool:
    return init == "last" or (init.startswith("-") and init[1:].isdigit() and int(init[1:]) > 0)


def model_hash(path: Path) -> str:
    """AUTOMATIC1111-style short hash: sha256 of the weights file (the UNet's for a folder)."""
    if path.is_dir():
        files = sorted((path / "unet").glob("*.safetensors")) or sorted(path.rglob("*.safetensors"))
        if not files:
            return "unknown"
        path = files[0]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:10]
