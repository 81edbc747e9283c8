"""Per-step intermediates on disk: raw latents, x_t and x0 previews, a contact sheet, an animation.

<outdir>/img-samples/intermediates/NNNNNN.SEED/
    step_000.safetensors   (img2img only: the noised init image, what the model sees)
    step_005.safetensors   latents (exactly as diffusers' callback exposes them) + denoised x0
    step_005.xt.png        preview of the latents at that step
    step_005.x0.png        preview of the clean image the model predicted at that step
    contact_sheet.png      every saved step: x_t above x0, labelled with step, timestep, sigma
    steps.gif              the saved steps as an animation (x_t | x0)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw

from invoke_shell.engines import StepState

Render = Callable[[StepState], tuple[Image.Image, Image.Image | None]]  # step -> (x_t, x0) pictures


def approx_render(previewer: Callable[[object], Image.Image]) -> Render:
    """x_t and x0 pictures through the fast latent-to-RGB map."""
    def render(s: StepState):
        return previewer(s.latents * s.preview_scale), previewer(s.denoised) if s.denoised is not None else None
    return render


def pick_steps(states: list[StepState], every: int, include_start: bool) -> list[StepState]:
    last = max(s.step for s in states)
    return [s for s in states if (s.step == 0 and include_start) or (s.step > 0 and (s.step % every == 0 or s.step == last))]


def save(folder: Path, states: list[StepState], render: Render) -> list[Path]:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    written, frames = [], []
    for s in states:
        stem = folder / f"step_{s.step:03d}"
        tensors = {"latents": s.latents.detach().float().cpu().contiguous()}
        if s.denoised is not None:
            tensors["denoised"] = s.denoised.detach().float().cpu().contiguous()
        save_file(tensors, f"{stem}.safetensors", metadata={
            "step": str(s.step), "timestep": f"{s.timestep:.3f}", "sigma": f"{s.sigma:.5f}",
            "preview_scale": repr(s.preview_scale)})
        xt, x0 = render(s)
        xt.save(f"{stem}.xt.png", compress_level=1)  # small previews: fast beats small
        if x0 is not None:
            x0.save(f"{stem}.x0.png", compress_level=1)
        written += [Path(f"{stem}.safetensors"), Path(f"{stem}.xt.png")] + ([Path(f"{stem}.x0.png")] if x0 else [])
        frames.append((s, xt, x0))
    sheet = contact_sheet(frames)
    sheet.save(folder / "contact_sheet.png")
    anim = animation(frames)
    anim[0].save(folder / "steps.gif", save_all=True, append_images=anim[1:], duration=250, loop=0)
    return written + [folder / "contact_sheet.png", folder / "steps.gif"]


def _label(s: StepState) -> list[str]:
    return [f"step {s.step}/{s.total}", f"t={s.timestep:.0f}", f"sigma={s.sigma:.3f}"]


def contact_sheet(frames, min_tile: int = 96) -> Image.Image:
    w, h = frames[0][1].size
    scale = max(1, -(-min_tile // w))
    tw, th = w * scale, h * scale
    label_h = 36
    cols = len(frames)
    sheet = Image.new("RGB", (cols * tw + 40, label_h + 2 * th), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    draw.text((2, label_h + th // 2), "x_t", fill=(0, 0, 0))
    draw.text((2, label_h + th + th // 2), "x0", fill=(0, 0, 0))
    for i, (s, xt, x0) in enumerate(frames):
        x = 40 + i * tw
        for j, line in enumerate(_label(s)):
            draw.text((x + 2, 1 + j * 11), line, fill=(0, 0, 0))
        sheet.paste(xt.resize((tw, th), Image.Resampling.NEAREST), (x, label_h))
        if x0 is not None:
            sheet.paste(x0.resize((tw, th), Image.Resampling.NEAREST), (x, label_h + th))
    return sheet


def animation(frames) -> list[Image.Image]:
    out = []
    for s, xt, x0 in frames:
        w, h = xt.size
        f = Image.new("RGB", (2 * w, h + 12), (255, 255, 255))
        f.paste(xt, (0, 12))
        if x0 is not None:
            f.paste(x0, (w, 12))
        ImageDraw.Draw(f).text((2, 0), f"step {s.step}  sigma {s.sigma:.2f}", fill=(0, 0, 0))
        out.append(f.quantize(256, method=Image.Quantize.FASTOCTREE))  # GIF's default quantizer is 20x slower
    return out
