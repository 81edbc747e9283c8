"""What a new user meets in the first hour on the shipped tiny-shapes model (issue 15): the
defaults !help names, words the model does not know, true preview colours, and the lines and
sheets of sweeps, variations and grids."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image

from invoke_shell.engines.previews import DecoderPreviewer, LatentPreviewer, load_previewer
from invoke_shell.engines.prompts import PromptEncoder

ROOT = Path(__file__).parent.parent
MODEL = ROOT / "invoke_shell" / "models" / "tiny_shapes" / "model"


def said(shell, line: str) -> list[str]:
    shell.lines.clear()
    shell.handle(line)
    return list(shell.lines)


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(np.int16)


# ---- item 14: !help names the defaults of the model in use


def test_help_lists_the_loaded_models_defaults(shapes):
    text = "\n".join(said(shapes, "!help"))
    sampler = next(line for line in text.splitlines() if "--sampler" in line)
    cfg = next(line for line in text.splitlines() if "--cfg_scale" in line)
    assert sampler.endswith("[default ddim for tiny-shapes]")  # not Stable Diffusion's k_lms
    assert cfg.endswith("[default 3.0 for tiny-shapes]")  # not 7.5
    assert "[default 25 for tiny-shapes]" in text and "[default 64 for tiny-shapes]" in text


# ---- item 1: words outside a closed vocabulary are named, once, and the line still runs


def test_words_the_model_does_not_know_are_named_once(shapes):
    lines = said(shapes, "an orange circle on a shiny blue background, trending on artstation -S 2 -s 4 -n 2")
    notes = [line for line in lines if "does not know" in line]
    assert notes == [">> tiny-shapes does not know: shiny, trending, artstation (left out of what it reads)"]
    assert sum(".png  seed" in line for line in lines) == 2  # not refused
    assert not [line for line in said(shapes, "a red circle on a blue background -S 2 -s 4") if "know" in line]
    with_lora = said(shapes, "a red cross on a blue background <lora:cross:1> -S 2 -s 4")
    assert [line for line in with_lora if "does not know" in line] == [
        ">> tiny-shapes does not know: cross (kept: the LoRA on this line may have taught it)"
    ]


def test_a_real_clip_vocabulary_is_never_second_guessed():
    from transformers import CLIPTokenizer

    clip = PromptEncoder(
        SimpleNamespace(tokenizer=CLIPTokenizer.from_pretrained(ROOT / "configs" / "sd-1.5" / "tokenizer"))
    )
    assert clip.unknown_words("an astronaut riding a photorealistic horse, tiny, (ornate:1.2) zxqv") == []
    tiny = PromptEncoder(SimpleNamespace(tokenizer=CLIPTokenizer.from_pretrained(MODEL / "tokenizer")))
    assert tiny.unknown_words("A (Red:1.3) circle+ on an Orange background, shiny shiny") == ["shiny"]


# ---- item 4: the fast previews draw the decoded image's colours


def test_the_shipped_model_previews_through_its_own_decoder(tiny_config):
    shipped = load_previewer(MODEL)
    assert isinstance(shipped, DecoderPreviewer)
    assert sum(p.numel() for p in shipped.net.parameters()) < 20_000  # a few thousand: fast every step
    assert isinstance(load_previewer(tiny_config.parent / "model"), LatentPreviewer)  # no decoder: the linear map
    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    assert shipped(z).size == (64, 64)
    shipped(z)
    t0 = time.perf_counter()
    for _ in range(20):
        shipped(z)
    assert (time.perf_counter() - t0) / 20 < 0.05  # measured ~2 ms on one quiet CPU thread


def test_last_step_preview_has_the_images_colours(shapes):
    errors = []
    for seed in (7, 8, 9):
        lines = said(shapes, f"a red circle on a blue background -S {seed} --save_intermediates 5")
        image = Path(next(line.split()[0] for line in lines if line.endswith(" s") and ".png  seed" in line))
        x0 = image.parent / "intermediates" / image.stem / "step_025.x0.png"
        errors.append(np.abs(pixels(x0) - pixels(image)).mean())
    assert np.mean(errors) <= 10, errors  # the 4x3 linear map was off by 41-55 per pixel


# ---- item 6: sweeps, variations and grids say and show what each image is


def test_a_strength_sweep_shows_its_init_image_first_and_says_each_value(shapes):
    said(shapes, "a red circle on a blue background -S 3 -s 10")
    init = shapes.worker.status().made[-1].path
    lines = said(shapes, "a yellow square on a green background -I -1 -S 3 -s 10 -f 0.3,0.7")
    made = [line for line in lines if ".png  seed 3" in line]
    assert [line.split()[3:5] for line in made] == [["-f", "0.3"], ["-f", "0.7"]]
    sheet_line = next(line for line in lines if "sweep sheet" in line)
    sheet = pixels(Path(sheet_line.split()[0]))
    tile = sheet[-128:, :128]  # the first column, below its label: the init image, scaled 2x
    assert np.abs(tile[::2, ::2] - pixels(init)).max() <= 1
    history = said(shapes, "!history 2")
    assert "img2img -f 0.30" in history[0] and "img2img -f 0.70" in history[1]


def test_variation_lines_name_the_variation(shapes):
    lines = [line for line in said(shapes, "a red circle -S 5 -s 4 -n 3 -v 0.2") if ".png  seed 5" in line]
    assert len(lines) == 3
    chains = [line.split("-V ")[1].split()[0] for line in lines]
    assert all(c.endswith(":0.2") for c in chains) and len(set(chains)) == 3  # each its own variation seed
    history = said(shapes, "!history 3")
    assert [row.split("-V ")[1].split()[0] for row in history[:3]] == chains  # told apart there too


def test_an_8_image_grid_has_no_empty_cell_and_gaps_between_tiles(shapes):
    lines = said(shapes, "a red circle on a blue background -S 11 -s 4 -n 8 -g")
    grid = pixels(Path(next(line for line in lines if "grid of 8" in line).split()[0]))
    assert grid.shape[:2] == (2 * 64 + 4, 4 * 64 + 3 * 4)  # 2 rows of 4, not 3 x 3 with a black hole
    assert (grid[64:68] == 255).all() and (grid[:, 64:68] == 255).all()  # white gaps
    tiles = [grid[r * 68 : r * 68 + 64, c * 68 : c * 68 + 64] for r in range(2) for c in range(4)]
    assert all(t.mean() > 40 for t in tiles)  # every cell holds a picture (blue background, red circle)


def test_fetch_of_a_sheet_or_a_grid_brings_back_its_whole_line(shapes):
    """An image's PNG records that image; a sheet's records the line that made all of it, so
    `!fetch` of a sweep sheet or a grid puts the sweep, -n and -g back at the prompt."""
    lines = said(shapes, "a red circle on a blue background -S 3 -s 2 -C 1,3 -A ddim,k_euler_a")
    sheet = next(line for line in lines if "sweep sheet" in line).split()[0]
    assert said(shapes, f"!fetch {sheet}")[-1] == (
        '"a red circle on a blue background" -s 2 -S 3 -W 64 -H 64 -C 1.0,3.0 -A ddim,k_euler_a'
    )
    lines = said(shapes, "a red circle on a blue background -S 4 -s 2 -n 2 -g")
    grid = next(line for line in lines if "grid of 2" in line).split()[0]
    fetched = said(shapes, f"!fetch {grid}")[-1]
    assert fetched.endswith("-n 2 -g") and "-S 4" in fetched
    one = next(line for line in lines if ".png  seed 4" in line).split()[0]
    assert "-n 2" not in said(shapes, f"!fetch {one}")[-1]  # an image of it: that one image


def test_fetch_minus_n_brings_back_a_recent_images_command(shapes):
    # as -I -1 and !show -1 take the last image, so does !fetch
    said(shapes, "a green square on a yellow background -S 8 -s 2")
    said(shapes, "a red circle on a blue background -S 9 -s 2")
    assert said(shapes, "!fetch -1")[-1].startswith('"a red circle on a blue background" -s 2 -S 9')
    assert said(shapes, "!fetch -2")[-1].startswith('"a green square on a yellow background" -s 2 -S 8')
    error = said(shapes, "!fetch -999")[-1]
    assert error.startswith("error: !fetch -999: this session has made ") and "give a file, or -1 for the last" in error
