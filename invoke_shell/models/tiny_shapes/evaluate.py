"""Measure what the embedded model draws, with the shell's own engine and defaults.

    python -m invoke_shell.models.tiny_shapes.evaluate [--cfg_scales 1,2,3,5,7.5]

txt2img: a fixed sample of prompts x seeds, each picture judged by data.judge() for background
colour, shape colour and shape; seconds per image. img2img: init drawings whose colours differ
from the prompt's, at strengths 0.1 ... 1.0: the share that keeps the init's colours, the share
that follows the prompt, and the mean distance to the init, against txt2img of the same prompt
and seed. Writes evaluation.json beside the model and pictures into docs/.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import time
from pathlib import Path

import numpy as np
from PIL import Image

from invoke_shell.files.sheets import labelled_sheet
from invoke_shell.line.requests import ImageRequest
from invoke_shell.models.tiny_shapes import data

MODEL_DIR = Path(__file__).parent / "model"
STRENGTHS = sorted([round(0.1 * i, 1) for i in range(1, 11)] + [0.75])  # 0.75: the default strength


def sample_drawings(n: int, seed: int) -> list[data.Drawing]:
    combos = [(c, s, b) for c, s, b in itertools.product(data.COLOURS, data.SHAPES, data.COLOURS) if c != b]
    rng = random.Random(seed)
    picked = rng.sample(combos, n)
    out = []
    for c, s, b in picked:
        side = rng.randint(22, 40)
        x0, y0 = rng.randint(4, 60 - side), rng.randint(4, 60 - side)
        out.append(data.Drawing(s, c, b, (x0, y0, x0 + side, y0 + side)))
    return out


def load_engine(model_dir: Path, device: str = "cpu", precision: str = "fp32"):
    """The shell's own engine for the model folder, loaded the one way the shell loads models."""
    from invoke_shell.models.loader import load_model
    from invoke_shell.models.registry import ModelEntry

    return load_model(ModelEntry("tiny-shapes", model_dir), device, precision).engine


def shell_defaults() -> dict:
    from invoke_shell.models.registry import load_registry

    return load_registry(None).get("tiny-shapes").defaults


# Phrasings people type, written by hand (not drawn from the training grammar), each with the
# drawing it asks for: (shape, colour, background)
HAND_WRITTEN = [
    (text, data.Drawing(shape, colour, background, (0, 0, 0, 0)))
    for text, (shape, colour, background) in [
        ("a blue triangle on an orange background", ("triangle", "blue", "orange")),
        ("a tiny red circle on a blue background", ("circle", "red", "blue")),
        ("On blue, a red circle.", ("circle", "red", "blue")),
        ("A GREEN SQUARE ON A WHITE BACKGROUND", ("square", "green", "white")),
        ("a violet square box over a yellow background", ("square", "purple", "yellow")),
        ("a big yellow circle in front of a black background", ("circle", "yellow", "black")),
        ("Black background with an orange triangle", ("triangle", "orange", "black")),
        ("a small white square, on green", ("square", "white", "green")),
        ("picture of the purple ball against a red background", ("circle", "purple", "red")),
        ("a shiny green triangle on a purple background", ("triangle", "green", "purple")),
        ("an orange disc with a blue background!", ("circle", "orange", "blue")),
        ("the large red triangle on white", ("triangle", "red", "white")),
    ]
]


def natural_prompts(drawings: list[data.Drawing], seed: int) -> list[tuple[str, data.Drawing]]:
    """The hand-written phrasings, then one natural caption per drawing (a seed of its own)."""
    rng = random.Random(seed)
    return HAND_WRITTEN + [(data.natural_caption(d, rng), d) for d in drawings]


