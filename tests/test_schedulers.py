"""The scheduler registry and the schedule plan."""

from __future__ import annotations

import pytest

from invoke_shell import schedulers
from invoke_shell.errors import UsageError
from invoke_shell.models.tiny_shapes.train import build_scheduler

BASE = dict(build_scheduler().config)

EXPECTED_CLASS = {
    "k_lms": "LMSDiscreteScheduler",
    "k_euler": "EulerDiscreteScheduler",
    "k_euler_a": "EulerAncestralDiscreteScheduler",
    "k_heun": "HeunDiscreteScheduler",
    "k_dpm_2": "KDPM2DiscreteScheduler",
    "k_dpm_2_a": "KDPM2AncestralDiscreteScheduler",
    "ddim": "DDIMScheduler",
    "plms": "PNDMScheduler",
    "dpmpp_2m": "DPMSolverMultistepScheduler",
    "dpmpp_2m_karras": "DPMSolverMultistepScheduler",
    "dpmpp_sde": "DPMSolverSDEScheduler",
    "unipc": "UniPCMultistepScheduler",
}


@pytest.mark.parametrize("name", list(schedulers.SAMPLERS))
def test_every_sampler_builds_from_the_base_config(name):
    s = schedulers.build(name, BASE, seed=1)
    assert type(s).__name__ == EXPECTED_CLASS[name]
    assert s.config.beta_schedule == "scaled_linear"
    s.set_timesteps(10)
    assert len(s.timesteps) >= 10


def test_options_do_not_leak_between_requests():
    karras = schedulers.build("dpmpp_2m_karras", BASE)
    plain = schedulers.build("dpmpp_2m", BASE)
    assert karras.config.use_karras_sigmas is True
    assert plain.config.use_karras_sigmas is False


def test_unknown_sampler_lists_the_valid_ones():
    with pytest.raises(UsageError) as err:
        schedulers.lookup("euler")
    assert "k_euler" in err.value.hint


@pytest.mark.parametrize(
    "steps, strength, n",
    [(10, 0.7, 7), (10, 0.4, 4), (50, 0.8, 40), (10, 0.05, 0), (10, 1.0, 10), (25, None, 25), (3, 0.99, 2)],
)
def test_steps_run(steps, strength, n):
    assert schedulers.steps_run(steps, strength) == n


@pytest.mark.parametrize("name", ["k_lms", "ddim", "k_heun"])
def test_plan_marks_the_img2img_entry_point(name):
    full = schedulers.plan(name, BASE, 10)
    part = schedulers.plan(name, BASE, 10, 0.4)
    assert [p.timestep for p in full] == [p.timestep for p in part]
    order = 2 if name == "k_heun" else 1
    assert sum(p.runs for p in part) == len(full) - 6 * order
    assert all(p.runs for p in full)
