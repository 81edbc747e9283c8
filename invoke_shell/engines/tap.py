"""Seeing inside the sampler without forking diffusers' pipelines.

`StepTap` wraps one request's scheduler `step` so every step yields the latents it started
from, the sigma of that level, and the model's predicted clean latents x0, whatever the
sampler. Multistep solvers (DPM-Solver++, UniPC) return no x0 of their own, so x0 is computed
here from the model output and the step's sigma, the same way for every scheduler.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch


class StepTap:
    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self.start: torch.Tensor | None = None  # the first latents the model sees
        self.start_sigma: float | None = None
        self.denoised: torch.Tensor | None = None  # x0 predicted at the last step
        self.sigma: float | None = None  # sigma of the level the last step started from
        self._last_t: float | None = None  # timestep of the last step
        cfg = scheduler.config
        self.prediction = cfg.get("prediction_type", "epsilon")
        self._train_sigmas = ((1 - scheduler.alphas_cumprod) / scheduler.alphas_cumprod).sqrt().numpy()
        self._step = scheduler.step

        # keep step()'s signature visible: pipelines pass `generator`/`eta` only if step() takes them
        @functools.wraps(self._step)
        def step(*args: Any, **kwargs: Any) -> Any:
            return self._wrapped(*args, **kwargs)

        scheduler.step = step

    @property
    def sigma_space(self) -> bool:
        """True when the scheduler's latents are x0 + sigma*noise (k-diffusion style)."""
        return float(self.scheduler.init_noise_sigma) > 1.0

    def current_sigma(self, timestep: Any) -> float:
        s = self.scheduler
        if getattr(s, "sigmas", None) is not None and hasattr(s, "_init_step_index"):
            if s.step_index is None:
                s._init_step_index(timestep)  # what step() would do first; same state either way
            return float(s.sigmas[s.step_index])
        return self._train_sigma(float(timestep))

    def level_after(self) -> float:
        """Sigma of the latents a step has just produced: the next entry of the schedule, the
        same value `!schedule` lists (0 once the last step has run)."""
        s = self.scheduler
        if getattr(s, "sigmas", None) is not None and getattr(s, "step_index", None) is not None:
            return float(s.sigmas[min(s.step_index, len(s.sigmas) - 1)])
        # DDIM and PLMS keep no sigmas: the latents now sit at the next lower timestep's level
        later = [float(t) for t in s.timesteps if self._last_t is not None and float(t) < self._last_t]
        return self._train_sigma(max(later)) if later else 0.0

    def _train_sigma(self, timestep: float) -> float:
        return float(np.interp(timestep, np.arange(len(self._train_sigmas)), self._train_sigmas))

    def _wrapped(
        self, model_output: torch.Tensor, timestep: Any, sample: torch.Tensor, *args: Any, **kwargs: Any
    ) -> Any:
        sigma = self.current_sigma(timestep)
        self._last_t = float(timestep)
        if self.start is None:
            self.start, self.start_sigma = sample.detach().clone(), sigma
        self.sigma = sigma
        self.denoised = self.predict_x0(model_output, sample, sigma)
        return self._step(model_output, timestep, sample, *args, **kwargs)

    def predict_x0(self, model_output: torch.Tensor, sample: torch.Tensor, sigma: float) -> torch.Tensor:
        alpha_t = 1.0 / (sigma**2 + 1) ** 0.5  # variance-preserving alpha and sigma of this level
        sigma_t = sigma * alpha_t
        x_t = sample * alpha_t if self.sigma_space else sample
        if self.prediction == "v_prediction":
            x0 = alpha_t * x_t - sigma_t * model_output
        elif self.prediction == "sample":
            x0 = model_output
        else:
            x0 = (x_t - sigma_t * model_output) / alpha_t
        result: torch.Tensor = x0.detach().clone()
        return result

    def vp_scale(self, sigma: float) -> float:
        """Factor that turns this scheduler's latents into a noisy picture (variance preserving)."""
        return 1.0 / (sigma**2 + 1) ** 0.5 if self.sigma_space else 1.0
