"""Train the embedded "tiny-shapes" model from nothing, on a CPU, in well under an hour.

    python -m invoke_shell.models.tiny_shapes.train --out invoke_shell/models/tiny_shapes/model

Stages (each logged with its time):
  1. draw a synthetic data set with Pillow from a fixed seed, captioned as people write
     (articles, sizes, synonyms, word order, punctuation) as well as in the plain grammar;
  2. train an AutoencoderKL (64x64x3 <-> 8x8x4) for reconstruction;
  3. centre and scale its latents: the per-channel mean is folded into the VAE's quant convs
     (so every diffusers pipeline sees zero-mean latents with no extra code) and
     scaling_factor makes their std 1;
  4. build a CLIP tokenizer whose caption words are whole tokens;
  5. train a small CLIPTextModel and UNet2DConditionModel jointly with the SD noise schedule,
     10 % empty captions for classifier-free guidance, 25 % captions with wrong colours (and for
     --wrong_shape of them a wrong shape) whose target blends from the picture (low noise) to
     the drawing the caption describes (high noise), the shape later than the colours; EMA weights;
  6. fit the 4x3 latent-to-RGB preview map, save the pipeline (safetensors) and training.json.

The shipped model was made in five runs, each from the one before (each run's arguments and
figures are nested in training.json under `initialised_from_run`): one from nothing with the
plain grammar only; a fine-tune of its UNet and text encoder on natural captions with wrong
colours, keeping its VAE and preview decoder:

    python -m invoke_shell.models.tiny_shapes.train --vae MODEL --init MODEL --steps 1000 \
        --lr 3e-4 --warmup 50 --ema 0.995 --wrong_shape 0

then two with wrong shape words too, so that img2img keeps the init's shape at low strength
(800 steps with --wrong_shape 0.4 --shape_from 560 --shape_ramp 200, then):

    python -m invoke_shell.models.tiny_shapes.train --vae MODEL --init MODEL --steps 500 \
        --lr 2e-4 --warmup 30 --ema 0.99 --wrong_shape 0.6 --shape_from 600 --shape_ramp 100

and last one that moves the colours' change-over between where strength 0.5 and 0.6 start (441
and 561 with 25 ddim steps), so that the init's shape carries through at 0.5:

    python -m invoke_shell.models.tiny_shapes.train --vae MODEL --init MODEL --steps 500 \
        --lr 2e-4 --warmup 30 --ema 0.99 --wrong_shape 0.6 --colour_from 460 --ramp 90 \
        --shape_from 600 --shape_ramp 80

Checkpoints with optimizer state go to --work so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from invoke_shell.models.tiny_shapes import data

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------- 1. data


def make_dataset(n: int, seed: int) -> tuple[torch.Tensor, list[data.Drawing], list[str]]:
    rng = random.Random(seed)
    drawings = [data.random_drawing(rng) for _ in range(n)]
    captions = [data.caption_variants(d, rng) for d in drawings]
    return render_all(drawings), drawings, captions


def mismatched(
    drawings: list[data.Drawing], seed: int, wrong_shape: float
) -> tuple[list[str], list[data.Drawing], list[data.Drawing]]:
    """For each drawing, a caption that gets its colours wrong (shape, background or both), and
    for a `wrong_shape` share of them its shape word too; with it the drawing recoloured as the
    caption says (same shape, same box) and the drawing the caption describes (its shape too).

    These teach the model when to trust the picture and when the text (see `edit_weight`):
    img2img at low strength keeps the init's colours and, up to a higher noise level, its shape;
    at the default 0.75 it takes the prompt's colours and shape, in the init's place.
    """
    rng = random.Random(seed + 1)
    captions, recoloured, described = [], [], []
    for d in drawings:
        colour, background = d.colour, d.background
        what = rng.choice(("background", "colour", "both"))
        if what in ("background", "both"):
            background = rng.choice([c for c in data.COLOURS if c not in (d.background, colour)])
        if what in ("colour", "both"):
            colour = rng.choice([c for c in data.COLOURS if c not in (d.colour, background)])
        shape = d.shape
        if rng.random() < wrong_shape:
            shape = rng.choice([s for s in data.SHAPES if s != d.shape])
        wrong = data.Drawing(shape, colour, background, d.box)
        captions.append(data.caption_variants(wrong, rng))
        recoloured.append(data.Drawing(d.shape, colour, background, d.box))
        described.append(wrong)
    return captions, recoloured, described


def render_all(drawings: list[data.Drawing]) -> torch.Tensor:
    arr = np.stack([np.asarray(data.render(d)) for d in drawings])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def edit_weight(t: torch.Tensor, start: int, ramp: int) -> torch.Tensor:
    """How far a wrong caption's sample is denoised towards what the caption says, by timestep
    t: 0 the noised picture itself (trust the picture: low noise), 1 the caption's version
    (trust the text: high noise), a linear blend from `start` over `ramp` timesteps. A blend,
    not a coin toss: the target is one picture for each x_t, caption and t, so the loss has no
    noise the model cannot learn. Colours give way from `--colour_from`, the shape later, from
    `--shape_from`: the outline is the last thing an edit should lose."""
    return ((t.float() - start) / ramp).clamp(0, 1)


# ---------------------------------------------------------------- 2-3. VAE


def build_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(32, 32, 64, 64),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=data.SIZE,
    )


def train_vae(vae, images: torch.Tensor, args, gen: torch.Generator) -> dict:
    opt = torch.optim.AdamW(vae.parameters(), lr=args.vae_lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.vae_steps, eta_min=args.vae_lr / 10)
    n_train = len(images) - 512
    vae.train()
    t0 = time.time()
    for step in range(args.vae_steps):
        idx = torch.randint(0, n_train, (args.vae_batch,), generator=gen)
        x = images[idx]
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample(generator=gen)).sample
        loss = F.l1_loss(rec, x) + F.mse_loss(rec, x) + 1e-6 * post.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 100 == 0 or step == args.vae_steps - 1:
            log(f"vae step {step}/{args.vae_steps} loss {loss.item():.4f}")
    vae.eval()
    held = images[n_train:]
    with torch.no_grad():
        rec = vae.decode(vae.encode(held).latent_dist.mode()).sample.clamp(-1, 1)
    mse = F.mse_loss((rec + 1) / 2, (held + 1) / 2).item()
    to_u8 = lambda t: ((t + 1) * 127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()  # noqa: E731
    same = (data.nearest_palette(to_u8(rec)) == data.nearest_palette(to_u8(held))).mean()
    return {
        "vae_seconds": round(time.time() - t0, 1),
        "vae_heldout_psnr_db": round(10 * math.log10(1 / mse), 2),
        "vae_heldout_palette_pixel_agreement": round(float(same), 4),
        "vae_parameters": sum(p.numel() for p in vae.parameters()),
    }


@torch.no_grad()
def encode_all(vae, images: torch.Tensor, device: str = "cpu", batch: int = 512) -> torch.Tensor:
    """Latents of the images (on the CPU), encoded on `device`; the VAE is left on the CPU."""
    vae.to(device)
    try:
        return torch.cat(
            [
                vae.encode(images[i : i + batch].to(device)).latent_dist.mode().cpu()
                for i in range(0, len(images), batch)
            ]
        )
    finally:
        vae.to("cpu")


@torch.no_grad()
def centre_latents(vae, latents: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Fold the per-channel latent mean into the VAE and set scaling_factor from the std.

    Un-centred latents were one reason the prototype's img2img lost the init image's colours:
    the forward process pulls every noised latent toward zero, so with a large mean offset the
    noised init image stops looking like any training image long before the schedule's end.
    """
    mean = latents.mean(dim=(0, 2, 3))
    c = latents.shape[1]
    vae.quant_conv.bias[:c] -= mean
    w = vae.post_quant_conv.weight[:, :, 0, 0]
    vae.post_quant_conv.bias += w @ mean
    centred = latents - mean.view(1, -1, 1, 1)
    std = centred.std().item()
    vae.register_to_config(scaling_factor=1.0 / std)
    return centred / std, {
        "latent_channel_mean_removed": [round(v, 4) for v in mean.tolist()],
        "latent_std": round(std, 4),
        "scaling_factor": round(1.0 / std, 6),
    }


