"""What saving every step's intermediates costs, on the embedded model.

Times the engine's generation (25 steps, the model's defaults) with a progress count only, and
with the shell's own intermediates path at every step (`--save_intermediates 1`, fast
previews): each step's previews made on a thread and handed to the writer process, which
writes the files while the next steps run, then the contact sheet and GIF. The first line,
which starts the writer process, is timed apart. Prints medians over --runs pairs, interleaved.

    python benchmarks/intermediates_overhead.py [--runs 20] [--device cuda]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from invoke_shell.files.step_files import StepFiles, StepWriter
from invoke_shell.line.requests import ImageRequest


def main() -> None:
    # torch is imported here, not above: the writer process re-imports this script (spawn), and
    # it starts as fast as the shell's own (~0.5 s) only when that import is light
    from invoke_shell.engines.previews import load_previewer
    from invoke_shell.models.tiny_shapes.evaluate import MODEL_DIR, load_engine, shell_defaults

    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    engine = load_engine(MODEL_DIR, args.device)
    d = shell_defaults()
    req = ImageRequest(
        "a red circle on a blue background", d["steps"], d["cfg_scale"], d["sampler"], d["width"], d["height"], seed=1
    )
    previewer = load_previewer(MODEL_DIR)
    writer = StepWriter()
    for _ in range(3):
        engine.generate(req)

    cpu = {"plain": [], "saved": [], "writer": []}  # CPU seconds per line: steadier than wall time here

    def saved(seed: int, samples: Path, first: bool = False) -> tuple[float, float]:
        """As the session does it: each step handed over while the next steps are computed, then
        the contact sheet, the animation and the folder's name. Seconds to the image, to the end.
        The first line starts the writer process, which loads torch for the previewer as it runs."""
        w = 0.0 if first else writer.cpu_seconds()
        c, t = time.process_time(), time.perf_counter()
        steps = StepFiles(samples, previewer, writer)
        engine.generate(req.with_(seed=seed), on_step=steps.step, on_progress=lambda done, total: None)
        image = time.perf_counter() - t
        steps.finish(samples / f"{seed:06d}.{seed}.png").result()
        whole = time.perf_counter() - t
        cpu["saved"].append(time.process_time() - c)
        cpu["writer"].append(writer.cpu_seconds() - w)
        return image, whole

    def plain(seed: int) -> float:
        c, t = time.process_time(), time.perf_counter()
        engine.generate(req.with_(seed=seed), on_progress=lambda done, total: None)
        cpu["plain"].append(time.process_time() - c)
        return time.perf_counter() - t

    pairs = []  # (plain, saving's image, saving's whole line) of one seed, in alternating order
    with tempfile.TemporaryDirectory() as tmp:
        first = saved(10_000, Path(tmp), first=True)
        writer.ready(60)  # the writer loads torch after its first folder: the pairs time what follows
        for i in range(args.runs):
            if i % 2:
                image, whole = saved(i, Path(tmp))
                pairs.append((plain(i), image, whole))
            else:
                p = plain(i)
                pairs.append((p, *saved(i, Path(tmp))))
    writer.shutdown()
    med = statistics.median

    def extra(k: int) -> str:  # this machine's timings drift: the median of each pair's ratio
        return f"+{(med(pair[k] / pair[0] for pair in pairs) - 1) * 100:.1f} % (median of the pairs' ratios)"

    print(f"generation, no intermediates:        {med(p[0] for p in pairs) * 1000:.1f} ms ({args.runs} pairs)")
    print(f"generation, collecting every step:   {med(p[1] for p in pairs) * 1000:.1f} ms, {extra(1)}")
    print(f"whole line incl. writing all files:  {med(p[2] for p in pairs) * 1000:.1f} ms, {extra(2)}")
    print(f"the session's first such line:       {first[1] * 1000:.1f} ms (it starts the writer process)")
    shell = (med(cpu["saved"][1:]) - med(cpu["plain"])) * 1000  # [0]: the first line, timed apart
    writing = med(cpu["writer"][1:]) * 1000
    print(f"CPU per line: the shell's process +{shell:.0f} ms, the writer process {writing:.0f} ms")


if __name__ == "__main__":
    main()
