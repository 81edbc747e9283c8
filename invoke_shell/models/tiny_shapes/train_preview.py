"""Train the embedded model's preview decoder on its own VAE, on one CPU thread in a few minutes.

    python -m invoke_shell.models.tiny_shapes.train_preview [--steps 3000]

The fast per-step previews need a decoder that draws the VAE's colours, not a per-pixel linear
map (the 4x3 map is off by ~45/255 per pixel on the last step). Pairs (scaled latents, VAE
decode of those latents) come from two sources:
  1. drawings from data.py encoded by the VAE (the latents the model was trained to produce),
     some with a little noise so early, unsettled steps preview sensibly;
  2. predicted x0 of the last steps of real generations (the shell's own engine, training seeds
     well away from the evaluation's), since that is what previews show.
Then engines.previews.PreviewNet is fitted with L1 loss, saved as preview_decoder.safetensors
beside the model, and measured: the last step's preview against the saved image over 32 seeds
(the shell's defaults), and its seconds per call. Figures go to preview_decoder.json.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from invoke_shell.engines.previews import DECODER_FILE, DecoderPreviewer, LatentPreviewer, PreviewNet
from invoke_shell.line.requests import ImageRequest
from invoke_shell.models.tiny_shapes import data

MODEL_DIR = Path(__file__).parent / "model"
EVAL_SEEDS = range(1000, 1032)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def load_engine(model_dir: Path):
    from invoke_shell.models.loader import load_model
    from invoke_shell.models.registry import ModelEntry

    return load_model(ModelEntry("tiny-shapes", model_dir), "cpu", "fp32", threads=1).engine


def defaults() -> dict:
    from invoke_shell.models.registry import load_registry

    return load_registry(None).get("tiny-shapes").defaults


@torch.no_grad()
def decode(vae, z: torch.Tensor, batch: int = 64) -> torch.Tensor:
    return torch.cat(
        [vae.decode(z[i : i + batch] / vae.config.scaling_factor).sample.clamp(-1, 1) for i in range(0, len(z), batch)]
    )


@torch.no_grad()
def encoded_drawings(vae, n: int, rng: random.Random, gen: torch.Generator) -> torch.Tensor:
    pictures = np.stack([np.asarray(data.render(data.random_drawing(rng))) for _ in range(n)])
    x = torch.from_numpy(pictures).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    z = torch.cat([vae.encode(x[i : i + 64]).latent_dist.mode() for i in range(0, n, 64)])
    z = z * vae.config.scaling_factor
    noisy = torch.rand(n, 1, 1, 1, generator=gen) < 0.25  # a quarter get noise of std up to 0.5
    return z + noisy * 0.5 * torch.rand(n, 1, 1, 1, generator=gen) * torch.randn(z.shape, generator=gen)


def prompt(rng: random.Random) -> str:
    return data.caption_variants(data.random_drawing(rng), rng)


def generated_x0(engine, n: int, rng: random.Random, base: dict) -> torch.Tensor:
    """Predicted x0 of the last three steps of `n` generations with varied samplers and steps."""
    samplers = ["ddim", "ddim", "k_euler_a", "k_lms", "dpmpp_2m_karras", "k_heun"]
    out = []
    for i in range(n):
        req = ImageRequest(
            prompt(rng),
            rng.choice([8, 12, 25]),
            rng.choice([base["cfg_scale"], 2.0, 5.0]),
            rng.choice(samplers),
            64,
            64,
            seed=50_000 + i,
        )
        states: list = []
        engine.generate(req, on_step=states.append)
        out += [s.denoised.float() for s in states[-3:] if s.denoised is not None]
    return torch.cat(out)


def train(net: PreviewNet, z: torch.Tensor, rgb: torch.Tensor, steps: int, batch: int, gen: torch.Generator) -> float:
    opt = torch.optim.AdamW(net.parameters(), lr=4e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=4e-3, total_steps=steps, pct_start=0.1)
    net.train()
    loss = torch.tensor(0.0)
    for step in range(steps):
        idx = torch.randint(0, len(z), (batch,), generator=gen)
        loss = F.l1_loss(net(z[idx]), rgb[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 250 == 0 or step == steps - 1:
            log(f"step {step}/{steps} L1 {loss.item() * 127.5:.2f}/255")
    net.eval()
    return float(loss.item())


def evaluate(engine, previewers: dict, base: dict) -> dict:
    """Mean |preview of the last step's x0 - saved image| per pixel and channel, in 1/255."""
    rng = random.Random(7)
    errors: dict[str, list[float]] = {name: [] for name in previewers}
    for seed in EVAL_SEEDS:
        req = ImageRequest(prompt(rng), base["steps"], base["cfg_scale"], base["sampler"], 64, 64, seed=seed)
        states: list = []
        result = engine.generate(req, on_step=states.append)
        image = np.asarray(result.image, dtype=np.float32)
        for name, previewer in previewers.items():
            shown = np.asarray(previewer(states[-1].denoised), dtype=np.float32)
            errors[name].append(float(np.abs(shown - image).mean()))
    return {name: round(float(np.mean(e)), 2) for name, e in errors.items()}


