"""`invoke-shell`: launch flags, then the shell. Imports no torch, so --help is instant."""

from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Iterable
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
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "fp16", "bf16"),
        default="auto",
        help="auto: fp16 on a GPU, fp32 on the CPU",
    )
    p.add_argument("--from_file", type=Path, help="run the commands in FILE, then exit")
    p.add_argument(
        "--config",
        type=Path,
        help="models config (default: configs/models.yaml in this folder, else the project's own, else the built-in list)",
    )
    p.add_argument(
        "--wildcards",
        type=Path,
        metavar="DIR",
        help="folder of wildcard lists for prompt templates: __colors__ reads DIR/colors.txt "
        "(default: the config's wildcards:)",
    )
    p.add_argument(
        "--history",
        type=Path,
        default=Path("~/.invoke_history").expanduser(),
        help="line history file (default: ~/.invoke_history)",
    )
    p.add_argument(
        "--max_seconds",
        type=float,
        default=1800,
        metavar="S",
        help="refuse a line estimated to take longer than S seconds (default 1800; images over 4x the "
        "model's native size are estimated)",
    )
    p.add_argument(
        "--max_memory",
        type=float,
        default=None,
        metavar="GB",
        help="refuse a line estimated to need more memory at its peak (default: what the device has free)",
    )
    p.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        metavar="N",
        help="CPU threads torch may use (default: one for a model as small as the embedded one, where more "
        "only wait on each other; one per core for the rest)",
    )
    p.add_argument(
        "--loras", type=Path, metavar="DIR", help="folder of LoRAs: <lora:NAME:0.8> reads DIR/NAME.safetensors"
    )
    p.add_argument(
        "--embeddings", type=Path, metavar="DIR", help="folder of textual-inversion embeddings: <NAME> reads DIR/NAME.*"
    )
    p.add_argument(
        "--max_loaded_models",
        type=_positive_int,
        default=2,
        metavar="N",
        help="models kept in memory, the current one included, so !switch back is quick (default 2; "
        "on a GPU the others wait on the CPU)",
    )
    p.add_argument(
        "--offload",
        action="store_true",
        help="for GPUs too small for the model: its weights wait in main memory and each part (text "
        "encoder, UNet, VAE) goes to the GPU only while it runs (slower)",
    )
    p.add_argument(
        "--vae_tiling",
        action="store_true",
        help="encode and decode every image in tiles, for less memory (images over 1024x1024 always are); "
        "the VAE already works on one image at a time",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="CUDA only: compile the UNet with torch.compile (CUDA graphs); the first image at each "
        "size takes a minute or so, later ones run faster",
    )
    p.add_argument("--verbose", action="store_true", help="also show library warnings and logs on screen")
    return p


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expects a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def quiet_environment() -> None:
    """Before any heavy import: no hub access, no download progress bars. The entry point sets
    these for the process; library code never touches the environment."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from invoke_shell.files.outputs import prepare_outdir, samples_dir
    from invoke_shell.line.templates import Templates
    from invoke_shell.logs import route_logs
    from invoke_shell.models.addons import AddOns
    from invoke_shell.models.loader import load_model
    from invoke_shell.models.registry import Registry, builtin_registry, load_registry
    from invoke_shell.session.limits import Limits
    from invoke_shell.session.session import ModelSession
    from invoke_shell.session.share import launched_processes
    from invoke_shell.shell.repl import Shell, stdin_is_terminal

    quiet_environment()
    try:
        if args.offload or args.compile:
            from invoke_shell.models.loader import check_compile, check_offload

            if args.offload:
                check_offload(args.device)
            if args.compile:
                check_compile(args.device, args.offload)
        if args.from_file and (args.from_file.is_dir() or not args.from_file.exists()):  # /dev/stdin is fine
            what = "is a folder" if args.from_file.is_dir() else "does not exist"
            raise UsageError(f"--from_file {args.from_file} {what}", "give a text file of commands")
        try:
            registry: Registry = load_registry(args.config)
        except UsageError as e:  # a broken config must not keep the user from the embedded model
            if args.model:
                raise
            print(e.show(), file=sys.stderr)
            registry = builtin_registry()
            print(f">> starting on the embedded model {registry.default}", file=sys.stderr)
        entry = registry.get(args.model)
        args.outdir = args.outdir.expanduser()
        # before the log file is opened there: nothing could be saved, so say so and stop
        if prepare_outdir(args.outdir):
            print(f">> writing to {samples_dir(args.outdir).resolve()} (a new folder)", file=sys.stderr)
    except UsageError as e:
        print(e.show(), file=sys.stderr)
        return 2
    log_path = route_logs(args.outdir, args.verbose)
    interactive = args.from_file is None and stdin_is_terminal()
    share = None
    if launched_processes() > 1:  # accelerate launch: this process makes its share of the file
        if args.from_file is None:
            print(
                UsageError(
                    "several processes were launched, but there is no prompt file to share between them",
                    "add --from_file FILE (accelerate launch ... -m invoke_shell --from_file prompts.txt)",
                ).show(),
                file=sys.stderr,
            )
            return 2
        from invoke_shell.session.share import join

        share, args.device = join(args.device)

    def say(text: str) -> None:
        try:
            print(text, flush=True)  # flushed: a reader at the other end of a pipe sees each line at once
        except BrokenPipeError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error again at exit
            shell.output_closed()

    def complain(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    limits = Limits(max_seconds=args.max_seconds, max_memory=args.max_memory)
    session = ModelSession(
        registry,
        lambda e: load_model(
            e,
            args.device,
            args.precision,
            threads=args.threads,
            offload=args.offload,
            vae_tiling=args.vae_tiling,
            compile_unet=args.compile,
        ),
        args.outdir,
        say,
        limits,
        templates=Templates(args.wildcards.expanduser()) if args.wildcards else None,
        progress=None if interactive else complain,  # the toolbar shows progress in a terminal
        keep_models=args.max_loaded_models,
        addons=AddOns(
            loras=args.loras.expanduser() if args.loras else registry.loras,
            embeddings=args.embeddings.expanduser() if args.embeddings else registry.embeddings,
        )
        if args.loras or args.embeddings
        else None,
        share=share,
    )
    shell = Shell(registry, entry, session, printer=say, complain=complain)
    shell.output_gone = _stdout_gone
    if interactive:
        print(f"invoke-shell: model {entry.name} is loading; type !help for switches, q to quit (logs: {log_path})")
    status = 0
    try:
        shell.load_first_model(wait=not interactive)
        if args.from_file:
            status = shell.replay(args.from_file)
        elif interactive:
            shell.run_interactive(args.history)
        else:
            status = shell.run_lines(_stdin_lines())
    except KeyboardInterrupt:  # before the loop began (e.g. during the launch load)
        print(">> interrupted before the first line ran", file=sys.stderr)
        status = 130
    finally:
        shell.close()
        if share is not None:
            from invoke_shell.session.share import leave

            leave()
    return status


def _stdout_gone() -> bool:
    """True once the reader of a piped standard output has gone (`| head -1` exited): poll
    reports an error on the write end, before anything is written."""
    import select

    try:
        events = select.poll()
        events.register(sys.stdout.fileno(), select.POLLOUT)
        return any(e & (select.POLLERR | select.POLLHUP) for _, e in events.poll(0))
    except (OSError, ValueError, AttributeError):  # no file descriptor (tests) or no poll
        return False


def _stdin_lines() -> Iterable[str]:
    """Standard input as text; bytes that are not UTF-8 reach the parser, which names them."""
    raw = getattr(sys.stdin, "buffer", None)
    return sys.stdin if raw is None else io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape")


if __name__ == "__main__":
    sys.exit(main())
