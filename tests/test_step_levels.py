"""Each step reports the noise level its latents are at: the next entry of the schedule that
`!schedule` lists, for samplers with sigmas and for DDIM, which keeps none."""

from __future__ import annotations

import pytest

from invoke_shell import schedulers
from invoke_shell.line.requests import ImageRequest


@pytest.mark.parametrize("sampler", ["ddim", "k_lms", "k_euler", "dpmpp_2m"])
def test_reported_sigma_after_each_step_is_the_schedules_next_entry(engine, sampler):
    states = []
    req = ImageRequest(prompt="a red circle", steps=5, cfg_scale=7.5, sampler=sampler, width=64, height=64, seed=3)
    engine.generate(req, on_step=states.append)
    planned = [p.sigma for p in schedulers.plan(sampler, engine.base_scheduler_config, 5)]
    after = [s.sigma for s in states[1:]]  # states[0] is the starting noise
    assert after == pytest.approx(planned[1:] + [0.0], rel=1e-4, abs=1e-6)
    assert states[0].sigma == pytest.approx(planned[0], rel=1e-4)