# ---------------------------------------------------------------- 4. tokenizer


def grammar_merges(words: tuple[str, ...]) -> list[tuple[str, str]]:
    """BPE merges that make each grammar word one token, learned by the tokenizers library's
    BPE trainer on the words themselves: a trained merge list, applied in rank order as CLIP's
    tokenizer does, gives back every training word whole (hand-made chains collide once words
    share letters, as "on", "one" and "front" do)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    bpe.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=10_000, min_frequency=1, end_of_word_suffix="</w>", show_progress=False)
    bpe.train_from_iterator([" ".join(words)], trainer)
    merges = json.loads(bpe.to_str())["model"]["merges"]
    return [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in merges]


def build_tokenizer(out: Path, max_length: int):
    """vocab.json/merges.txt in CLIP's format: characters (so any word still tokenises) plus
    each grammar word as one whole token."""
    from transformers import CLIPTokenizer

    chars = list("abcdefghijklmnopqrstuvwxyz0123456789") + list(",.!?'-:()[]+*/")
    merges = grammar_merges(data.GRAMMAR_WORDS)
    vocab: list[str] = []
    for t in chars + [c + "</w>" for c in chars] + [a + b for a, b in merges] + [BOS, EOS]:
        if t not in vocab:
            vocab.append(t)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, indent=0))
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n")
    tok = CLIPTokenizer(
        str(out / "vocab.json"),
        str(out / "merges.txt"),
        model_max_length=max_length,
        pad_token=EOS,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=EOS,
    )
    for w in data.GRAMMAR_WORDS:
        assert len(tok(w, add_special_tokens=False).input_ids) == 1, w
    return tok


# ---------------------------------------------------------------- 5. text encoder + UNet


def start_from(model: Path, unet, text_encoder, tok) -> None:
    """Fine-tuning: a trained model's UNet as it is, and its text encoder with each token's
    embedding carried over by the token's text (a grown vocabulary keeps every old token's
    meaning; new tokens start small and random)."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    unet.load_state_dict(UNet2DConditionModel.from_pretrained(model / "unet").state_dict())
    old = CLIPTextModel.from_pretrained(model / "text_encoder")
    old_vocab = json.loads((model / "tokenizer" / "vocab.json").read_text())
    state = {k: v for k, v in old.state_dict().items() if "token_embedding" not in k}
    text_encoder.load_state_dict(state, strict=False)
    table = text_encoder.get_input_embeddings().weight
    before = old.get_input_embeddings().weight
    with torch.no_grad():
        table.normal_(0, float(before.std()) * 0.5)
        for token, i in tok.get_vocab().items():
            if token in old_vocab:
                table[i] = before[old_vocab[token]]


