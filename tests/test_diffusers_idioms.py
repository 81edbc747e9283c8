"""The shipped tiny-shapes folder is a good diffusers citizen: plain diffusers, used the way its
documentation shows, draws the shell's pictures with every sampler of the registry.

Before its scheduler config said `clip_sample: false`, `pipe.scheduler =
DDIMScheduler.from_config(pipe.scheduler.config)` clipped x0 to [-1, 1] and drew a red field
(max pixel difference 0.91 from the shell's picture); the shell was right only because
`from_pipe` patches that flag.
"""

from __future__ import annotations

import json

import diffusers
import numpy as np
import pytest
import torch

from invoke_shell import schedulers
from invoke_shell.line.requests import ImageRequest
from invoke_shell.models.registry import builtin_registry

pytestmark = pytest.mark.usefixtures("no_network")

PROMPT, SEED, STEPS, CFG = "a purple circle on a white background", 1234, 12, 7.5
FOLDER = builtin_registry().get(None).path


@pytest.fixture(scope="module")
def shell_engine():
    from invoke_shell.models.loader import load_model

    return load_model(builtin_registry().get(None), "cpu", "fp32").engine


@pytest.fixture(scope="module")
def plain_pipe():
    """Loaded the way a diffusers user loads a folder: nothing of ours involved."""
    return diffusers.StableDiffusionPipeline.from_pretrained(str(FOLDER), local_files_only=True)


def shell_picture(engine, sampler: str) -> np.ndarray:
    req = ImageRequest(prompt=PROMPT, steps=STEPS, cfg_scale=CFG, sampler=sampler, width=64, height=64, seed=SEED)
    return engine.generate(req).pixels


def call(pipe) -> np.ndarray:
    out = pipe(
        PROMPT,
        num_inference_steps=STEPS,
        guidance_scale=CFG,
        height=64,
        width=64,
        generator=torch.Generator().manual_seed(SEED),
        output_type="np",
    )
    return out.images[0]


def scheduler_for(name: str, config) -> object:
    """What a diffusers user writes for our sampler `name`: the class and options the registry
    names (and, for the SDE sampler, the seed of its own noise, as the shell gives it)."""
    s = schedulers.SAMPLERS[name]
    options = dict(s.options)
    if s.cls == "DPMSolverSDEScheduler":
        options["noise_sampler_seed"] = SEED
    return getattr(diffusers, s.cls).from_config(config, **options)


def test_the_scheduler_config_says_what_stable_diffusions_says():
    config = json.loads((FOLDER / "scheduler" / "scheduler_config.json").read_text())
    # runwayml/stable-diffusion-v1-5's scheduler_config.json, key for key
    assert {k: v for k, v in config.items() if not k.startswith("_")} == {
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "beta_start": 0.00085,
        "clip_sample": False,
        "num_train_timesteps": 1000,
        "prediction_type": "epsilon",
        "set_alpha_to_one": False,
        "skip_prk_steps": True,
        "steps_offset": 1,
        "timestep_spacing": "leading",
        "trained_betas": None,
    }
    assert config["_class_name"] == "PNDMScheduler"


def test_load_then_call_is_the_shells_plms(shell_engine, plain_pipe):
    assert type(plain_pipe.scheduler).__name__ == "PNDMScheduler"
    assert np.abs(call(plain_pipe) - shell_picture(shell_engine, "plms")).max() <= 1e-4


@pytest.mark.parametrize("sampler", list(schedulers.SAMPLERS))
def test_swapping_the_scheduler_by_assignment_draws_the_shells_picture(shell_engine, plain_pipe, sampler):
    default = plain_pipe.scheduler
    try:
        plain_pipe.scheduler = scheduler_for(sampler, plain_pipe.scheduler.config)
        if sampler == "ddim":
            assert plain_pipe.scheduler.config.clip_sample is False  # from the folder, not patched by us
        ours, theirs = shell_picture(shell_engine, sampler), call(plain_pipe)
    finally:
        plain_pipe.scheduler = default
    assert np.abs(theirs - ours).max() <= 1e-4
    assert ours.std() > 0.05  # a picture, not a flat field


@pytest.mark.parametrize("sampler", list(schedulers.SAMPLERS))
def test_from_pipe_draws_the_shells_picture(shell_engine, plain_pipe, sampler):
    view = diffusers.StableDiffusionPipeline.from_pipe(
        plain_pipe, scheduler=scheduler_for(sampler, plain_pipe.scheduler.config)
    )
    assert view.unet is plain_pipe.unet  # the same weights, not a copy
    assert np.abs(call(view) - shell_picture(shell_engine, sampler)).max() <= 1e-4
