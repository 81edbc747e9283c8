"""`invoke-shell`: launch flags, then the shell. Imports no torch, so --help is instant."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from invoke_shell.errors import UsageError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="invoke-shell",
        description="An interactive Stable Diffusion prompt shell: type a prompt and switches at invoke>.",
        epilog='Example line at the prompt:  "a red circle on a blue background" -s 25 -S 42    (!help lists all)',
    )
    p.add_argument("--model", help="model name from the config (default: the config's default)")
    p.add_argument("--outdir", type=Path, default=Path("outputs"), help="output folder (default: outputs)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    p.add_argument("--precision", choices=("auto", "fp32", "fp16", "bf16"), default="auto",
                   help="auto: fp16 on a GPU, fp32 on the CPU")
    p.add_argument("--from_file", type=Path, help="run the commands in FILE, then exit")
    p.add_argument("--config", type=Path, help="models config (default: configs/models.yaml)")
    p.add_argument("--history", type=Path, default=Path("~/.invoke_history").expanduser(),
                   help="line history file (default: ~/.invoke_history)")
    p.add_argument("--verbose", action="store_true", help="also show library warnings and logs on screen")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from invoke_shell.logs import quiet_environment, route_logs
    from invoke_shell.models.manager import make_loader
    from invoke_shell.models.registry import load_registry
    from invoke_shell.repl import Shell, stdin_is_terminal
    from invoke_shell.worker import Worker

    quiet_environment()
    try:
        registry = load_registry(args.config)
        entry = registry.get(args.model)
        if args.from_file and not args.from_file.is_file():
            raise UsageError(f"--from_file {args.from_file} does not exist", "give a text file of commands")
    except UsageError as e:
        print(e.show(), file=sys.stderr)
        return 2
    log_path = route_logs(args.outdir, args.verbose)
    interactive = args.from_file is None and stdin_is_terminal()
    printer = print
    worker = Worker(make_loader(registry, args.device, args.precision), lambda s: printer(s),
                    args.outdir, entry.name)
    worker.start()
    shell = Shell(registry, entry, worker, printer=lambda s: printer(s))
    if interactive:
        print(f"invoke-shell: model {entry.name} is loading; type !help for switches, q to quit "
              f"(logs: {log_path})")
    try:
        if args.from_file:
            shell.replay(args.from_file)
        elif interactive:
            shell.run_interactive(args.history)
        else:
            shell.run_lines(sys.stdin)
    except KeyboardInterrupt:
        pass
    worker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
