"""txt2img and img2img on one set of components and one scheduler module.

img2img is txt2img started part-way down the schedule: both run diffusers' own pipelines
(StableDiffusionPipeline and StableDiffusionImg2ImgPipeline.from_pipe over the same modules,
so the weights are in memory once), with a fresh scheduler per request and a per-step callback.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from invoke_shell import schedulers
from invoke_shell.engines import cost
from invoke_shell.engines.prompts import PromptEncoder
from invoke_shell.engines.stop_points import stop_points
from invoke_shell.engines.tap import StepTap
from invoke_shell.errors import Cancelled
from invoke_shell.line.requests import ImageRequest

TILE_ABOVE_PIXELS = 1024 * 1024  # the VAE's peak memory grows with pixels; above this it works in tiles


@dataclass(frozen=True)
class StepState:
    """What the engine reports: step 0 is the latents the model first sees (noise for txt2img,
    the noised init image for img2img); step k the latents after k steps."""

    step: int
    total: int  # steps that run (scheduler calls: Heun-like samplers call twice per step)
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

    def __init__(self, pipe: Any) -> None:
        from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline

        self.txt2img = pipe if type(pipe) is StableDiffusionPipeline else StableDiffusionPipeline.from_pipe(pipe)
        self._img2img_cls = StableDiffusionImg2ImgPipeline
        self.base_scheduler_config: dict[str, Any] = dict(pipe.scheduler.config)
        self.prompts = PromptEncoder(self.txt2img)
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
        return cost.estimate(self.txt2img, self._speed, images, TILE_ABOVE_PIXELS)

    def free_memory(self) -> int | None:
        return cost.free_memory(self.device)

    @property
    def device(self) -> torch.device:
        device: torch.device = self.txt2img.unet.device
        return device

    def generate(
        self,
        req: ImageRequest,
        init_image: Image.Image | None = None,
        on_step: Callable[[StepState], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> GenerationResult:
        """One image. `init_image` is the picture of `req.init_img`, already read and sized."""
        t0 = time.perf_counter()
        seed = req.seed
        # 1. check
        if (req.init_img is None) != (init_image is None):
            raise ValueError("an init image must come with init_img set, and only then")
        strength = req.strength if init_image is not None else None
        schedule = schedulers.schedule_length(req.steps, strength, req.exact_steps)
        steps_run = schedulers.steps_run(schedule, strength)
        if init_image is not None and steps_run == 0:
            pixels = np.asarray(init_image.convert("RGB"), dtype=np.float32) / 255.0
            why = "strength 0" if req.strength == 0 else f"{schedule} x {req.strength} rounds down to 0 steps"
            return GenerationResult(
                init_image.convert("RGB"),
                pixels,
                0,
                schedule,
                time.perf_counter() - t0,
                note=f"{why}: the init image is returned unchanged",
            )
        # 2. a fresh scheduler and a pipeline view over the shared components
        scheduler = schedulers.build(req.sampler, self.base_scheduler_config, seed)
        schedulers.check_fits(req.sampler, scheduler, schedule)
        if init_image is None:
            pipe = type(self.txt2img).from_pipe(self.txt2img, scheduler=scheduler)
            inputs: dict[str, Any] = {"height": req.height, "width": req.width}
        else:
            pipe = self._img2img_cls.from_pipe(self.txt2img, scheduler=scheduler)
            inputs = {"image": init_image.convert("RGB"), "strength": req.strength}
        pipe.set_progress_bar_config(disable=True)
        tap = StepTap(scheduler)
        done = [0]  # steps finished, for the step a stop inside a model call reports

        # 3. denoise, reporting each step; Ctrl-C raises from the callback to stop at once
        def callback(p: Any, i: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            if on_step is not None:
                total = p.num_timesteps
                if i == 0 and tap.start is not None and tap.start_sigma is not None:
                    on_step(
                        StepState(0, total, float(t), tap.start_sigma, tap.start, None, tap.vp_scale(tap.start_sigma))
                    )
                latents = kwargs["latents"]
                after = tap.level_after()
                on_step(StepState(i + 1, total, float(t), after, latents, tap.denoised, tap.vp_scale(after)))
            done[0] = i + 1
            if cancel is not None and cancel.is_set():
                raise Cancelled(i + 1)
            return {}

        generator = torch.Generator("cpu").manual_seed(seed)  # CPU noise: same picture on any device
        if init_image is None:
            # draw the starting noise as diffusers would (same generator, same dtype), so that
            # variations can blend it and the generator goes on to feed ancestral samplers
            inputs["latents"] = self.noise(req, generator)
        p = self.txt2img
        with stop_points([p.text_encoder, p.unet, p.vae], cancel, lambda: done[0]), self._tiled(req):
            if self.prompts.needs_compel(req.positive, req.negative):  # weights or a long prompt
                cond, uncond = self.prompts.encode(req.positive, req.negative)
                text: dict[str, Any] = {"prompt_embeds": cond, "negative_prompt_embeds": uncond}
            else:
                text = {"prompt": req.positive, "negative_prompt": req.negative or None}
            out = pipe(
                **text,
                num_inference_steps=schedule,
                guidance_scale=req.cfg_scale,
                generator=generator,
                output_type="np",
                callback_on_step_end=callback,
                callback_on_step_end_tensor_inputs=["latents"],
                **inputs,
            )
        # 4. return
        pixels = out.images[0].astype(np.float32)
        image = Image.fromarray((pixels * 255).round().astype(np.uint8))
        return GenerationResult(image, pixels, steps_run, schedule, time.perf_counter() - t0)

    @contextmanager
    def _tiled(self, req: ImageRequest) -> Iterator[None]:
        """Large images are encoded and decoded by the VAE in tiles: memory stays bounded, and
        Ctrl-C stops between tiles. Below the threshold the picture is the untiled one."""
        vae = self.txt2img.vae
        if req.width * req.height <= TILE_ABOVE_PIXELS or not hasattr(vae, "enable_tiling"):
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
            x = vae.decode(latents.to(vae.device, vae.dtype) / vae.config.scaling_factor).sample
        image: Image.Image = self.txt2img.image_processor.postprocess(x.float(), output_type="pil")[0]
        return image


def slerp(t: float, v0: torch.Tensor, v1: torch.Tensor, threshold: float = 0.9995) -> torch.Tensor:
    """Spherical interpolation between two noise tensors (keeps the blend's norm noise-like)."""
    dot = float((v0 * v1).sum() / (v0.norm() * v1.norm()))
    if abs(dot) > threshold:
        return (1 - t) * v0 + t * v1
    theta = torch.tensor(dot).acos()
    return (torch.sin((1 - t) * theta) * v0 + torch.sin(t * theta) * v1) / torch.sin(theta)