def txt2img_eval(engine, base: dict, prompts, seeds: list[int]) -> tuple[dict, list]:
    """Judge each (caption, drawing) or drawing (its canonical caption) at each seed."""
    right = {"background": 0, "colour": 0, "shape": 0, "all": 0}
    seconds, pictures = [], []
    for item, seed in itertools.product(prompts, seeds):
        caption, d = item if isinstance(item, tuple) else (item.caption, item)
        res = engine.generate(ImageRequest(prompt=caption, **base, seed=seed))
        seconds.append(res.seconds)
        j = data.judge(res.image)
        ok = (j.background == d.background, j.colour == d.colour, j.shape == d.shape)
        for key, v in zip(("background", "colour", "shape"), ok):
            right[key] += v
        right["all"] += all(ok)
        pictures.append((d, seed, res.image, ok, caption))
    n = len(prompts) * len(seeds)
    figures = {f"{k}_accuracy": round(v / n, 4) for k, v in right.items()}
    figures["colours_accuracy"] = round((right["background"] + right["colour"]) / (2 * n), 4)
    figures.update(
        images=n,
        seconds_per_image_mean=round(float(np.mean(seconds)), 3),
        seconds_per_image_median=round(float(np.median(seconds)), 3),
    )
    return figures, pictures


def edit_pairs(n: int, seed: int) -> list[tuple[data.Drawing, data.Drawing]]:
    """Init drawings and prompts that differ in shape colour, background colour and shape."""
    rng = random.Random(seed)
    inits = sample_drawings(n, seed)
    pairs = []
    for d in inits:
        c, b = rng.sample([x for x in data.COLOURS if x not in (d.colour, d.background)], 2)
        s = rng.choice([x for x in data.SHAPES if x != d.shape])
        pairs.append((d, data.Drawing(s, c, b, d.box)))
    return pairs


def centre_shift(image: Image.Image, j: data.Judgement, init: data.Drawing) -> float:
    """Pixels between the centre of the drawn shape (its colour's pixels) and the init's box centre."""
    if j.colour is None:
        return float(data.SIZE)
    mask = data.nearest_palette(np.asarray(image.convert("RGB"))) == data.COLOURS.index(j.colour)
    ys, xs = np.nonzero(mask)
    x0, y0, x1, y1 = init.box
    return float(np.hypot(xs.mean() - (x0 + x1) / 2, ys.mean() - (y0 + y1) / 2))


def img2img_eval(engine, base: dict, pairs, seed: int, strengths=STRENGTHS) -> tuple[dict, dict]:
    rows, strips = {}, {}
    t2i_dist = []
    for k, (init_d, target) in enumerate(pairs):
        init = data.render(init_d)
        t2i = engine.generate(ImageRequest(prompt=target.caption, **base, seed=seed)).image
        t2i_dist.append(data.palette_distance(t2i, init))
        strips[k] = [init]
        for f in strengths:
            req = ImageRequest(prompt=target.caption, **base, seed=seed, init_img="init.png", strength=f)
            out = engine.generate(req, init).image
            j = data.judge(out)
            row = rows.setdefault(
                f,
                {
                    "keeps_init_colours": 0,
                    "follows_prompt_colours": 0,
                    "keeps_init_shape": 0,
                    "distance": [],
                    "shift": [],
                },
            )
            row["keeps_init_colours"] += j.background == init_d.background and j.colour == init_d.colour
            row["follows_prompt_colours"] += j.background == target.background and j.colour == target.colour
            row["keeps_init_shape"] += j.shape == init_d.shape
            row["distance"].append(data.palette_distance(out, init))
            row["shift"].append(centre_shift(out, j, init_d))
            strips[k].append(out)
        strips[k].append(t2i)
    n = len(pairs)
    curve = {
        str(f): {
            "keeps_init_colours": round(r["keeps_init_colours"] / n, 3),
            "follows_prompt_colours": round(r["follows_prompt_colours"] / n, 3),
            "mean_distance_to_init": round(float(np.mean(r["distance"])), 2),
            "keeps_init_shape": round(r["keeps_init_shape"] / n, 3),
            "median_shape_shift_px": round(float(np.median(r["shift"])), 1),
        }
        for f, r in rows.items()
    }
    return {
        "init_images": n,
        "curve": curve,
        "txt2img_mean_distance_to_init": round(float(np.mean(t2i_dist)), 2),
    }, strips


# ---------------------------------------------------------------- pictures