def seconds_per_call(previewer, z: torch.Tensor, n: int = 200) -> float:
    previewer(z)
    t0 = time.perf_counter()
    for _ in range(n):
        previewer(z)
    return (time.perf_counter() - t0) / n


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=MODEL_DIR)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--drawings", type=int, default=3000)
    p.add_argument("--generations", type=int, default=120)
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--widths", default="32,24,16")
    p.add_argument("--weight_generated", type=int, default=4, help="times each generated pair is seen")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    rng = random.Random(args.seed)
    t_start = time.time()

    engine = load_engine(args.model)
    vae, base = engine.txt2img.vae, defaults()
    log("1. encoding drawings")
    z = [encoded_drawings(vae, args.drawings, rng, gen)]
    log("2. generating")
    z.append(generated_x0(engine, args.generations, rng, base))
    z.append(z[1].repeat(args.weight_generated - 1, 1, 1, 1))  # what previews show: weigh it up
    latents = torch.cat(z)
    targets = decode(vae, latents)
    log(f"   {len(latents)} pairs in {time.time() - t_start:.0f} s")

    log("3. training")
    widths = tuple(int(w) for w in args.widths.split(","))
    net = PreviewNet(widths)  # type: ignore[arg-type]
    t_train = time.time()
    final_l1 = train(net, latents, targets, args.steps, args.batch, gen)
    train_seconds = time.time() - t_train

    log("4. measuring")
    spec = json.loads((args.model / "latent_rgb.json").read_text())
    linear, conv = LatentPreviewer(spec["weights"], spec["bias"]), DecoderPreviewer(net)
    errors = evaluate(engine, {"decoder": conv, "linear": linear}, base)
    one = torch.randn(1, 4, 8, 8, generator=gen)
    figures = {
        "seed": args.seed,
        "args": vars(args) | {"model": str(args.model)},
        "parameters": sum(q.numel() for q in net.parameters()),
        "pairs": len(latents),
        "train_seconds": round(train_seconds, 1),
        "total_seconds": round(time.time() - t_start, 1),
        "final_train_l1_per_255": round(final_l1 * 127.5, 2),
        "last_step_preview_error_per_255": errors,
        "evaluation": f"{len(EVAL_SEEDS)} seeds {EVAL_SEEDS.start}-{EVAL_SEEDS.stop - 1}, shell defaults "
        f"({base['sampler']}, {base['steps']} steps, cfg {base['cfg_scale']}): mean |preview - image| per channel",
        "seconds_per_call_64x64": {
            "decoder": round(seconds_per_call(conv, one), 5),
            "linear": round(seconds_per_call(linear, one), 5),
        },
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    net.save(args.model / DECODER_FILE, {"trained_by": "invoke_shell.models.tiny_shapes.train_preview"})
    (args.model / "preview_decoder.json").write_text(json.dumps(figures, indent=1) + "\n")
    log(f"done: {figures}")


if __name__ == "__main__":
    main()
