"""The `!` commands, one table: name, usage, help, and the function that runs it.

Commands talk to the shell through the small `Host` interface below and read the session only
through the worker's frozen `Status`.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from PIL import Image

from invoke_shell.errors import UsageError, did_you_mean, escaped, named
from invoke_shell.files.fetch import fetch, fetch_template, listing
from invoke_shell.line.parsing import format_request, parse_switches
from invoke_shell.line.requests import ImageRequest, hires_size
from invoke_shell.line.switches import format_variations, help_text
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
    def ask(self, question: str, default: str) -> str: ...
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
    shell.print(help_text(shell.model_entry.defaults, shell.model_entry.name))
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
    from invoke_shell.models.catalog import facts, human_size

    status = shell.worker.status()
    rows = [("", "name", "family", "format", "size", "state", "description")]
    for name, entry in shell.registry.models.items():
        f = facts(entry)
        state = (
            "current"
            if name == status.model
            else "cached"
            if name in status.cached
            else "on disk"
            if f.present
            else "missing"
        )
        where = entry.repo_id or str(entry.path)
        rows.append(("*" if state == "current" else "", name, f.family, f.format, human_size(f.size), state, ""))
        rows[-1] = (*rows[-1][:6], escaped(entry.description, 60) + ("" if f.present else f"  [not found: {where}]"))
    widths = [max(len(r[i]) for r in rows) for i in range(1, 6)]
    for r in rows:
        cells = "  ".join(cell.ljust(w) for cell, w in zip(r[1:6], widths, strict=True))
        shell.print((" * " if r[0] else "   ") + cells + "  " + r[6])


def _import_model(shell: Host, args: str) -> None:
    from invoke_shell.models import config_edit
    from invoke_shell.models.catalog import PICKLE_SUFFIXES, folder_family, human_size

    if not args:
        raise UsageError(
            "!import_model needs the path of a checkpoint or a diffusers folder",
            "e.g. !import_model ~/models/dreamshaper.safetensors",
        )
    path = Path(unquoted(args)).expanduser().resolve()
    if not path.exists():
        raise UsageError(
            f"{escaped(args)} does not exist", "give the path of a .safetensors file or a diffusers folder"
        )
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise UsageError(
                f"{escaped(args)} is a folder without model_index.json: not a diffusers model",
                "give a .safetensors file or a diffusers folder",
            )
        family, kind = folder_family(path), "diffusers folder"
        size = sum(p.stat().st_size for p in path.rglob("*.safetensors"))
    elif path.suffix.lower() == ".safetensors":
        from invoke_shell.models.families import detect, read_header

        family = detect(read_header(path), path.name).family.label  # a LoRA, a VAE or a damaged file is refused here
        kind, size = "single file", path.stat().st_size
    elif path.suffix.lower() in PICKLE_SUFFIXES:
        raise UsageError(
            f"{path.name}: only .safetensors checkpoints and diffusers folders are imported",
            "a pickle checkpoint (.ckpt) can run arbitrary code when loaded: convert it to .safetensors, "
            "or add it to models.yaml by hand with allow_pickle: true",
        )
    else:
        raise UsageError(
            f"{path.name} is not a model: only .safetensors checkpoints and diffusers folders are imported",
            "give the path of a .safetensors file or a diffusers folder",
        )
    shell.print(f">> {path.name}: {family}, {kind}, {human_size(size)}")
    name = shell.ask("name", _free_name(path.stem, shell.registry))
    config_edit.check_name(name, shell.registry)
    description = shell.ask("description", f"{family}, imported from {path.name}")
    new = config_edit.add_entry(shell.registry, name, {"description": description, "path": str(path)})
    _use_registry(shell, new)
    shell.print(f">> added {name} to {new.source}; !switch {name} loads it")


def _del_model(shell: Host, args: str) -> None:
    from invoke_shell.models import config_edit

    if not args:
        raise UsageError("!del_model needs a model name", "e.g. !del_model old-model (see !models)")
    registry = shell.registry
    if args not in registry.models:
        guess = did_you_mean(args, registry.models)
        kept = {registry.default: "the default model", shell.worker.status().model: "the loaded model"}
        hint = f"did you mean {guess}?" if guess else "see !models for the names"
        if guess in kept:  # the nearest name is one that cannot go: say so rather than offer it
            hint = f"the nearest name, {guess}, is {kept[guess]}, which cannot be removed; see !models"
        raise UsageError(f"no model named {args!r} in {registry.source}", hint)
    entry = registry.get(args)
    if entry.name == shell.worker.status().model:
        raise UsageError(f"{entry.name} is the loaded model", "!switch to another model first")
    if entry.name == shell.registry.default:
        raise UsageError(
            f"{entry.name} is the default model of {shell.registry.source}", "set `default:` to another model first"
        )
    new = config_edit.remove_entry(shell.registry, entry.name)
    _use_registry(shell, new, forget=entry.name)
    shell.print(
        f">> removed {entry.name} from {new.source}; its weights at {entry.repo_id or entry.path} are untouched"
    )


def _use_registry(shell: Host, registry: Registry, forget: str | None = None) -> None:
    """Shell and session read the edited file from now on (the session on its own thread)."""
    shell.registry = registry

    def use(session: ModelSession) -> None:
        session.use_registry(registry)
        if forget:
            session.forget(forget)

    shell.run_job(Action(use))


def _free_name(stem: str, registry: Registry) -> str:
    import re

    base = re.sub(r"[^\w.\-]+", "-", stem).strip("-.").lower()[:60] or "model"
    name, n = base, 2
    while name in registry.models:
        name, n = f"{base}-{n}", n + 1
    return name


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
    models = {m.model for m in made}
    for i, m in list(enumerate(made, 1))[-count:]:
        r = m.request
        prompt = r.prompt if len(r.prompt) <= 48 else r.prompt[:45] + "..."
        kind = what_made(r)
        if r.with_variations:  # what tells the images of a -v line apart
            kind += f" -V {format_variations(r.with_variations)}"
        width, height = hires_size(r) or (r.width, r.height)  # a hires pass: the size of the file
        model = f"{m.model}  " if len(models) > 1 else ""  # named once the session has used several
        shell.print(
            f"{i:>4}  {m.path.name:<22} {model}seed {r.seed:<10} {f'{width}x{height}':<9} {r.sampler:<15} "
            f'{kind:<16} {m.steps_run:>3} steps {m.seconds:5.2f} s  "{prompt}"'
        )
    if made:
        shell.print(">> !N puts command N back at the prompt to edit")


def what_made(r: ImageRequest) -> str:
    """An image's kind as !history shows it: an edit with its strength (what it kept), and the
    passes that change what the file is (a mask, an outcrop, a hires pass, an upscale)."""
    if r.upscale:
        return f"upscale x{r.upscale[0]:g}"
    if r.init_img is None:
        return "txt2img+hires" if r.hires_fix else "txt2img"
    kind = "outcrop" if r.outcrop else "inpaint" if r.init_mask else "img2img"
    return f"{kind} -f {r.strength:.2f}"


def recall(shell: Host, number: int) -> None:
    made = _made(shell)
    if not 1 <= number <= len(made):
        raise UsageError(
            f"!{number}: there is no generation {number} this session ({len(made)} so far)",
            "see !history for the numbers",
        )
    shell.edit(format_request(made[number - 1].request))


def _fetch(shell: Host, args: str) -> None:
    whole_line = args.startswith("--template")  # the template line that made the image, not the image alone
    if whole_line:
        args = args.removeprefix("--template").strip()
    args = unquoted(args)
    if not args:
        raise UsageError("!fetch needs a PNG, a folder or a glob", "e.g. !fetch outputs/img-samples/000001.42.png")
    target = recent_image(shell, "!fetch", args) or Path(args).expanduser()
    defaults = shell.model_entry.defaults
    if target.is_dir() or any(c in args for c in "*?["):
        pattern = str(target / "*.png") if target.is_dir() else str(target)
        # an inpainted image's mask (NNNNNN.SEED.mask.png) belongs to the image beside it
        matches = sorted(m for m in glob.glob(pattern) if not (target.is_dir() and m.endswith(".mask.png")))
        if not matches:
            raise UsageError(f"no PNG files match {escaped(args)}", "check the folder or pattern")
        for line in listing((Path(m) for m in matches), defaults):
            shell.print(line)
        shell.print(f">> {len(matches)} file(s); !fetch one of them to edit its command")
        return
    if not target.exists():
        raise UsageError(f"{escaped(args)} does not exist", "give the path of a PNG (tab completes paths)")
    got = fetch_template(target, defaults) if whole_line else fetch(target, defaults)
    for note in got.notes:
        shell.print(f">> note: {note}")
    shell.edit(got.command)


def recent_image(shell: Host, command: str, arg: str) -> Path | None:
    """The file of this session's N-th last image when `arg` is -N (as -I -N takes), else None."""
    if not (arg.startswith("-") and arg[1:].isdigit()):
        return None
    made, back = _made(shell), int(arg[1:])
    if not 1 <= back <= len(made):
        raise UsageError(
            f"{command} {arg}: this session has made {len(made)} image(s)", "give a file, or -1 for the last"
        )
    return made[-back].path


