"""`!schedule`: the steps that will run, from the same scheduler module the engines use."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from invoke_shell import schedulers


def _plan(sampler: str, base: Mapping[str, Any], steps: int, strength: float | None, exact: bool):
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


def plot(outdir: Path, sampler: str, base: Mapping[str, Any], steps: int, strength: float | None,
         exact: bool = False) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    length, plan = _plan(sampler, base, steps, strength, exact)
    xs = [p.index for p in plan]
    sig = [p.sigma for p in plan]
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    ax.plot(xs, sig, color="#888", lw=1, zorder=1)
    ax.scatter([p.index for p in plan if p.runs], [p.sigma for p in plan if p.runs], s=14, color="#d62728",
               label="runs", zorder=2)
    skipped = [p for p in plan if not p.runs]
    if skipped:
        ax.scatter([p.index for p in skipped], [p.sigma for p in skipped], s=14, color="#bbb", label="skipped by strength",
                   zorder=2)
        entry = next(p for p in plan if p.runs)
        ax.axvline(entry.index, color="#1f77b4", ls="--", lw=1)
        ax.annotate(f"img2img starts here\n(strength {strength:.2f}, sigma {entry.sigma:.2f})",
                    (entry.index, entry.sigma), xytext=(10, 10), textcoords="offset points", fontsize=8)
    ax.set_xlabel("step")
    ax.set_ylabel("sigma")
    ax.set_title(f"{sampler}, {length} steps" + (f", strength {strength:.2f}" if strength is not None else ""))
    ax.legend(fontsize=8)
    fig.tight_layout()
    folder = outdir / "schedules"
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{sampler}.{length}" + (f".f{strength:.2f}" if strength is not None else "") + ".png"
    fig.savefig(folder / name)
    plt.close(fig)
    return folder / name
