"""The `!` commands, one table: name, usage, help, and the function that runs it.

Commands talk to the shell through the small `Host` interface below and read the session only
through the worker's frozen `Status`.
"""

from __future__ import annotations

import glob
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from PIL import Image

from invoke_shell.errors import UsageError, did_you_mean, escaped, named
from invoke_shell.files.fetch import fetch, listing
from invoke_shell.line.parsing import format_request, parse_switches
from invoke_shell.line.switches import help_text
from invoke_shell.models.registry import ModelEntry, Registry
from invoke_shell.session.session import ModelSession
from invoke_shell.session.status import Made
from invoke_shell.session.worker import Action, Job, Ticket, Worker


class Host(Protocol):
    """What a command may use of the shell."""

    registry: Registry
    model_entry: ModelEntry
    worker: Worker
    print: Callable[[str], None]

    def edit(self, command: str) -> None: ...
    def replay(self, path: Path) -> int: ...
    def switch_model(self, entry: ModelEntry) -> None: ...
    def run_job(self, job: Job, text: str = "") -> Ticket: ...


@dataclass(frozen=True)
class Command:
    name: str
    usage: str
    help: str
    run: Callable[[Host, str], None]


def _help(shell: Host, args: str) -> None:
    shell.print(help_text())
    shell.print("\nCommands:")
    for c in COMMANDS.values():
        shell.print(f"  {c.usage:<28} {c.help}")
    shell.print("  q, quit, exit, Ctrl-D        leave the shell")
    entry = shell.model_entry
    d = entry.defaults
    shell.print(
        f"\nDefaults for model {entry.name}: -s {d['steps']} -C {d['cfg_scale']} -A {d['sampler']} "
        f"-W {d['width']} -H {d['height']} -f {d['strength']}"
    )


def _models(shell: Host, args: str) -> None:
    for name, e in shell.registry.models.items():
        mark = "*" if name == shell.model_entry.name else " "
        shell.print(f" {mark} {name:<16} {e.description}  [{e.path}]")


def _switch(shell: Host, args: str) -> None:
    if not args:
        raise UsageError("!switch needs a model name", "e.g. !switch tiny-shapes (see !models)")
    shell.switch_model(shell.registry.get(args))


def _made(shell: Host) -> tuple[Made, ...]:
    return shell.worker.status().made


def _history(shell: Host, args: str) -> None:
    made = _made(shell)
    if args and not args.isdigit():
        raise UsageError(f"!history takes a count, got {args!r}", "e.g. !history 10")
    count = int(args) if args else 20
    if not made:
        shell.print(">> no images made yet this session")
    for i, m in list(enumerate(made, 1))[-count:]:
        r = m.request
        prompt = r.prompt if len(r.prompt) <= 48 else r.prompt[:45] + "..."
        shell.print(
            f"{i:>4}  {m.path.name:<22} seed {r.seed:<10} {r.width}x{r.height}  {r.sampler:<15} "
            f'{r.kind:<7} {m.steps_run:>3} steps {m.seconds:5.2f} s  "{prompt}"'
        )
    if made:
        shell.print(">> !N puts command N back at the prompt to edit")


def recall(shell: Host, number: int) -> None:
    made = _made(shell)
    if not 1 <= number <= len(made):
        raise UsageError(
            f"!{number}: there is no generation {number} this session ({len(made)} so far)",
            "see !history for the numbers",
        )
    shell.edit(format_request(made[number - 1].request))


def _fetch(shell: Host, args: str) -> None:
    if not args:
        raise UsageError("!fetch needs a PNG, a folder or a glob", "e.g. !fetch outputs/img-samples/000001.42.png")
    target = Path(args).expanduser()
    defaults = shell.model_entry.defaults
    if target.is_dir() or any(c in args for c in "*?["):
        pattern = str(target / "*.png") if target.is_dir() else str(target)
        matches = sorted(glob.glob(pattern))
        if not matches:
            raise UsageError(f"no PNG files match {escaped(args)}", "check the folder or pattern")
        for line in listing((Path(m) for m in matches), defaults):
            shell.print(line)
        shell.print(f">> {len(matches)} file(s); !fetch one of them to edit its command")
        return
    if not target.exists():
        raise UsageError(f"{escaped(args)} does not exist", "give the path of a PNG (tab completes paths)")
    got = fetch(target, defaults)
    for note in got.notes:
        shell.print(f">> note: {note}")
    shell.edit(got.command)


def _replay(shell: Host, args: str) -> None:
    if not args:
        raise UsageError("!replay needs a file of commands", "e.g. !replay prompts.txt")
    path = Path(args).expanduser()
    if not path.is_file():
        raise UsageError(f"{args} is not a file", "give a text file with one command per line")
    shell.replay(path)


