"""`!schedule`: the steps that will run, from the same scheduler module the engines use."""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from PIL import Image

from invoke_shell import schedulers


@dataclass(frozen=True)
class Step:
    """One step of the schedule: the level it starts from and the model calls it makes (Heun-like
    samplers call the model twice a step, the last step once)."""

    number: int  # 1-based, counted over the whole schedule
    timestep: float
    sigma: float
    calls: int
    runs: bool  # False: skipped because img2img starts later


def schedule_steps(
    sampler: str, base: Mapping[str, Any], steps: int, strength: float | None, exact: bool = False
) -> tuple[int, list[Step]]:
    """The schedule's length and its steps, from the plan the engines run (one entry per call)."""
    length = schedulers.schedule_length(steps, strength, exact)
    plan = schedulers.plan(sampler, base, length, strength)
    order = -(-len(plan) // length)  # calls per step: 2N-1 entries for a 2nd-order sampler
    groups = [plan[i : i + order] for i in range(0, len(plan), order)]
    return length, [Step(k, g[0].timestep, g[0].sigma, len(g), g[0].runs) for k, g in enumerate(groups, 1)]


def table(sampler: str, base: Mapping[str, Any], steps: int, strength: float | None, exact: bool = False) -> str:
    """The steps that run, one row each; steps skipped by strength are summed up in one line."""
    length, every = schedule_steps(sampler, base, steps, strength, exact)
    running = [s for s in every if s.runs]
    head = f"{sampler}: {length}-step schedule"
    if strength is not None:
        head += f", strength {strength:.2f}: {len(running)} steps run"
    lines = [head + f" ({sum(s.calls for s in running)} model calls)"]
    skipped = [s for s in every if not s.runs]
    if skipped:
        lines.append(
            f"steps 1-{skipped[-1].number} (sigma {skipped[0].sigma:.2f} to {skipped[-1].sigma:.2f}) "
            "are skipped: img2img starts at the init image noised to the first step below"
        )
    two = any(s.calls > 1 for s in running)
    lines.append(f"{'step':>5}  {'timestep':>9}  {'sigma':>9}" + ("  calls" if two else ""))
    for s in running:
        lines.append(f"{s.number:>5}  {s.timestep:>9.2f}  {s.sigma:>9.4f}" + (f"  {s.calls:>5}" if two else ""))
    return "\n".join(lines)


def plot(
    sampler: str, base: Mapping[str, Any], steps: int, strength: float | None, exact: bool = False
) -> tuple[Image.Image, str]:
    """Sigma at each step, the steps that run in red, as a picture and the file name it goes by.
    Few ticks and large type, so it still reads when drawn a terminal's width."""
    from matplotlib.figure import Figure  # no pyplot: no global backend, no figure registry
    from matplotlib.ticker import MaxNLocator

    length, every = schedule_steps(sampler, base, steps, strength, exact)
    running = [s for s in every if s.runs]
    fig = Figure(figsize=(6, 3.5), dpi=100)
    ax = fig.subplots()
    ax.plot([s.number for s in every], [s.sigma for s in every], color="#888", lw=2, zorder=1)
    ax.scatter([s.number for s in running], [s.sigma for s in running], s=40, color="#d62728", zorder=2)
    skipped = [s for s in every if not s.runs]
    if skipped:
        ax.scatter([s.number for s in skipped], [s.sigma for s in skipped], s=40, color="#bbb", zorder=2)
        entry = running[0]
        ax.axvline(entry.number - 0.5, color="#1f77b4", ls="--", lw=2)
        ax.annotate(
            f"starts at step {entry.number}\nsigma {entry.sigma:.2f}",
            (entry.number, entry.sigma),
            xytext=(12, 12),
            textcoords="offset points",
            fontsize=13,
        )
    ax.xaxis.set_major_locator(MaxNLocator(6, integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(4))
    ax.tick_params(labelsize=12)
    ax.set_xlabel("step", fontsize=13)
    ax.set_ylabel("sigma", fontsize=13)
    ran = f", {len(running)} run" if skipped else ""
    ax.set_title(
        f"{sampler}: {length} steps{ran}" + (f", strength {strength:.2f}" if strength is not None else ""), fontsize=14
    )
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    name = f"{sampler}.{length}" + (f".f{strength:.2f}" if strength is not None else "") + ".png"
    return Image.open(buffer).convert("RGB"), name
