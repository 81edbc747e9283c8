"""txt2img, img2img and inpainting on one set of components and one scheduler module.

img2img is txt2img started part-way down the schedule: all run diffusers' own pipelines
(StableDiffusionPipeline, and StableDiffusionImg2ImgPipeline / StableDiffusionInpaintPipeline
.from_pipe over the same modules, so the weights are in memory once; their XL counterparts for
SDXL), each view built once and given a fresh scheduler per request, with a per-step callback. --hires_fix and -U add a second, img2img pass at a larger size.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image, ImageFilter

from invoke_shell import schedulers
from invoke_shell.engines import cost
from invoke_shell.engines.adapters import Adapters
from invoke_shell.engines.prompts import PromptEncoder
from invoke_shell.engines.recipe import Recipe
from invoke_shell.engines.stop_points import stop_points
from invoke_shell.engines.tap import StepTap
from invoke_shell.errors import Cancelled
from invoke_shell.line.requests import ImageRequest, hires_size, hires_strength, upscales_init

TILE_ABOVE_PIXELS = 1024 * 1024  # the VAE's peak memory grows with pixels; above this it works in tiles
_SD_PIPELINES = ("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline", "StableDiffusionInpaintPipeline")
_XL_PIPELINES = ("StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline", "StableDiffusionXLInpaintPipeline")


@dataclass(frozen=True)
class StepState:
    """What the engine reports: step 0 is the latents the model first sees (noise for txt2img,
    the noised init image for img2img); step k the latents after k steps."""

    step: int
    total: int  # steps that run (a Heun-like sampler's two model calls are one step)
    timestep: float
    sigma: float  # noise level of `latents`
    latents: torch.Tensor  # exactly what diffusers' step callback exposes
    denoised: torch.Tensor | None  # x0 the model predicted at this step (None at step 0)
    preview_scale: float  # latents x this = a noisy picture's range (sigma-space samplers), for previews


@dataclass(frozen=True)
class GenerationResult:
    image: Image.Image
    pixels: np.ndarray  # float32 HxWx3 in [0, 1], before rounding to 8 bits
    steps_run: int
    schedule_steps: int  # length of the schedule the steps were taken from
    seconds: float
    note: str | None = None


class Engine:
    """The resident model: components, device, dtype and the base scheduler config. Nothing
    about any single request is stored here."""

    def __init__(
        self, pipe: Any, offload_to: str | None = None, vae_tiling: bool = False, recipe: Recipe | None = None
    ) -> None:
        """`offload_to` (a GPU) keeps the weights in main memory and moves each component there
        only while it runs, for cards too small to hold the whole model; `vae_tiling` encodes and
        decodes every image in tiles, not only large ones; `recipe` is what `recipe.apply` did
        to `pipe` (a compiled UNet gets no stop points: hooks would make it compile again)."""
        import diffusers

        # SD 1.x/2.x or SDXL: the family's own txt2img, img2img and inpaint pipelines (the last
        # two imported when first used: fewer modules to import before the first image)
        self.xl = "text_encoder_2" in pipe.components
        self._kinds = dict(zip(("txt2img", "img2img", "inpaint"), _XL_PIPELINES if self.xl else _SD_PIPELINES))
        base = getattr(diffusers, self._kinds["txt2img"])
        self.txt2img = pipe if type(pipe) is base else base.from_pipe(pipe)
        self.txt2img.set_progress_bar_config(disable=True)
        self.offload = offload_to is not None
        if offload_to:  # hooks on the shared modules: every pipeline view runs offloaded
            self.txt2img.enable_model_cpu_offload(device=offload_to)
        # where the model computes, kept here: the status line asks from another thread, and
        # the pipeline's own answer walks every module (which a LoRA being loaded changes)
        self._device: torch.device = self.txt2img._execution_device
        self.tile_above = 0 if vae_tiling else TILE_ABOVE_PIXELS
        self._views: dict[str, Any] = {"txt2img": self.txt2img}  # one pipeline view per kind
        self.base_scheduler_config: dict[str, Any] = dict(pipe.scheduler.config)
        self.recipe = recipe or Recipe()
        self._compiled_for: set[tuple[int, int, bool]] = set()  # (width, height, guided) sizes compiled
        self.prompts = PromptEncoder(self.txt2img)
        self.adapters = Adapters(self.txt2img, refuse=self.recipe.fused)  # LoRAs and embeddings the prompts name
        self._speed: cost.Speed | None = None  # measured the first time a large image is asked for

    @property
    def native_size(self) -> tuple[int, int]:
        """The size the UNet was trained at (its sample size in pixels)."""
        side = int(self.txt2img.unet.config.sample_size) * int(self.txt2img.vae_scale_factor)
        return side, side

    def cost(self, images: list[tuple[int, int, int]]) -> cost.Cost:
        """Estimated seconds and peak memory of images given as (width, height, steps run)."""
        if self._speed is None:
            self._speed = cost.measure(self.txt2img, *self.native_size)
        return cost.estimate(self.txt2img, self._speed, images, self.tile_above)

    def free_memory(self) -> int | None:
        return cost.free_memory(self.device)

    def move_to(self, device: str) -> None:
        """All the components (shared by every pipeline view) to `device`: a model kept while
        another one holds the GPU waits on the CPU. An offloaded model is there already."""
        if self.offload:
            return
        self.txt2img.to(device)
        self._device = self.txt2img._execution_device
        self.prompts.forget()
        if device == "cpu" and torch.cuda.is_available():
            torch.cuda.empty_cache()

    @property
    def dtype(self) -> torch.dtype:
        return self.txt2img.unet.dtype  # type: ignore[no-any-return]

    @property
    def device(self) -> torch.device:
        """Where the model computes (with offload, not where its weights wait)."""
        return self._device

    def generate(
        self,
        req: ImageRequest,
        init_image: Image.Image | None = None,
        on_step: Callable[[StepState], None] | None = None,
        cancel: threading.Event | None = None,
        mask: Image.Image | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> GenerationResult:
        """One image. `init_image` is the picture of `req.init_img`, already read and sized;
        `mask` ("L" at its size, 255 = repaint) makes it an inpaint. With --hires_fix or -U a
        second, img2img pass refines the picture upscaled; steps are reported for the first.
        `on_step` sees every step's latents and predicted x0 (taking x0 costs a few per cent of
        a small model's time); `on_progress` only counts steps (done, total), for free."""
        t0 = time.perf_counter()
        # 1. check
        if (req.init_img is None) != (init_image is None):
            raise ValueError("an init image must come with init_img set, and only then")
        if mask is not None and (init_image is None or mask.size != init_image.size):
            raise ValueError("a mask must come with an init image of its size")
        notes = []
        compiling = self._compiles_for(req)
        schedule = steps_run = 0
        if upscales_init(req) and init_image is not None:  # -U -I: the init image is the first pass
            pixels = _pixels(init_image)
        else:
            strength = req.strength if init_image is not None else None
            schedule = schedulers.schedule_length(req.steps, strength, req.exact_steps)
            steps_run = schedulers.steps_run(schedule, strength)
            if mask is not None and not np.asarray(mask).any():
                steps_run, why = 0, "nothing to repaint"
            elif init_image is not None and steps_run == 0:
                why = "strength 0" if req.strength == 0 else f"{schedule} x {req.strength} rounds down to 0 steps"
            if init_image is not None and steps_run == 0:
                pixels = _pixels(init_image)
                notes.append(f"{why}: the init image is returned unchanged")
            else:
                watch = _Watch(on_step, on_progress, cancel)
                pixels = self._denoise(req, schedule, (req.width, req.height), init_image, mask, watch)
            if mask is not None and init_image is not None and steps_run:
                pixels = composite(_pixels(init_image), pixels, mask, req.mask_blur)
        # 2. the refining pass at the larger size
        larger = hires_size(req)
        if larger is not None:
            strength = hires_strength(req)
            refine_schedule = schedulers.schedule_length(req.steps, strength, req.exact_steps)
            refine_steps = schedulers.steps_run(refine_schedule, strength)
            if refine_steps == 0:
                pixels = _pixels(_picture(pixels).resize(larger, Image.Resampling.LANCZOS))
                notes.append(f"upscaled to {larger[0]}x{larger[1]} without refining (strength {strength} runs 0 steps)")
            else:
                start = self._upscaled(pixels, larger, req.hires_upscaler)
                refine = req.with_(strength=strength)
                pixels = self._denoise(refine, refine_schedule, larger, start, None, _Watch(None, None, cancel))
            steps_run += refine_steps
            schedule = schedule or refine_schedule
        # 3. return
        if compiling:
            self._compiled_for.update(compiling)
            sizes = " and ".join(f"{w}x{h}" for w, h, _ in compiling)
            notes.append(
                f"the UNet was compiled for {sizes} ({time.perf_counter() - t0:.1f} s for this image; "
                "later ones at that size are faster)"
            )
        if not np.isfinite(pixels).all():  # an overflow in the UNet or text encoder
            pixels = np.nan_to_num(pixels, nan=0.0, posinf=1.0, neginf=0.0)
            notes.append(overflow_note(self.dtype))
        image = _picture(pixels)
        note = "; ".join(notes) or None
        if self.offload:  # a view's call leaves its last component on the GPU: back to main memory
            self.txt2img.maybe_free_model_hooks()
        return GenerationResult(image, pixels, steps_run, schedule, time.perf_counter() - t0, note=note)

    def _compiles_for(self, req: ImageRequest) -> set[tuple[int, int, bool]]:
        """The sizes a compiled UNet has not seen that this request runs it at: each compiles
        once (guidance doubles the batch, which is another shape)."""
        if not self.recipe.compiled:
            return set()
        guided = req.cfg_scale > 1
        sizes = {(req.width, req.height, guided)}
        larger = hires_size(req)
        if larger is not None:
            sizes.add((*larger, guided))
        return sizes - self._compiled_for

    def _denoise(
        self,
        req: ImageRequest,
        schedule: int,
        size: tuple[int, int],
        image: Image.Image | torch.Tensor | None,
        mask: Image.Image | None,
        watch: _Watch,
    ) -> np.ndarray:
        """One run of diffusers' own pipeline: txt2img without `image`, img2img with it (a
        picture, or latents), inpaint with a mask. Returns float pixels HxWx3 in [0, 1]."""
        width, height = size
        # a fresh scheduler on the pipeline view of this kind over the shared components
        scheduler = schedulers.build(req.sampler, self.base_scheduler_config, req.seed)
        schedulers.check_fits(req.sampler, scheduler, schedule)
        if image is None:
            pipe = self._view("txt2img", scheduler)
            inputs: dict[str, Any] = {"height": height, "width": width}
        elif mask is None:
            pipe = self._view("img2img", scheduler)
            picture = image.convert("RGB") if isinstance(image, Image.Image) else image
            inputs = {"image": picture, "strength": req.strength}
        else:
            # a 4-channel UNet: diffusers blends the init's latents back outside the mask each step;
            # the mask is widened to whole latent cells, so every pixel to repaint is in one
            pipe = self._view("inpaint", scheduler)  # a 9-channel UNet uses its own channels
            cells = latent_cells(mask, int(self.txt2img.vae_scale_factor))
            inputs = {"image": image, "mask_image": cells, "strength": req.strength, "height": height, "width": width}
        on_step, on_progress, cancel = watch
        tap = StepTap(scheduler) if on_step is not None else None  # x0 per step only for those who look
        done = [0]  # steps finished, for the step a stop inside a model call reports
        # a 2nd-order sampler (k_heun, k_dpm_2) calls the model twice a step: a step is reported
        # once whole (the last call is a single Euler step), numbered as the user counts
        two = hasattr(scheduler, "state_in_first_order")

        # denoise, reporting each step; Ctrl-C raises from the callback to stop at once
        def callback(p: Any, i: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            if on_progress is not None:
                on_progress(i + 1, p.num_timesteps)
            if on_step is not None and tap is not None:
                calls = p.num_timesteps
                total, step = ((calls + 1) // 2, (i + 2) // 2) if two else (calls, i + 1)
                if i == 0 and tap.start is not None and tap.start_sigma is not None:
                    on_step(
                        StepState(0, total, float(t), tap.start_sigma, tap.start, None, tap.vp_scale(tap.start_sigma))
                    )
                if not two or scheduler.state_in_first_order or i + 1 == calls:
                    after = tap.level_after()
                    latents = kwargs["latents"]
                    on_step(StepState(step, total, float(t), after, latents, tap.denoised, tap.vp_scale(after)))
            done[0] = i + 1
            if cancel is not None and cancel.is_set():
                raise Cancelled(i + 1)
            return {}

        generator = torch.Generator("cpu").manual_seed(req.seed)  # CPU noise: same picture on any device
        if image is None:
            # draw the starting noise as diffusers would (same generator, same dtype), so that
            # variations can blend it and the generator goes on to feed ancestral samplers
            inputs["latents"] = self.noise(req, generator)
        p = self.txt2img
        # stop points in every block of the big models only for large images, where one block
        # takes seconds; at ordinary sizes the top-level blocks are enough and cost less
        large = width * height > 4 * self.native_size[0] * self.native_size[1]
        models = [(p.text_encoder, 4), (p.vae, 4 if large else 3)]
        if not self.recipe.compiled:
            models.append((p.unet, 4 if large else 2))
        if self.xl:
            models.append((p.text_encoder_2, 4))
        with stop_points(models, cancel, lambda: done[0]), self._tiled(width, height), torch.inference_mode():
            out = pipe(
                **self.prompts.embeddings(req.positive, req.negative, self.adapters.state, req.lora_active),
                num_inference_steps=schedule,
                guidance_scale=req.cfg_scale,
                generator=generator,
                output_type="np",
                callback_on_step_end=callback,
                callback_on_step_end_tensor_inputs=["latents"],
                **inputs,
            )
        pixels: np.ndarray = out.images[0].astype(np.float32)
        return pixels

    def _view(self, kind: str, scheduler: Any) -> Any:
        """The pipeline of `kind` over the shared components, built once (`from_pipe`), given this
        request's scheduler."""
        view = self._views.get(kind)
        if view is None:
            import diffusers

            view = self._views[kind] = getattr(diffusers, self._kinds[kind]).from_pipe(self.txt2img)
            view.set_progress_bar_config(disable=True)
        view.scheduler = scheduler
        return view

    def _upscaled(self, pixels: np.ndarray, size: tuple[int, int], how: str) -> Image.Image | torch.Tensor:
        """The first pass at the refining size: its picture by Lanczos, or its latents (the picture
        encoded by the VAE) by bilinear interpolation, as AUTOMATIC1111's "Latent" upscaler."""
        picture = _picture(pixels)
        if how == "lanczos":
            return picture.resize(size, Image.Resampling.LANCZOS)
        vae, factor = self.txt2img.vae, int(self.txt2img.vae_scale_factor)
        x = self.txt2img.image_processor.preprocess(picture).to(self.device, vae.dtype)
        with torch.no_grad():
            latents = vae.encode(x).latent_dist.mode() * vae.config.scaling_factor
        grown: torch.Tensor = torch.nn.functional.interpolate(
            latents.float(), size=(size[1] // factor, size[0] // factor), mode="bilinear", align_corners=False
        ).to(vae.dtype)
        return grown

    @contextmanager
    def _tiled(self, width: int, height: int) -> Iterator[None]:
        """Large images are encoded and decoded by the VAE in tiles: memory stays bounded, and
        Ctrl-C stops between tiles. Below the threshold the picture is the untiled one."""
        vae = self.txt2img.vae
        if width * height <= self.tile_above or not hasattr(vae, "enable_tiling"):
            yield
            return
        vae.enable_tiling()
        try:
            yield
        finally:
            vae.disable_tiling()

    def noise(self, req: ImageRequest, generator: torch.Generator) -> torch.Tensor:
        unet, factor = self.txt2img.unet, self.txt2img.vae_scale_factor
        shape = (1, unet.config.in_channels, req.height // factor, req.width // factor)
        noise = torch.randn(shape, generator=generator, dtype=unet.dtype)
        for vseed, weight in req.with_variations:
            other = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(vseed), dtype=unet.dtype)
            noise = slerp(weight, noise.float(), other.float()).to(unet.dtype)
        return noise

    def decode(self, latents: torch.Tensor) -> Image.Image:
        """The exact picture of some latents (the full VAE decode), for step previews."""
        vae = self.txt2img.vae
        with torch.no_grad():
            x = vae.decode(latents.to(self.device, vae.dtype) / vae.config.scaling_factor).sample
        image: Image.Image = self.txt2img.image_processor.postprocess(x.float(), output_type="pil")[0]
        return image


class _Watch(NamedTuple):
    """Who is told what while one pass denoises."""

    on_step: Callable[[StepState], None] | None
    on_progress: Callable[[int, int], None] | None
    cancel: threading.Event | None


def overflow_note(dtype: torch.dtype) -> str:
    name = str(dtype).removeprefix("torch.")
    fix = {"float16": ": launch with --precision bf16 or fp32", "bfloat16": ": launch with --precision fp32"}
    return f"the model overflowed in {name} and some pixels are black{fix.get(name, '')}"


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


def _picture(pixels: np.ndarray) -> Image.Image:
    return Image.fromarray((pixels * 255).round().astype(np.uint8))


def latent_cells(mask: Image.Image, factor: int) -> Image.Image:
    """The mask widened to whole factor x factor cells: a latent cell is repainted when any of
    its pixels is (diffusers samples one pixel per cell when it shrinks the mask)."""
    a = np.asarray(mask) > 127
    h, w = a.shape
    cells = a.reshape(h // factor, factor, w // factor, factor).any(axis=(1, 3))
    full = np.repeat(np.repeat(cells, factor, axis=0), factor, axis=1)
    return Image.fromarray(full.astype(np.uint8) * 255, "L")


def composite(init: np.ndarray, made: np.ndarray, mask: Image.Image, blur: int) -> np.ndarray:
    """The init image's own pixels where nothing is repainted, the new ones where the mask is
    white, and the seam blended over about `blur` pixels into the kept side (the repainted side
    stays wholly new: under it may be erased black)."""
    weight = np.asarray(mask, dtype=np.float32) / 255.0
    if blur:
        soft = np.asarray(mask.filter(ImageFilter.GaussianBlur(blur / 2)), dtype=np.float32) / 255.0
        weight = np.maximum(weight, np.minimum(1.0, 2 * soft))  # 2x: the blur's half-height sits on the edge
    blended: np.ndarray = init * (1 - weight[..., None]) + made * weight[..., None]
    return blended


def slerp(t: float, v0: torch.Tensor, v1: torch.Tensor, threshold: float = 0.9995) -> torch.Tensor:
    """Spherical interpolation between two noise tensors (keeps the blend's norm noise-like)."""
    dot = float((v0 * v1).sum() / (v0.norm() * v1.norm()))
    if abs(dot) > threshold:
        return (1 - t) * v0 + t * v1
    theta = torch.tensor(dot).acos()
    return (torch.sin((1 - t) * theta) * v0 + torch.sin(t * theta) * v1) / torch.sin(theta)
