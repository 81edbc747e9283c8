"""Engine tests on the small random-weights pipeline, on the CPU, with fixed seeds."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from PIL import Image

from invoke_shell import schedulers
from invoke_shell.errors import Cancelled
from invoke_shell.line.requests import ImageRequest


def req(**kw) -> ImageRequest:
    base = dict(prompt="a red circle [a blue square]", steps=6, cfg_scale=7.5, sampler="k_lms", width=64, height=64)
    base.update(kw)
    return ImageRequest(**base)


@pytest.fixture(scope="module")
def init_image() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))


@pytest.mark.parametrize("sampler", ["k_lms", "ddim", "k_euler_a", "dpmpp_2m_karras"])
def test_txt2img_equals_diffusers_pipeline(engine, tiny_pipe, sampler):
    from diffusers import StableDiffusionPipeline

    ours = engine.generate(req(sampler=sampler, seed=42))
    ref_pipe = StableDiffusionPipeline.from_pipe(
        tiny_pipe, scheduler=schedulers.build(sampler, engine.base_scheduler_config, 42)
    )
    ref = ref_pipe(
        "a red circle",
        negative_prompt="a blue square",
        num_inference_steps=6,
        guidance_scale=7.5,
        height=64,
        width=64,
        generator=torch.Generator().manual_seed(42),
        output_type="np",
    ).images[0]
    assert np.abs(ours.pixels - ref).max() <= 1e-4


def test_words_a_closed_vocabulary_lacks_are_left_out_of_what_it_reads(engine):
    # spelled letter by letter they changed tiny-shapes' colours; the PNG keeps the line as typed
    typed = engine.generate(req(prompt="please draw a red circle, trending on artstation [blurry]", seed=5))
    known = engine.generate(req(prompt="a red circle, on", seed=5))
    assert np.array_equal(typed.pixels, known.pixels)
    assert not np.array_equal(
        typed.pixels, engine.generate(req(prompt="a red circle, on [a blue square]", seed=5)).pixels
    )


def test_img2img_equals_diffusers_pipeline(engine, tiny_pipe, init_image):
    from diffusers import StableDiffusionImg2ImgPipeline

    ours = engine.generate(req(init_img="x.png", strength=0.7, steps=10, seed=7), init_image=init_image)
    ref_pipe = StableDiffusionImg2ImgPipeline.from_pipe(
        tiny_pipe, scheduler=schedulers.build("k_lms", engine.base_scheduler_config, 7)
    )
    ref = ref_pipe(
        "a red circle",
        negative_prompt="a blue square",
        image=init_image,
        strength=0.7,
        num_inference_steps=10,
        guidance_scale=7.5,
        generator=torch.Generator().manual_seed(7),
        output_type="np",
    ).images[0]
    assert np.abs(ours.pixels - ref).max() <= 1e-4


def test_same_command_and_seed_same_pixels(engine):
    a = engine.generate(req(seed=1234))
    b = engine.generate(req(seed=1234))
    c = engine.generate(req(seed=1235))
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert not np.array_equal(np.asarray(a.image), np.asarray(c.image))


@pytest.mark.parametrize("steps, strength, expected", [(10, 0.7, 7), (10, 0.4, 4), (50, 0.8, 40), (10, 1.0, 10)])
def test_img2img_runs_int_steps_times_strength(engine, init_image, steps, strength, expected):
    seen = []
    result = engine.generate(
        req(init_img="x.png", steps=steps, strength=strength, seed=3), init_image=init_image, on_step=seen.append
    )
    assert result.steps_run == expected
    assert [s.step for s in seen] == list(range(expected + 1))  # step 0: what the model first sees
    assert all(s.total == expected for s in seen)


@pytest.mark.parametrize("steps, strength", [(10, 0.0), (10, 0.05)])
def test_zero_steps_returns_the_init_image_unchanged(engine, init_image, steps, strength):
    result = engine.generate(req(init_img="x.png", steps=steps, strength=strength, seed=3), init_image=init_image)
    assert result.steps_run == 0
    assert np.array_equal(np.asarray(result.image), np.asarray(init_image))
    assert "unchanged" in result.note


def test_strength_one_still_starts_from_the_init_image(engine, init_image):
    """At strength 1.0 the init image is noised at the top of the schedule, not discarded."""
    other = Image.fromarray(255 - np.asarray(init_image))
    a = engine.generate(req(init_img="x.png", strength=1.0, seed=5), init_image=init_image)
    b = engine.generate(req(init_img="x.png", strength=1.0, seed=5), init_image=other)
    assert a.steps_run == 6
    assert not np.array_equal(a.pixels, b.pixels)


def test_cancel_stops_within_one_step(engine):
    cancel = threading.Event()
    seen = []

    def on_step(state):
        seen.append(state.step)
        if state.step == 3:
            cancel.set()

    with pytest.raises(Cancelled) as err:
        engine.generate(req(steps=20, seed=1), on_step=on_step, cancel=cancel)
    assert seen == [0, 1, 2, 3]
    assert err.value.step == 3
    assert engine.generate(req(seed=1)).steps_run == 6  # the engine still works afterwards


@pytest.mark.parametrize("sampler", ["k_lms", "ddim", "k_euler_a", "dpmpp_2m_karras", "unipc"])
def test_steps_report_diffusers_latents_and_a_sensible_x0(engine, tiny_pipe, sampler):
    """Latents at each step equal those diffusers' callback exposes; the final x0 is the output."""
    from diffusers import StableDiffusionPipeline

    seen = []
    engine.generate(req(sampler=sampler, steps=8, seed=9), on_step=seen.append)
    ref = []
    pipe = StableDiffusionPipeline.from_pipe(
        tiny_pipe, scheduler=schedulers.build(sampler, engine.base_scheduler_config, 9)
    )
    pipe(
        "a red circle",
        negative_prompt="a blue square",
        num_inference_steps=8,
        guidance_scale=7.5,
        height=64,
        width=64,
        generator=torch.Generator().manual_seed(9),
        output_type="latent",
        callback_on_step_end=lambda p, i, t, kw: ref.append(kw["latents"].clone()) or {},
        callback_on_step_end_tensor_inputs=["latents"],
    )
    after = [s for s in seen if s.step > 0]
    assert len(after) == len(ref) == 8
    for s, r in zip(after, ref):
        assert torch.equal(s.latents, r)
    # at the last step the predicted x0 is (close to) the final latents: nothing is left to remove
    last = after[-1]
    if sampler != "k_euler_a":  # ancestral samplers add fresh noise at each step
        assert torch.allclose(last.denoised, last.latents, atol=0.15 * float(last.latents.abs().mean()) + 1e-3)
    assert seen[0].step == 0 and seen[0].denoised is None
    assert seen[0].sigma > seen[-1].sigma


