"""`!schedule`: the steps that will run, from the same scheduler module the engines use."""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

from PIL import Image

from invoke_shell import schedulers


def _plan(
    sampler: str, base: Mapping[str, Any], steps: int, strength: float | None, exact: bool
) -> tuple[int, list[schedulers.PlannedStep]]:
    length = schedulers.schedule_length(steps, strength, exact)
    return length, schedulers.plan(sampler, base, length, strength)


def table(sampler: str, base: Mapping[str, Any], steps: int, strength: float | None, exact: bool = False) -> str:
    length, plan = _plan(sampler, base, steps, strength, exact)
    runs = sum(p.runs for p in plan)
    head = f"{sampler}: {length}-step schedule"
    if strength is not None:
        head += f", strength {strength:.2f}: {schedulers.steps_run(length, strength)} steps run"
    lines = [head + f" ({runs} model calls)", f"{'index':>5}  {'timestep':>9}  {'sigma':>9}  runs"]
    for p in plan:
        lines.append(f"{p.index:>5}  {p.timestep:>9.2f}  {p.sigma:>9.4f}  {'yes' if p.runs else 'skipped (strength)'}")
    return "\n".join(lines)


def plot(
    sampler: str, base: Mapping[str, Any], steps: int, strength: float | None, exact: bool = False
) -> tuple[Image.Image, str]:
    """The sigma of every step, those that run marked, as a picture and the file name it goes by."""
    from matplotlib.figure import Figure  # no pyplot: no global backend, no figure registry

    length, plan = _plan(sampler, base, steps, strength, exact)
    xs = [p.index for p in plan]
    sig = [p.sigma for p in plan]
    fig = Figure(figsize=(6, 3.6), dpi=100)
    ax = fig.subplots()
    ax.plot(xs, sig, color="#888", lw=1, zorder=1)
    ax.scatter(
        [p.index for p in plan if p.runs],
        [p.sigma for p in plan if p.runs],
        s=14,
        color="#d62728",
        label="runs",
        zorder=2,
    )
    skipped = [p for p in plan if not p.runs]
    if skipped:
        ax.scatter(
            [p.index for p in skipped],
            [p.sigma for p in skipped],
            s=14,
            color="#bbb",
            label="skipped by strength",
            zorder=2,
        )
        entry = next(p for p in plan if p.runs)
        ax.axvline(entry.index, color="#1f77b4", ls="--", lw=1)
        ax.annotate(
            f"img2img starts here\n(strength {strength:.2f}, sigma {entry.sigma:.2f})",
            (entry.index, entry.sigma),
            xytext=(10, 10),
            textcoords="offset points",
            fontsize=8,
        )
    ax.set_xlabel("step")
    ax.set_ylabel("sigma")
    ax.set_title(f"{sampler}, {length} steps" + (f", strength {strength:.2f}" if strength is not None else ""))
    ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    name = f"{sampler}.{length}" + (f".f{strength:.2f}" if strength is not None else "") + ".png"
    return Image.open(buffer).convert("RGB"), name
