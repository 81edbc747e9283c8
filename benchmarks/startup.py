"""Time from launching `invoke-shell` in a terminal to the `invoke>` prompt on screen, and to
the model being loaded. Runs the real console script in a pseudo-terminal.

    python benchmarks/startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import pty
import select
import shutil
import statistics
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


if __name__ == "__main__":
    main()
