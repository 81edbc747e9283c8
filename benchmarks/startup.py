"""Time from launching `invoke-shell` in a terminal to the `invoke>` prompt on screen, and to
the model being loaded. Runs the real console script in a pseudo-terminal. Then where the
load's time goes: the imports the embedded model needs, each timed in a fresh interpreter in
the order the loader makes them.

    python benchmarks/startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import pty
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def one_run(exe: str, outdir: str) -> tuple[float, float]:
    t0 = time.perf_counter()
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(exe, [exe, "--outdir", outdir, "--history", os.path.join(outdir, "h")])
    seen, prompt_at, loaded_at = b"", None, None
    while loaded_at is None and time.perf_counter() - t0 < 120:
        r, _, _ = select.select([fd], [], [], 0.01)
        if r:
            try:
                seen += os.read(fd, 65536)
            except OSError:
                break
        if prompt_at is None and b"invoke>" in seen:
            prompt_at = time.perf_counter() - t0
        if b"loaded on" in seen:
            loaded_at = time.perf_counter() - t0
    os.write(fd, b"\x04")  # Ctrl-D: leave
    os.waitpid(pid, 0)
    return prompt_at or float("nan"), loaded_at or float("nan")


# what loading the embedded model imports, in order (each line's time excludes the lines above)
IMPORTS = [
    ("torch", "import torch"),
    ("transformers: CLIP text model, tokenizer", "from transformers import CLIPTextModel, CLIPTokenizer"),
    ("diffusers: UNet, VAE, pipelines", "from diffusers import StableDiffusionPipeline, UNet2DConditionModel"),
    ("the shell's loader and engine", "import invoke_shell.models.loader, invoke_shell.engines.generate"),
]


def import_times() -> list[float]:
    laps = "; ".join(f"{code}; t.append(time.perf_counter())" for _, code in IMPORTS)
    script = f"import time; t = [time.perf_counter()]; {laps}; print(*(b - a for a, b in zip(t, t[1:])))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    return [float(x) for x in out.split()]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()
    exe = shutil.which("invoke-shell") or str(Path(sys.executable).parent / "invoke-shell")
    prompts, loads = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.runs):
            a, b = one_run(exe, tmp)
            prompts.append(a)
            loads.append(b)
    print(
        f"prompt on screen: median {statistics.median(prompts):.2f} s (runs: {', '.join(f'{x:.2f}' for x in prompts)})"
    )
    print(f"model loaded:     median {statistics.median(loads):.2f} s (runs: {', '.join(f'{x:.2f}' for x in loads)})")
    runs = [import_times() for _ in range(args.runs)]
    print("imports (fresh interpreter, medians):")
    for k, (name, _) in enumerate(IMPORTS):
        print(f"  {statistics.median(r[k] for r in runs):5.2f} s  {name}")
    print(f"  {statistics.median(sum(r) for r in runs):5.2f} s  in all")


if __name__ == "__main__":
    main()
