"""Train a LoRA that teaches the embedded model a shape it cannot draw: a plus-shaped cross.

    python -m invoke_shell.models.tiny_shapes.train_lora [--steps 600] [--device cpu]

The base weights stay frozen; low-rank adapters on the UNet's attention and on the text
encoder's attention and MLP learn "cross" (which the base tokenizer reads as c-r-o-s-s) from
cross drawings, while a third of each batch is the base model's own shapes with their captions, so
the LoRA keeps what the model knew. Then it is evaluated with the shell's own engine: the share
of `a COLOUR cross on a BACKGROUND background` pictures judged a cross at weight 1.0, and the same
pictures without the LoRA. Writes loras/cross.safetensors and loras/cross.json beside the model. (A star was tried first:
the model's VAE, 8x8 latents for 64x64 pixels, turns a star into a pentagon, so no denoiser can
draw one; a cross survives its round trip.)
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from invoke_shell.models.tiny_shapes import data

HERE = Path(__file__).parent
MODEL = HERE / "model"
OUT = HERE / "loras"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def drawings(n: int, shapes: tuple[str, ...], rng: random.Random, min_side: int = 0) -> list[data.Drawing]:
    """Random drawings of `shapes`, each at least `min_side` pixels across."""
    out = []
    for _ in range(n):
        d = data.random_drawing(rng)
        box = d.box
        if box[2] - box[0] < min_side:
            side = rng.randint(min_side, 44)
            x0, y0 = rng.randint(2, data.SIZE - 2 - side), rng.randint(2, data.SIZE - 2 - side)
            box = (x0, y0, x0 + side, y0 + side)
        out.append(data.Drawing(rng.choice(shapes), d.colour, d.background, box))
    return out


def train(args: argparse.Namespace) -> Path:
    from diffusers import DDPMScheduler, StableDiffusionPipeline
    from peft import LoraConfig, inject_adapter_in_model
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    pipe = StableDiffusionPipeline.from_pretrained(str(MODEL), local_files_only=True).to(args.device)
    unet, text_encoder, tokenizer, vae = pipe.unet, pipe.text_encoder, pipe.tokenizer, pipe.vae
    for module in (unet, text_encoder, vae):
        module.requires_grad_(False)
    # attention and the residual blocks' convolutions: a shape is drawn by the convolutions
    targets = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "conv1", "conv2"]
    unet.add_adapter(LoraConfig(r=args.rank, lora_alpha=args.rank, target_modules=targets))
    # peft directly: transformers' own add_adapter asks for a newer peft than diffusers does
    inject_adapter_in_model(
        LoraConfig(
            r=args.rank, lora_alpha=args.rank, target_modules=["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]
        ),
        text_encoder,
    )
    if args.resume:  # go on from the LoRA already written (its steps are in loras/cross.json)
        _resume(unet, text_encoder, OUT / "cross.safetensors")
    # crosses big enough for the VAE: its 8x8 latents keep a cross's arms from about 30 pixels
    # across (round trips judged a cross: all from 32 px, 75 % at 28-31, 31 % at 24-27, none below)
    crosses = drawings(args.images, data.LORA_SHAPES, rng, args.min_side)
    known = drawings(args.images // 2, data.SHAPES, rng)
    pictures = crosses + known
    images = torch.from_numpy(np.stack([np.asarray(data.render(d)) for d in pictures])).permute(0, 3, 1, 2)
    images = images.float().div(127.5).sub(1).to(args.device)
    with torch.no_grad():
        latents = torch.cat([vae.encode(images[i : i + 256]).latent_dist.mode() for i in range(0, len(images), 256)])
    latents = latents * vae.config.scaling_factor
    captions = [d.caption for d in pictures]
    noise_schedule = DDPMScheduler.from_config(pipe.scheduler.config)
    params = [p for m in (unet, text_encoder) for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.time()
    for step in range(args.steps):
        # two thirds crosses, one third the shapes the model already draws
        n_new = args.batch * 2 // 3
        idx = torch.cat(
            [
                torch.randint(0, len(crosses), (n_new,), generator=gen),
                len(crosses) + torch.randint(0, len(known), (args.batch - n_new,), generator=gen),
            ]
        )
        texts = [captions[i] if rng.random() > 0.1 else "" for i in idx.tolist()]  # empty: guidance still works
        ids = tokenizer(
            texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
        )
        x0 = latents[idx]
        noise = torch.randn(x0.shape, generator=gen).to(args.device)
        t = torch.randint(0, noise_schedule.config.num_train_timesteps, (args.batch,), generator=gen).to(args.device)
        pred = unet(noise_schedule.add_noise(x0, noise, t), t, text_encoder(ids.input_ids.to(args.device))[0]).sample
        loss = F.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == args.steps - 1:
            log(f"step {step}/{args.steps} loss {loss.item():.4f} {(time.time() - t0) / (step + 1):.2f} s/step")
    OUT.mkdir(exist_ok=True)
    StableDiffusionPipeline.save_lora_weights(
        OUT,
        unet_lora_layers=get_peft_model_state_dict(unet),
        text_encoder_lora_layers=get_peft_model_state_dict(text_encoder),
        weight_name="cross.safetensors",
    )
    log(f"trained in {time.time() - t0:.0f} s")
    return OUT / "cross.safetensors"


def _resume(unet: torch.nn.Module, text_encoder: torch.nn.Module, path: Path) -> None:
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    saved = load_file(str(path))
    for prefix, module in (("unet.", unet), ("text_encoder.", text_encoder)):
        part = {k.removeprefix(prefix): v for k, v in saved.items() if k.startswith(prefix)}
        result = set_peft_model_state_dict(module, part)
        if result.unexpected_keys:
            raise SystemExit(f"{path} does not fit these adapters: {result.unexpected_keys[:3]}")


def evaluate(lora: Path, n: int, seed: int) -> dict[str, float]:
    """Cross prompts through the shell's own engine, at weight 1 and without the LoRA."""
    from invoke_shell.line.requests import ImageRequest
    from invoke_shell.models.tiny_shapes.evaluate import load_engine, shell_defaults

    engine = load_engine(MODEL)
    base = shell_defaults()
    combos = [(c, b) for c, b in itertools.product(data.COLOURS, data.COLOURS) if c != b]
    picked = random.Random(seed).sample(combos, n)
    shapes = data.SHAPES + data.LORA_SHAPES
    found = {"with": 0, "without": 0, "colour_with": 0}
    for k, (colour, background) in enumerate(picked):
        prompt = f"a {colour} cross on a {background} background"
        req = ImageRequest(
            prompt, base["steps"], base["cfg_scale"], base["sampler"], base["width"], base["height"], seed + k
        )
        for key, wanted in (("with", [("cross", lora, 1.0)]), ("without", [])):
            engine.adapters.use_loras(wanted)
            judged = data.judge(engine.generate(req).image, shapes)
            found[key] += judged.shape == "cross"
            if key == "with":
                found["colour_with"] += judged.colour == colour and judged.background == background
    return {
        "prompts": n,
        "cross_with_lora": found["with"] / n,
        "cross_without_lora": found["without"] / n,
        "colours_right_with_lora": found["colour_with"] / n,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch", type=int, default=48)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--min_side", type=int, default=30, help="smallest cross drawn, in pixels")
    p.add_argument("--images", type=int, default=3000)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--device", default="cpu")
    p.add_argument("--eval_only", action="store_true")
    p.add_argument("--resume", action="store_true", help="continue training loras/cross.safetensors")
    p.add_argument("--eval_prompts", type=int, default=40)
    args = p.parse_args(argv)
    lora = OUT / "cross.safetensors" if args.eval_only else train(args)
    figures = evaluate(lora, args.eval_prompts, seed=args.seed)
    log(json.dumps(figures))
    previous = OUT / "cross.json"
    if args.eval_only and previous.exists():  # re-measured (on a new base model): the training record stays
        record = json.loads(previous.read_text())
        record["evaluation"] = figures
        previous.write_text(json.dumps(record, indent=1) + "\n")
        return
    record = {"args": vars(args), "evaluation": figures}
    if args.resume and previous.exists():  # the runs it went on from, oldest first
        earlier = json.loads(previous.read_text())
        record["resumed_from"] = [*earlier.pop("resumed_from", []), earlier]
    previous.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