def build_text_encoder(tok, max_length: int):
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = CLIPTextConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=max_length,
        projection_dim=64,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    return CLIPTextModel(cfg)


def build_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(64, 128),
        layers_per_block=1,
        attention_head_dim=8,
        cross_attention_dim=64,
        norm_num_groups=32,
    )


def build_scheduler():
    from diffusers import PNDMScheduler

    scheduler = PNDMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        set_alpha_to_one=False,
        skip_prk_steps=True,
        steps_offset=1,
        prediction_type="epsilon",
    )
    # as Stable Diffusion's own config says: a DDIM built from this config by diffusers' usual
    # idiom (DDIMScheduler.from_config) must not clip x0 to [-1, 1]
    scheduler.register_to_config(clip_sample=False)
    return scheduler


def train_denoiser(
    unet, text_encoder, tok, latents, captions, wrong, recoloured, described, args, gen, work: Path
) -> dict:
    """Epsilon prediction with the SD schedule. `recoloured` holds the latents of each drawing
    in its wrong caption's colours and `described` those of the drawing the caption describes
    (its shape too); a wrong caption's target is the noise that leads from x_t to a blend of the
    three by `edit_weight`, so at high noise the text wins and at low noise the picture."""
    from diffusers import DDPMScheduler
    from diffusers.training_utils import EMAModel

    noise_sched = DDPMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="epsilon",
    )
    ids = tok(
        captions, padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids
    empty = tok([""], padding="max_length", max_length=tok.model_max_length, return_tensors="pt").input_ids
    wrong_ids = tok(
        wrong, padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids
    dev = torch.device(args.device)
    unet.to(dev)
    text_encoder.to(dev)
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    warm = args.warmup

    def lr_at(s: int) -> float:
        if s < warm:
            return (s + 1) / warm
        p = (s - warm) / max(1, args.steps - warm)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p))

    lr_sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    ema_unet = EMAModel(unet.parameters(), decay=args.ema)
    ema_text = EMAModel(text_encoder.parameters(), decay=args.ema)
    start, losses = 0, []
    ckpt = work / "denoiser.pt"
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        unet.load_state_dict(state["unet"])
        text_encoder.load_state_dict(state["text"])
        opt.load_state_dict(state["opt"])
        lr_sched.load_state_dict(state["lr"])
        ema_unet.load_state_dict(state["ema_unet"])
        ema_text.load_state_dict(state["ema_text"])
        gen.set_state(state["gen"])
        start, losses = state["step"], state["losses"]
        log(f"resumed at step {start}")
    unet.train()
    text_encoder.train()
    t0 = time.time()
    for step in range(start, args.steps):
        idx = torch.randint(0, len(latents), (args.batch,), generator=gen)
        x0 = latents[idx]
        cond_ids = ids[idx].clone()
        r = torch.rand(args.batch, generator=gen)
        cond_ids[r < args.uncond] = empty
        swap = (r >= args.uncond) & (r < args.uncond + args.mismatch)
        cond_ids[swap] = wrong_ids[idx[swap]]
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, 1000, (args.batch,), generator=gen)
        xt = noise_sched.add_noise(x0, noise, t)
        w_colour = (edit_weight(t, args.colour_from, args.ramp) * swap).view(-1, 1, 1, 1)
        w_shape = (edit_weight(t, args.shape_from, args.shape_ramp) * swap).view(-1, 1, 1, 1)
        target = x0 + w_colour * (recoloured[idx] - x0) + w_shape * (described[idx] - recoloured[idx])
        ab = noise_sched.alphas_cumprod[t].view(-1, 1, 1, 1)
        eps = (xt - ab.sqrt() * target) / (1 - ab).sqrt()  # equals `noise` where the target is x0
        enc = text_encoder(cond_ids.to(dev))[0]
        pred = unet(xt.to(dev), t.to(dev), encoder_hidden_states=enc).sample
        loss = F.mse_loss(pred, eps.to(dev))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        lr_sched.step()
        ema_unet.step(unet.parameters())
        ema_text.step(text_encoder.parameters())
        losses.append(loss.item())
        if step % 50 == 0 or step == args.steps - 1:
            recent = sum(losses[-50:]) / len(losses[-50:])
            log(
                f"denoiser step {step}/{args.steps} loss(avg50) {recent:.4f} {(time.time() - t0) / (step - start + 1):.2f}s/step"
            )
        if (step + 1) % args.checkpoint_every == 0 and step + 1 < args.steps:
            torch.save(
                {
                    "unet": unet.state_dict(),
                    "text": text_encoder.state_dict(),
                    "opt": opt.state_dict(),
                    "lr": lr_sched.state_dict(),
                    "ema_unet": ema_unet.state_dict(),
                    "ema_text": ema_text.state_dict(),
                    "gen": gen.get_state(),
                    "step": step + 1,
                    "losses": losses,
                },
                ckpt,
            )
    ema_unet.copy_to(unet.parameters())
    ema_text.copy_to(text_encoder.parameters())
    unet.to("cpu")
    text_encoder.to("cpu")
    unet.eval()
    text_encoder.eval()
    first = sum(losses[:50]) / max(1, len(losses[:50]))
    last = sum(losses[-100:]) / max(1, len(losses[-100:]))
    return {
        "denoiser_seconds": round(time.time() - t0, 1),
        "loss_first50": round(first, 4),
        "loss_last100": round(last, 4),
        "unet_parameters": sum(p.numel() for p in unet.parameters()),
        "text_encoder_parameters": sum(p.numel() for p in text_encoder.parameters()),
    }