def _schedule(shell: Host, args: str) -> None:
    values = parse_switches(args)
    allowed = {"sampler", "steps", "strength", "exact_steps"}
    if set(values) - allowed:
        extra = sorted(set(values) - allowed)[0]
        raise UsageError(f"!schedule does not take --{extra}", "use -A SAMPLER, -s STEPS, -f STRENGTH, --exact_steps")
    if any(isinstance(v, tuple) for v in values.values()):
        raise UsageError("!schedule takes one value per switch", "e.g. !schedule -A k_lms -s 10 -f 0.7")
    d = shell.model_entry.defaults
    sampler, steps = values.get("sampler", d["sampler"]), values.get("steps", d["steps"])
    strength, exact = values.get("strength"), values.get("exact_steps", False)

    def show(session: ModelSession) -> None:
        session.show_schedule(sampler, steps, strength, exact)

    shell.run_job(Action(show), "!schedule " + args)


def _save(shell: Host, args: str) -> None:
    path = args[1:-1] if len(args) > 1 and args[0] == args[-1] and args[0] in "\"'" else args  # "a b.png"
    if not path:
        raise UsageError("!save needs a file or a folder", "e.g. !save ~/keep/cat.png, or !save ~/keep")
    target = Path(path).expanduser()

    def save(session: ModelSession) -> None:
        session.save_last(target)

    shell.run_job(Action(save), "!save " + args)


def _queue(shell: Host, args: str) -> None:
    status = shell.worker.status()
    if status.running is not None:
        step = f" (step {status.progress[0]}/{status.progress[1]})" if status.progress else ""
        shell.print(f" running{step}: {status.running}")
    for i, text in enumerate(status.queued, 1):
        shell.print(f"{i:>4}  {text}")
    if not status.queued and status.running is None:
        shell.print(">> nothing queued")


def _cancel(shell: Host, args: str) -> None:
    if not args:
        if not shell.worker.cancel_running():
            raise UsageError("no image is being made", "!cancel N removes queued line N (see !queue)")
        shell.print(">> cancelling the running image")
        return
    if not args.isdigit():
        raise UsageError(f"!cancel takes a queue number, got {args!r}", "e.g. !cancel 2 (see !queue)")
    ticket = shell.worker.drop(int(args))
    shell.print(f">> removed from the queue: {ticket.text}")


def _show(shell: Host, args: str) -> None:
    from invoke_shell.shell.terminal_view import can_draw, render

    made = _made(shell)
    arg = args or "-1"
    if arg.startswith("-") and arg[1:].isdigit():
        back = int(arg[1:])
        if not 1 <= back <= len(made):
            raise UsageError(
                f"!show {arg}: this session has made {len(made)} image(s)", "give a file, or -1 for the last"
            )
        path = made[-back].path
    else:
        path = Path(arg).expanduser()
        if not path.is_file():
            raise UsageError(
                f"{arg} is not a file", "give a PNG (an image, a contact_sheet.png, a schedule plot) or -N"
            )
    if not can_draw():
        shell.print(f">> not drawing {path}: the output is not a terminal that shows pictures")
        return
    try:
        with Image.open(path) as im:
            shell.print(render(im, width=64 if im.width > 2 * im.height else 32))
    except OSError:
        raise UsageError(f"{arg} is not an image Pillow can read", "give a PNG") from None
    shell.print(f">> {path}")


COMMANDS: dict[str, Command] = {
    c.name: c
    for c in (
        Command("help", "!help", "this list of switches and commands", _help),
        Command("models", "!models", "the models in models.yaml (* marks the loaded one)", _models),
        Command("switch", "!switch NAME", "load another model from models.yaml", _switch),
        Command("history", "!history [N]", "the last N images of this session, numbered", _history),
        Command("N", "!N", "put command N (see !history) back at the prompt to edit", lambda s, a: None),
        Command("fetch", "!fetch PNG|DIR|GLOB", "read the command stored in a PNG (ours, InvokeAI, A1111)", _fetch),
        Command("queue", "!queue", "the running line and the lines waiting after it", _queue),
        Command("cancel", "!cancel [N]", "stop the running image, or remove queued line N", _cancel),
        Command(
            "show", "!show [FILE | -N]", "draw an image, contact sheet or plot in the terminal (-1: the last)", _show
        ),
        Command(
            "schedule",
            "!schedule [-A S] [-s N] [-f X]",
            "the steps that will run, as a table and a sigma plot",
            _schedule,
        ),
        Command("replay", "!replay FILE", "run the commands in FILE (blank lines and # comments skipped)", _replay),
        Command("save", "!save FILE.png|DIR", "write the last image again, elsewhere (never overwrites a file)", _save),
    )
}


def run_command(shell: Host, name: str, args: str) -> None:
    if name.isdigit():
        recall(shell, int(name))
        return
    cmd = COMMANDS.get(name) if name != "N" else None
    if cmd is None:
        guess = did_you_mean(name, COMMANDS)
        raise UsageError(
            f"unknown command {named('!' + name)}",
            f"did you mean !{guess}?" if guess else "type !help for the list of commands",
        )
    cmd.run(shell, args)