def grid_picture(pictures, cols: int = 8, scale: int = 2) -> Image.Image:
    """Judged txt2img pictures, each labelled with its prompt (x: judged wrong)."""
    shown = pictures[: cols * 6]
    rows = [shown[i : i + cols] for i in range(0, len(shown), cols)]
    tiles = [
        [
            labelled_sheet(
                [[img]], [f"{d.colour} {d.shape}/{d.background}" + ("" if all(ok) else " x")], min_tile=64 * scale
            )
            for d, _seed, img, ok, _caption in row
        ]
        for row in rows
    ]
    return labelled_sheet(tiles)


def strip_picture(strips: dict, pairs, rows: int = 4, scale: int = 2) -> Image.Image:
    """One row per edit: the init drawing, img2img at each strength, and txt2img; the prompt on the left."""
    heads = ["init"] + [f"f={f}" for f in STRENGTHS] + ["txt2img"]
    keys = list(strips)[:rows]
    labels = [pairs[k][1].caption.replace(" on a ", "\non a ") for k in keys]  # two short lines
    return labelled_sheet([strips[k] for k in keys], heads, labels, min_tile=64 * scale)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=MODEL_DIR)
    p.add_argument("--prompts", type=int, default=48)
    p.add_argument("--seeds", default="1,2")
    p.add_argument("--inits", type=int, default=16)
    p.add_argument("--cfg_scales", default="", help="also sweep these guidance scales (comma list)")
    p.add_argument("--docs", type=Path, default=Path("docs"))
    p.add_argument("--no_write", action="store_true", help="print figures only")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)

    engine = load_engine(args.model, args.device)
    d = shell_defaults()
    base = {k: d[k] for k in ("steps", "cfg_scale", "sampler", "width", "height")}
    seeds = [int(s) for s in args.seeds.split(",")]
    prompts = sample_drawings(args.prompts, seed=0)
    pairs = edit_pairs(args.inits, seed=1)
    engine.generate(ImageRequest(prompt="warm up", **base, seed=0))

    report: dict = {"defaults": base, "measured": time.strftime("%Y-%m-%d")}
    t0 = time.time()
    report["txt2img"], pictures = txt2img_eval(engine, base, prompts, seeds)
    print("txt2img", json.dumps(report["txt2img"]), flush=True)
    natural = natural_prompts(prompts, seed=7)
    report["txt2img_natural"], judged = txt2img_eval(engine, base, natural, seeds)
    report["txt2img_natural"]["wrong"] = [f"{c} -S {seed}" for d, seed, _img, ok, c in judged if not all(ok)]
    print("txt2img, natural phrasings", json.dumps(report["txt2img_natural"]), flush=True)
    report["img2img"], strips = img2img_eval(engine, base, pairs, seed=seeds[0])
    for f, row in report["img2img"]["curve"].items():
        print(f"img2img strength {f}: {row}", flush=True)
    print("txt2img distance to init", report["img2img"]["txt2img_mean_distance_to_init"], flush=True)
    report["seconds"] = round(time.time() - t0, 1)
    if args.cfg_scales:
        sweep = {}
        for c in [float(x) for x in args.cfg_scales.split(",")]:
            b = {**base, "cfg_scale": c}
            t2i, _ = txt2img_eval(engine, b, prompts, seeds)
            i2i, _ = img2img_eval(engine, b, pairs, seeds[0], strengths=[0.2, 0.5, 0.8, 1.0])
            sweep[str(c)] = {
                "txt2img": {k: t2i[k] for k in ("background_accuracy", "colour_accuracy", "shape_accuracy")},
                "img2img": i2i,
            }
            print(f"cfg {c}: {json.dumps(sweep[str(c)])}", flush=True)
        report["cfg_sweep"] = sweep
    if not args.no_write:
        (args.model / "evaluation.json").write_text(json.dumps(report, indent=1))
        args.docs.mkdir(parents=True, exist_ok=True)
        grid_picture(pictures).save(args.docs / "tiny_shapes_grid.png")
        strip_picture(strips, pairs).save(args.docs / "tiny_shapes_strength.png")
        print(f"wrote {args.model / 'evaluation.json'}, {args.docs}/tiny_shapes_grid.png, tiny_shapes_strength.png")


if __name__ == "__main__":
    main()