# ---------------------------------------------------------------- 6. preview map, save


@torch.no_grad()
def fit_latent_rgb(vae, latents: torch.Tensor) -> dict:
    """Least-squares 4x3 map (plus bias) from scaled latents to the RGB of the VAE's decode,
    averaged over each latent cell: a microsecond preview of any step's latents."""
    z = latents[:1024]
    rgb = vae.decode(z / vae.config.scaling_factor).sample.clamp(-1, 1)
    rgb = F.avg_pool2d(rgb, 8)  # one RGB value per latent cell
    a = torch.cat([z.permute(0, 2, 3, 1).reshape(-1, 4), torch.ones(z.numel() // 4, 1)], dim=1)
    b = rgb.permute(0, 2, 3, 1).reshape(-1, 3)
    sol = torch.linalg.lstsq(a, b).solution
    err = (a @ sol - b).abs().mean().item()
    return {"weights": sol[:4].tolist(), "bias": sol[4].tolist(), "mean_abs_error": round(err, 4), "range": "[-1, 1]"}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "model")
    p.add_argument("--work", type=Path, default=Path("build/tiny_shapes"))
    p.add_argument("--vae", type=Path, help="a model folder whose VAE to keep (skips stages 2-3)")
    p.add_argument("--init", type=Path, help="a model folder whose UNet and text encoder to fine-tune")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--images", type=int, default=30000)
    p.add_argument("--vae_steps", type=int, default=1200)
    p.add_argument("--vae_batch", type=int, default=32)
    p.add_argument("--vae_lr", type=float, default=1e-3)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=6e-4)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--ema", type=float, default=0.998)
    p.add_argument("--uncond", type=float, default=0.1, help="share of empty captions (for guidance)")
    p.add_argument("--mismatch", type=float, default=0.25, help="share of captions that get the picture wrong")
    p.add_argument("--colour_from", type=int, default=320, help="timestep where wrong colours start to win")
    p.add_argument("--ramp", type=int, default=200, help="timesteps over which the text takes over")
    p.add_argument("--wrong_shape", type=float, default=0.4, help="share of wrong captions whose shape is wrong too")
    p.add_argument("--shape_from", type=int, default=560, help="timestep where a wrong shape word starts to win")
    p.add_argument("--shape_ramp", type=int, default=200, help="timesteps over which the shape word takes over")
    p.add_argument("--device", default="cpu")
    p.add_argument("--max_length", type=int, default=32)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    p.add_argument("--checkpoint_every", type=int, default=200)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    args.work.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    figures: dict = {}

    log("1. drawing the data set")
    images, drawings, captions = make_dataset(args.images, args.seed)

    vae_path = args.work / "vae"
    if args.vae:
        from diffusers import AutoencoderKL

        vae = AutoencoderKL.from_pretrained(args.vae / "vae").eval()
        earlier = json.loads((args.vae / "training.json").read_text())["figures"]
        figures.update({k: v for k, v in earlier.items() if k.startswith(("vae_", "latent_", "scaling"))})
        figures["vae_from"] = str(args.vae)
        log(f"2-3. the VAE of {args.vae}, kept as it is (centred and scaled; its preview decoder stays valid)")
        latents = encode_all(vae, images, args.device) * vae.config.scaling_factor
    elif (vae_path / "config.json").exists():
        from diffusers import AutoencoderKL

        vae = AutoencoderKL.from_pretrained(vae_path)
        figures.update(json.loads((args.work / "vae_figures.json").read_text()))
        log("2. VAE loaded from the work folder")
    else:
        log("2. training the VAE")
        vae = build_vae()
        figures.update(train_vae(vae, images, args, gen))
        vae.save_pretrained(vae_path)
        (args.work / "vae_figures.json").write_text(json.dumps(figures))
    if not args.vae:
        log(f"   {figures}")
        log("3. encoding and centring latents")
        vae.eval()
        latents, lat_fig = centre_latents(vae, encode_all(vae, images, args.device))
        figures.update(lat_fig)

    log("4. tokenizer")
    tok = build_tokenizer(args.work / "tokenizer", args.max_length)

    log("5. text encoder + UNet")
    text_encoder, unet = build_text_encoder(tok, args.max_length), build_unet()
    if args.init:
        figures["initialised_from"] = str(args.init)
        log(f"   starting from the UNet and text encoder of {args.init}")
        start_from(args.init, unet, text_encoder, tok)
    wrong, recoloured, described = mismatched(drawings, args.seed, args.wrong_shape)
    edited = encode_all(vae, render_all(recoloured), args.device) * vae.config.scaling_factor
    reshaped = encode_all(vae, render_all(described), args.device) * vae.config.scaling_factor
    figures.update(
        train_denoiser(unet, text_encoder, tok, latents, captions, wrong, edited, reshaped, args, gen, args.work)
    )

    log("6. saving")
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tok,
        unet=unet,
        scheduler=build_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(args.out, safe_serialization=True)
    for name in ("vocab.json", "merges.txt"):  # CLIP's own format beside tokenizer.json
        (args.out / "tokenizer" / name).write_bytes((args.work / "tokenizer" / name).read_bytes())
    (args.out / "latent_rgb.json").write_text(json.dumps(fit_latent_rgb(vae, latents), indent=1))
    for name in ("preview_decoder.json", "preview_decoder.safetensors"):  # trained on this same VAE
        if args.vae and (args.vae / name).exists():
            (args.out / name).write_bytes((args.vae / name).read_bytes())
    figures["total_seconds"] = round(time.time() - t_start, 1)
    figures["threads"] = torch.get_num_threads()
    record = {
        "seed": args.seed,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "torch": torch.__version__,
        "figures": figures,
    }
    if args.init:  # the run this one went on from, with its own arguments and figures
        record["initialised_from_run"] = json.loads((args.init / "training.json").read_text())
    (args.out / "training.json").write_text(json.dumps(record, indent=1))
    log(f"done in {figures['total_seconds']} s: {figures}")


if __name__ == "__main__":
    main()
