"""Where results land. Every file the program writes is named and written here.

<outdir>/img-samples/NNNNNN.SEED.png          an image, its command in three metadata chunks
<outdir>/img-samples/NNNNNN.SEED.grid.png     -n ... -g; .sweep.png for a sweep's labelled sheet
<outdir>/img-samples/invoke_log.md            one line per file: time, name, command
<outdir>/img-samples/intermediates/NNNNNN.SEED/   per-step latents and previews
<outdir>/schedules/SAMPLER.STEPS[.fSTRENGTH].png  !schedule plots

The six-digit number continues across restarts. Files are created exclusively, so nothing
already written is ever overwritten.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from invoke_shell.files import intermediates, metadata
from invoke_shell.files.metadata import ModelInfo
from invoke_shell.line.requests import ImageRequest

if TYPE_CHECKING:
    from invoke_shell.engines.generate import StepState

_NUMBERED = re.compile(r"^(\d{6})\.")


def samples_dir(outdir: Path) -> Path:
    return outdir / "img-samples"


def intermediates_dir(image_path: Path) -> Path:
    return image_path.parent / "intermediates" / image_path.name.removesuffix(".png")


def write_image(
    outdir: Path, req: ImageRequest, image: Image.Image, model: ModelInfo, steps_run: int, schedule_steps: int
) -> Path:
    """One generated image with its command in all three chunks, and its line in the log."""
    chunks = metadata.png_chunks(req, model, steps_run, schedule_steps)
    path = _write_png(outdir, req.seed, image, chunks)
    append_log(outdir, chunks["Dream"], path)  # the command is written once, read here
    return path


def write_sheet(outdir: Path, seed: int, image: Image.Image, command: str, suffix: str) -> Path:
    """A grid or sweep sheet, storing the command of the whole line."""
    path = _write_png(outdir, seed, image, {"Dream": command}, suffix=suffix)
    append_log(outdir, command, path)
    return path


def write_plot(outdir: Path, name: str, image: Image.Image) -> Path:
    """A plot (e.g. !schedule's); the same settings give the same name, so it is replaced."""
    folder = outdir / "schedules"
    folder.mkdir(parents=True, exist_ok=True)
    image.save(folder / name)
    return folder / name


def write_intermediates(folder: Path, states: Sequence[StepState], render: intermediates.Render) -> list[Path]:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    frames: list[intermediates.Frame] = []
    for s in states:
        stem = folder / f"step_{s.step:03d}"
        tensors = {"latents": s.latents.detach().float().cpu().contiguous()}
        if s.denoised is not None:
            tensors["denoised"] = s.denoised.detach().float().cpu().contiguous()
        save_file(
            tensors,
            f"{stem}.safetensors",
            metadata={
                "step": str(s.step),
                "timestep": f"{s.timestep:.3f}",
                "sigma": f"{s.sigma:.5f}",
                "preview_scale": repr(s.preview_scale),
            },
        )
        xt, x0 = render(s)
        xt.save(f"{stem}.xt.png", compress_level=1)  # small previews: fast beats small
        written += [Path(f"{stem}.safetensors"), Path(f"{stem}.xt.png")]
        if x0 is not None:
            x0.save(f"{stem}.x0.png", compress_level=1)
            written.append(Path(f"{stem}.x0.png"))
        frames.append((s, xt, x0))
    intermediates.contact_sheet(frames).save(folder / "contact_sheet.png")
    anim = intermediates.animation(frames)
    anim[0].save(folder / "steps.gif", save_all=True, append_images=anim[1:], duration=250, loop=0)
    return [*written, folder / "contact_sheet.png", folder / "steps.gif"]


def next_number(folder: Path) -> int:
    if not folder.exists():
        return 1
    numbers = [int(m.group(1)) for p in folder.iterdir() if (m := _NUMBERED.match(p.name))]
    return max(numbers, default=0) + 1


def _write_png(outdir: Path, seed: int, image: Image.Image, chunks: dict[str, str], suffix: str = "") -> Path:
    folder = samples_dir(outdir)
    folder.mkdir(parents=True, exist_ok=True)
    info = PngInfo()
    for key, value in chunks.items():
        if value.isascii():
            info.add_text(key, value)
        else:
            info.add_itxt(key, value)
    n = next_number(folder)
    while True:
        path = folder / f"{n:06d}.{seed}{suffix}.png"
        try:
            with open(path, "xb") as f:  # exclusive: never overwrite
                image.save(f, format="PNG", pnginfo=info)
            return path
        except FileExistsError:
            n += 1


def append_log(outdir: Path, command: str, path: Path) -> None:
    log = samples_dir(outdir) / "invoke_log.md"
    stamp = datetime.now().isoformat(timespec="seconds")
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"* {stamp} `{path.name}`: `{command}`\n")