def test_the_text_encoder_runs_once_for_repeated_prompts_and_the_pictures_stay_equal(engine):
    """Prompt embeddings are cached per prompt and negative: the second image of the same prompt
    pays no encoder time, and its pixels equal those of an image encoded afresh."""
    calls = []
    hook = engine.txt2img.text_encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        engine.prompts.forget()
        first = engine.generate(req(seed=3, prompt="a red circle on blue [a green square]"))
        encoded = len(calls)
        again = engine.generate(req(seed=3, prompt="a red circle on blue [a green square]"))
        other = engine.generate(
            req(seed=3, prompt="a red circle on blue [a yellow triangle]")
        )  # fits the encoder window
        assert encoded == 2 and len(calls) == 4  # prompt and negative once; a new pair encodes both
        engine.prompts.forget()
        fresh = engine.generate(req(seed=3, prompt="a red circle on blue [a green square]"))
    finally:
        hook.remove()
    assert np.array_equal(first.pixels, again.pixels) and np.array_equal(first.pixels, fresh.pixels)
    assert not np.array_equal(first.pixels, other.pixels)


def test_pipeline_views_are_built_once_and_each_request_gets_its_own_scheduler(engine, init_image):
    engine.generate(req(seed=1, sampler="ddim"))
    engine.generate(req(seed=1, init_img="x.png", strength=0.5), init_image=init_image)
    views = dict(engine._views)
    first = views["txt2img"].scheduler
    engine.generate(req(seed=2, sampler="k_euler"))
    engine.generate(req(seed=2, init_img="x.png", strength=0.5, sampler="ddim"), init_image=init_image)
    assert engine._views == views  # no new pipeline objects
    assert type(views["txt2img"].scheduler).__name__ == "EulerDiscreteScheduler"
    assert views["txt2img"].scheduler is not first and {"txt2img", "img2img"} <= set(
        views
    )  # (an earlier test may have built inpaint's)


def test_offloaded_and_tiled_engines_draw_what_the_resident_one_draws(engine, tiny_config, init_image):
    """--offload hooks every component to move it to the GPU while it runs (here to the CPU
    itself, the one device CI has): txt2img and img2img pictures are the resident engine's, and
    keeping a model aside never undoes the hooks. --vae_tiling decodes even a 128x128 image in
    tiles: another picture, close to the untiled one."""
    from diffusers import StableDiffusionPipeline

    from invoke_shell.engines.generate import Engine

    def fresh():
        folder = str(tiny_config.parent / "model")
        return StableDiffusionPipeline.from_pretrained(folder, local_files_only=True, safety_checker=None)

    pipe = fresh()
    offloaded = Engine(pipe, offload_to="cpu")
    assert all(hasattr(m, "_hf_hook") for m in (pipe.unet, pipe.vae, pipe.text_encoder))
    for r, kw in ((req(seed=3), {}), (req(seed=4, init_img="x.png", strength=0.6), {"init_image": init_image})):
        assert np.array_equal(offloaded.generate(r, **kw).pixels, engine.generate(r, **kw).pixels)
    offloaded.move_to("cpu")
    assert hasattr(pipe.unet, "_hf_hook") and offloaded.device.type == "cpu"

    tiled = Engine(fresh(), vae_tiling=True)
    big = req(seed=5, width=128, height=128, steps=3)
    apart, whole = tiled.generate(big).pixels, engine.generate(big).pixels
    assert np.abs(apart - whole).max() > 0 and np.abs(apart - whole).mean() < 0.05
