"""Peak resident memory of the shell against a bare diffusers script on the same model.

    python benchmarks/memory.py [--full_size] [--images 3]

Each side runs in a fresh process and makes the same images (same prompt, seeds, steps):
the shell through `invoke-shell --from_file`, the bare side as an engineer would script it
(from_pretrained, or from_single_file with the shipped config, then pipe(...) per image). The
figure is the child's peak RSS (ru_maxrss). `--full_size` adds Stable Diffusion 1.5's
architecture with random weights (benchmarks/vs_diffusers.py writes it to build/bench/).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from invoke_shell.models.tiny_shapes.evaluate import MODEL_DIR

BARE = """
import sys, torch
from diffusers import StableDiffusionPipeline
path, steps, images, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
if path.endswith(".safetensors"):
    from invoke_shell.models.families import CONFIGS, clip_tokenizer
    pipe = StableDiffusionPipeline.from_single_file(path, config=str(CONFIGS / "sd-1"), local_files_only=True,
        tokenizer=clip_tokenizer(), safety_checker=None, requires_safety_checker=False)
else:
    pipe = StableDiffusionPipeline.from_pretrained(path, local_files_only=True)
pipe.set_progress_bar_config(disable=True)
for seed in range(images):
    pipe("a red circle on a blue background", num_inference_steps=steps, height=size, width=size,
         generator=torch.Generator().manual_seed(seed)).images[0].save(f"bare{seed}.png")
"""


def peak_mb(cmd: list[str], cwd: str) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if after <= before:
        raise RuntimeError("the child's peak is hidden by an earlier, larger one: run one side per process")
    return after / 1024


def measure(path: Path, steps: int, images: int, size: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "models.yaml"
        config.write_text(f"models:\n  m:\n    path: {path.resolve()}\n    width: {size}\n    height: {size}\n")
        script = Path(tmp) / "lines.txt"
        script.write_text("".join(f"a red circle on a blue background -S {s} -s {steps}\n" for s in range(images)))
        # one side per helper process: ru_maxrss of RUSAGE_CHILDREN is the largest child so far
        shell = [
            sys.executable,
            "-m",
            "invoke_shell",
            "--config",
            str(config),
            "--outdir",
            tmp,
            "--from_file",
            str(script),
        ]
        bare = [sys.executable, "-c", BARE, str(path.resolve()), str(steps), str(images), str(size)]
        sides = {}
        for name, cmd in (("bare", bare), ("shell", shell)):
            probe = [sys.executable, __file__, "--probe", json.dumps(cmd)]
            sides[name] = float(subprocess.run(probe, cwd=tmp, check=True, capture_output=True, text=True).stdout)
    return {
        "bare_mb": round(sides["bare"]),
        "shell_mb": round(sides["shell"]),
        "ratio": round(sides["shell"] / sides["bare"], 3),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=3)
    p.add_argument("--full_size", action="store_true")
    p.add_argument("--probe", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.probe:  # run one command and print its peak RSS in MB
        print(peak_mb(json.loads(args.probe), "."))
        return
    rows = {"tiny-shapes 64x64, 25 steps": measure(MODEL_DIR, 25, args.images, 64)}
    if args.full_size:
        from vs_diffusers import full_size_model  # beside this script

        rows["sd-1.5 (random) 128x128, 4 steps"] = measure(full_size_model(), 4, args.images, 128)
    for name, row in rows.items():
        print(f"{name}: bare {row['bare_mb']} MB, shell {row['shell_mb']} MB, shell / bare {row['ratio']}")


if __name__ == "__main__":
    main()
