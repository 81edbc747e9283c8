"""The `!` commands, one table: name, help, and the function that runs it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from invoke_shell.errors import UsageError, did_you_mean
from invoke_shell.params import help_text

if TYPE_CHECKING:
    from invoke_shell.repl import Shell


@dataclass(frozen=True)
class Command:
    name: str
    usage: str
    help: str
    run: Callable[[Shell, str], None]


def _help(shell: Shell, args: str) -> None:
    shell.print(help_text())
    shell.print("\nCommands:")
    for c in COMMANDS.values():
        shell.print(f"  {c.usage:<28} {c.help}")
    shell.print("  q, quit, exit, Ctrl-D        leave the shell")
    entry = shell.model_entry
    d = entry.defaults
    shell.print(f"\nDefaults for model {entry.name}: -s {d['steps']} -C {d['cfg_scale']} -A {d['sampler']} "
                f"-W {d['width']} -H {d['height']} -f {d.get('strength', 0.75)}")


def _models(shell: Shell, args: str) -> None:
    for name, e in shell.registry.models.items():
        mark = "*" if name == shell.model_entry.name else " "
        shell.print(f" {mark} {name:<16} {e.description}  [{e.path}]")


def _switch(shell: Shell, args: str) -> None:
    if not args:
        raise UsageError("!switch needs a model name", "e.g. !switch tiny-shapes (see !models)")
    entry = shell.registry.get(args)
    shell.switch_model(entry)


COMMANDS: dict[str, Command] = {
    c.name: c
    for c in (
        Command("help", "!help", "this list of switches and commands", _help),
        Command("models", "!models", "the models in models.yaml (* marks the loaded one)", _models),
        Command("switch", "!switch NAME", "load another model from models.yaml", _switch),
    )
}


def run_command(shell: Shell, name: str, args: str) -> None:
    cmd = COMMANDS.get(name)
    if cmd is None:
        guess = did_you_mean(name, COMMANDS)
        raise UsageError(f"unknown command !{name}",
                         f"did you mean !{guess}?" if guess else "type !help for the list of commands")
    cmd.run(shell, args)
