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


@pytest.mark.parametrize("sampler", ["k_heun", "k_dpm_2"])
def test_a_second_order_sampler_reports_each_step_once_whole(engine, sampler):
    # two model calls a step: the steps a user asked for, not the calls (-s 5 made 9 files)
    states = []
    req = ImageRequest(prompt="a red circle", steps=5, cfg_scale=7.5, sampler=sampler, width=64, height=64, seed=3)
    result = engine.generate(req, on_step=states.append)
    assert [(s.step, s.total) for s in states] == [(k, 5) for k in range(6)]  # step 0: the starting noise
    levels = [s.sigma for s in states]
    assert all(a > b for a, b in zip(levels, levels[1:])) and levels[-1] == 0.0
    assert result.steps_run == 5
