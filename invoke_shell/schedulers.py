"""The one scheduler registry: sampler names to diffusers schedulers, and the schedule plan.

A fresh scheduler is built for every request from the model's saved base config, never from
the previous request's object, so options such as Karras sigmas cannot leak between lines.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from invoke_shell.errors import UsageError, did_you_mean


@dataclass(frozen=True)
class Sampler:
    name: str
    cls: str  # diffusers class name
    a1111: str  # AUTOMATIC1111's name, written into the `parameters` chunk
    options: Mapping[str, Any]


SAMPLERS: dict[str, Sampler] = {
    s.name: s
    for s in (
        Sampler("k_lms", "LMSDiscreteScheduler", "LMS", {}),
        Sampler("k_euler", "EulerDiscreteScheduler", "Euler", {}),
        Sampler("k_euler_a", "EulerAncestralDiscreteScheduler", "Euler a", {}),
        Sampler("k_heun", "HeunDiscreteScheduler", "Heun", {}),
        Sampler("k_dpm_2", "KDPM2DiscreteScheduler", "DPM2", {}),
        Sampler("k_dpm_2_a", "KDPM2AncestralDiscreteScheduler", "DPM2 a", {}),
        Sampler("ddim", "DDIMScheduler", "DDIM", {}),
        Sampler("plms", "PNDMScheduler", "PLMS", {"skip_prk_steps": True}),
        Sampler("dpmpp_2m", "DPMSolverMultistepScheduler", "DPM++ 2M", {"algorithm_type": "dpmsolver++"}),
        Sampler(
            "dpmpp_2m_karras",
            "DPMSolverMultistepScheduler",
            "DPM++ 2M Karras",
            {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True},
        ),
        Sampler("dpmpp_sde", "DPMSolverSDEScheduler", "DPM++ SDE", {}),
        Sampler("unipc", "UniPCMultistepScheduler", "UniPC", {}),
    )
}

A1111_TO_SAMPLER = {s.a1111: s.name for s in SAMPLERS.values()}


def lookup(name: str) -> Sampler:
    try:
        return SAMPLERS[name]
    except KeyError:
        guess = did_you_mean(name, SAMPLERS)
        raise UsageError(
            f"unknown sampler {name!r}",
            (f"did you mean {guess}? " if guess else "") + "choose one of " + ", ".join(SAMPLERS),
        ) from None


def build(name: str, base_config: Mapping[str, Any], seed: int | None = None) -> Any:
    """A new scheduler for one request. `seed` seeds samplers with their own noise source."""
    import diffusers

    s = lookup(name)
    cls = getattr(diffusers, s.cls)
    options = dict(s.options)
    if s.cls == "DPMSolverSDEScheduler" and seed is not None:
        options["noise_sampler_seed"] = seed  # its Brownian tree is otherwise seeded at random
    return cls.from_config(dict(base_config), **options)


def check_fits(name: str, scheduler: Any, steps: int) -> None:
    """Refuse a schedule that reaches past the model's last timestep: with Stable Diffusion's
    "leading" spacing and offset, 1000 steps (999 for some samplers) do, and diffusers then
    indexes past its tables (IndexError inside DDIM)."""
    scheduler.set_timesteps(steps, device="cpu")
    last = int(scheduler.config.num_train_timesteps)
    if float(scheduler.timesteps.max()) >= last:
        raise UsageError(
            f"{name} at {steps} steps reaches timestep {int(scheduler.timesteps.max())}, past this model's {last - 1}",
            "use fewer steps (20 to 50 is usual; a few hundred at most)",
        )


def steps_run(steps: int, strength: float | None) -> int:
    """How many denoising steps actually run: all for txt2img, int(steps x strength) for img2img
    (diffusers' rule: the tail of the schedule, never more than `steps`)."""
    if strength is None:
        return steps
    return min(int(steps * strength), steps)


MAX_SCHEDULE = 1000  # Stable Diffusion models are trained on 1000 timesteps; no schedule is longer


def schedule_length(steps: int, strength: float | None, exact: bool = False) -> int:
    """Length of the schedule to build. With exact steps, img2img gets the shortest schedule
    whose tail at this strength is `steps` long (20 at 0.4 -> 50, run from step 30)."""
    if not exact or strength is None or strength >= 1.0:
        return steps
    if strength <= 0 or steps > strength * MAX_SCHEDULE:  # also keeps steps / strength finite
        lowest = steps / MAX_SCHEDULE
        raise UsageError(
            f"--exact_steps: {steps} steps at strength {strength:.3g} need a schedule longer than "
            f"the model's {MAX_SCHEDULE} timesteps",
            f"give -f {lowest:.3g} or more, or fewer steps" if lowest <= 1 else "give fewer steps",
        )
    n = max(steps, int(steps / strength))
    while steps_run(n, strength) < steps:  # int() rounding: at most a step or two
        n += 1
    return min(n, MAX_SCHEDULE)


def describe_img2img(steps: int, strength: float, exact: bool, what: str = "img2img") -> str:
    """img2img: 7 of 10 steps (strength 0.70): what a line will run, said before it runs."""
    schedule = schedule_length(steps, strength, exact)
    n = steps_run(schedule, strength)
    flag = ", --exact_steps" if exact and schedule != steps else ""
    return f"{what}: {n} of {schedule} steps (strength {strength:.2f}{flag})"


@dataclass(frozen=True)
class PlannedStep:
    index: int  # position in the full schedule
    timestep: float
    sigma: float
    runs: bool  # False: skipped because img2img starts later


def plan(name: str, base_config: Mapping[str, Any], steps: int, strength: float | None = None) -> list[PlannedStep]:
    """Every entry of the schedule for these settings and whether it runs: what the engines do."""
    import torch

    sched = build(name, base_config, seed=0)
    check_fits(name, sched, steps)
    timesteps = sched.timesteps
    start = (steps - steps_run(steps, strength)) * sched.order
    sigmas = getattr(sched, "sigmas", None)
    if sigmas is None or len(sigmas) < len(timesteps):
        acp = sched.alphas_cumprod
        sigmas = torch.stack([((1 - acp[int(t)]) / acp[int(t)]) ** 0.5 for t in timesteps])
    return [PlannedStep(i, float(t), float(sigmas[i]), i >= start) for i, t in enumerate(timesteps)]