def unquoted(typed: str) -> str:
    """A command's one path, typed bare (spaces and all) or in quotes as -I needs: "my pics/a.png"."""
    if len(typed) > 1 and typed[0] == typed[-1] and typed[0] in "\"'":
        return typed[1:-1]
    return typed


def existing_file(typed: str, hint: str) -> Path:
    """The file a command names, or one message that says whether it is missing or a folder."""
    path = Path(typed).expanduser()
    if not path.is_file():
        raise UsageError(f"{typed} {'is not a file' if path.exists() else 'does not exist'}", hint)
    return path


def _replay(shell: Host, args: str) -> None:
    if not args:
        raise UsageError("!replay needs a file of commands", "e.g. !replay prompts.txt")
    shell.replay(existing_file(unquoted(args), "give a text file with one command per line"))


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
    path = unquoted(args)
    if not path:
        raise UsageError("!save needs a file or a folder", "e.g. !save ~/keep/cat.png, or !save ~/keep")
    target = Path(path).expanduser()
    folder = path.endswith(("/", os.sep))  # `!save ~/keep/`: a folder, made if it is missing

    def save(session: ModelSession) -> None:
        session.save_last(target, folder)

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

    arg = unquoted(args) or "-1"
    path = recent_image(shell, "!show", arg) or existing_file(
        arg, "give a PNG (an image, a contact_sheet.png, a schedule plot) or -N"
    )
    if not can_draw():
        shell.print(f">> not drawing {path}: the output is not a terminal that shows pictures")
        return
    try:
        with Image.open(path) as im:
            shell.print(render(im))  # as large as the terminal shows it whole
    except OSError:
        raise UsageError(f"{arg} is not an image Pillow can read", "give a PNG") from None
    shell.print(f">> {path}")


COMMANDS: dict[str, Command] = {
    c.name: c
    for c in (
        Command("help", "!help", "this list of switches and commands", _help),
        Command(
            "models", "!models", "the models in models.yaml: family, format, size, current / cached / on disk", _models
        ),
        Command("switch", "!switch NAME", "load another model from models.yaml (recent ones stay cached)", _switch),
        Command(
            "import_model",
            "!import_model PATH",
            "add a .safetensors checkpoint or diffusers folder to models.yaml (its family is detected)",
            _import_model,
        ),
        Command(
            "del_model", "!del_model NAME", "remove a model's entry from models.yaml (never its weights)", _del_model
        ),
        Command("history", "!history [N]", "the last N images of this session, numbered", _history),
        Command("N", "!N", "put command N (see !history) back at the prompt to edit", lambda s, a: None),
        Command(
            "fetch",
            "!fetch [--template] PNG|-N|DIR|GLOB",
            "read the command stored in a PNG (ours, InvokeAI, A1111); --template: the whole template line",
            _fetch,
        ),
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
