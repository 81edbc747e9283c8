"""Seeing inside the sampler: intermediates on disk, the schedule, sweeps, exact steps."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from safetensors import safe_open

from invoke_shell import schedulers
from invoke_shell.engines.previews import load_previewer
from invoke_shell.files import schedule_view
from invoke_shell.line.requests import ImageRequest


def inter_dir(tmp_path, name):
    return tmp_path / "out" / "img-samples" / "intermediates" / name


@pytest.mark.parametrize("every, steps", [(1, [1, 2, 3, 4, 5, 6]), (3, [3, 6]), (4, [4, 6])])
def test_intermediate_files_for_every_nth_step(make_shell, tmp_path, every, steps):
    shell = make_shell()
    shell.handle(f"a red circle -s 6 -S 42 --save_intermediates {every}")
    folder = inter_dir(tmp_path, "000001.42")
    expected = {f"step_{k:03d}.{ext}" for k in steps for ext in ("safetensors", "xt.png", "x0.png")}
    assert {p.name for p in folder.iterdir()} == expected | {"contact_sheet.png", "steps.gif"}
    sheet = Image.open(folder / "contact_sheet.png")
    assert sheet.width >= 96 * len(steps)
    gif = Image.open(folder / "steps.gif")
    assert gif.n_frames == len(steps)


def test_img2img_saves_what_the_model_sees_as_step_0(make_shell, tmp_path):
    shell = make_shell()
    shell.handle("base -s 4 -S 1")
    shell.handle("edit -I -1 -f 0.5 -s 10 -S 2 --save_intermediates 1")
    folder = inter_dir(tmp_path, "000002.2")
    names = {p.name for p in folder.iterdir()}
    assert {"step_000.safetensors", "step_000.xt.png"} <= names
    assert "step_000.x0.png" not in names  # nothing predicted yet
    assert {f"step_{k:03d}.x0.png" for k in range(1, 6)} <= names and "step_006.xt.png" not in names
    assert not (inter_dir(tmp_path, "000001.1")).exists()


def test_saved_latents_reload_to_the_same_preview(make_shell, tmp_path, tiny_config):
    shell = make_shell()
    shell.handle("a red circle -s 5 -S 3 -A k_euler --save_intermediates 1")
    folder = inter_dir(tmp_path, "000001.3")
    preview = load_previewer(tiny_config.parent / "model")
    for k in (1, 3, 5):
        with safe_open(str(folder / f"step_{k:03d}.safetensors"), "pt") as f:
            meta = f.metadata()
            latents, denoised = f.get_tensor("latents"), f.get_tensor("denoised")
        assert int(meta["step"]) == k
        again = preview(latents * float(meta["preview_scale"]))
        assert np.array_equal(np.asarray(again), np.asarray(Image.open(folder / f"step_{k:03d}.xt.png")))
        assert np.array_equal(np.asarray(preview(denoised)), np.asarray(Image.open(folder / f"step_{k:03d}.x0.png")))


def test_vae_decoded_previews(make_shell, tmp_path):
    shell = make_shell()
    shell.handle("a red circle -s 4 -S 3 --save_intermediates 2 --intermediates_decode vae")
    folder = inter_dir(tmp_path, "000001.3")
    final = Image.open(tmp_path / "out" / "img-samples" / "000001.3.png")
    x0 = Image.open(folder / "step_004.x0.png")
    assert x0.size == final.size  # a VAE decode is full size, the approximation is 8x upscaled latents


@pytest.mark.parametrize("sampler", ["k_lms", "k_euler_a", "ddim", "dpmpp_2m_karras"])
@pytest.mark.parametrize("strength", [None, 0.3, 0.75, 1.0])
def test_schedule_table_is_what_the_engine_runs(engine, sampler, strength):
    plan = schedulers.plan(sampler, engine.base_scheduler_config, 10, strength)
    seen = []
    req = ImageRequest(
        "x", 10, 7.5, sampler, 64, 64, seed=1, init_img="i.png" if strength else None, strength=strength or 0.75
    )
    init = Image.new("RGB", (64, 64), (200, 30, 30)) if strength else None
    engine.generate(req, init, on_step=seen.append)
    assert [s.timestep for s in seen if s.step > 0] == [p.timestep for p in plan if p.runs]


def test_schedule_command_prints_table_and_writes_plot(make_shell, tmp_path):
    shell = make_shell()
    shell.handle("!schedule -A k_lms -s 10 -f 0.7")
    text = "\n".join(shell.lines)
    assert "10-step schedule, strength 0.70: 7 steps run" in text
    assert "steps 1-3 (sigma 8.39 to 3.35) are skipped" in text
    rows = [line.split() for line in text.splitlines()[-9:-1]]
    assert rows[0] == ["step", "timestep", "sigma"] and [int(r[0]) for r in rows[1:]] == list(range(4, 11))
    plot = tmp_path / "out" / "schedules" / "k_lms.10.f0.70.png"
    assert Image.open(plot).size[0] > 300


def test_schedule_of_a_two_call_sampler_shows_the_steps_that_run(make_shell, engine):
    shell = make_shell()
    shell.handle("!schedule -A k_heun -s 5 -f 0.4 --exact_steps")
    text = "\n".join(shell.lines)
    assert "13-step schedule, strength 0.40: 5 steps run (9 model calls)" in text
    assert "steps 1-8 " in text and "are skipped" in text
    rows = [line.split() for line in text.splitlines()[-6:-1]]  # it listed 25 scheduler entries
    assert [(int(r[0]), int(r[3])) for r in rows] == [(9, 2), (10, 2), (11, 2), (12, 2), (13, 1)]
    # the plot draws one point per step, the five that run in red
    length, steps = schedule_view.schedule_steps("k_heun", engine.base_scheduler_config, 5, 0.4, exact=True)
    assert (length, len(steps), [s.number for s in steps if s.runs]) == (13, 13, [9, 10, 11, 12, 13])


def test_strength_sweep_makes_one_image_per_value_and_a_sheet(make_shell, tmp_path):
    shell = make_shell()
    shell.handle("base -s 4 -S 1")
    shell.handle("sweep -I -1 -s 10 -S 9 -f 0.2,0.4,0.6,0.8,1.0")
    out = tmp_path / "out" / "img-samples"
    made = sorted(out.glob("00000[2-6].9.png"))
    assert len(made) == 5
    assert [json.loads(Image.open(p).text["sd-metadata"])["image"]["steps_run"] for p in made] == [2, 4, 6, 8, 10]
    sheet = Image.open(out / "000007.9.sweep.png")
    assert sheet.size == (
        6 * 128 + 5 * 4,
        15 + 128,
    )  # column labels above the init image and five 128-pixel tiles, 4 px apart
    assert "-f 0.2,0.4,0.6,0.8,1.0" in sheet.text["Dream"]


def test_two_lists_make_a_labelled_grid(make_shell, tmp_path):
    shell = make_shell()
    shell.handle("grid -S 4 -s 2,3 -A ddim,k_lms,unipc")
    out = tmp_path / "out" / "img-samples"
    assert len(list(out.glob("*.4.png"))) == 6
    width, height = Image.open(out / "000007.4.sweep.png").size
    assert (
        height == 15 + 2 * 128 + 4 and 3 * 128 + 2 * 4 + 20 < width < 3 * 128 + 2 * 4 + 60
    )  # row labels (-s 2, -s 3) on the left


def test_exact_steps_runs_the_asked_count_and_records_both(make_shell, tmp_path):
    shell = make_shell()
    shell.handle("base -s 2 -S 1")
    shell.handle("edit -I -1 -s 20 -f 0.4 --exact_steps -S 2")
    assert any("img2img: 20 of 50 steps (strength 0.40, --exact_steps)" in line for line in shell.lines)
    png = Image.open(tmp_path / "out" / "img-samples" / "000002.2.png")
    meta = json.loads(png.text["sd-metadata"])["image"]
    assert (meta["steps"], meta["schedule_steps"], meta["steps_run"], meta["exact_steps"]) == (20, 50, 20, True)
    assert png.text["Dream"].endswith("-f 0.4 --exact_steps")
