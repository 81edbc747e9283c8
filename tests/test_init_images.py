"""Init images of any shape and kind: sizes with and without --fit, resize modes, colour modes
(pure: no model), and through the shell on the shipped tiny-shapes model: transparency and
masks inpaint only their region, outcrop paints only the new strip, a hires pass makes the
larger picture, and what each PNG stores replays (via !fetch) to the same pixels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from invoke_shell.errors import UsageError
from invoke_shell.files.inputs import prepare_init
from invoke_shell.line.parsing import parse_line
from invoke_shell.models.tiny_shapes import data

ROOT = Path(__file__).parent.parent
DEFAULTS = {"steps": 25, "cfg_scale": 3.0, "sampler": "ddim", "width": 64, "height": 64}
BLUE, RED = data.PALETTE["blue"], data.PALETTE["red"]


def striped(path: Path, size: tuple[int, int]) -> Path:
    """Left half red, right half blue, a green top row: which part survives a resize shows."""
    w, h = size
    a = np.zeros((h, w, 3), np.uint8)
    a[:, : w // 2], a[:, w // 2 :] = RED, BLUE
    a[0] = data.PALETTE["green"]
    Image.fromarray(a).save(path)
    return path


# ---- sizes (no model)


@pytest.mark.parametrize("source", [(300, 200), (37, 53), (20, 12), (1000, 700)])
@pytest.mark.parametrize("mode", ["just", "crop", "fill"])
def test_without_fit_the_output_is_the_requested_size_in_every_mode(tmp_path, source, mode):
    path = striped(tmp_path / "in.png", source)
    init = prepare_init(str(path), 64, 48, native=(64, 64), resize_mode=mode)
    assert init.size == (64, 48) and init.mask is None
    px = np.asarray(init.image).astype(int)
    assert np.abs(px[24, 2] - RED).max() < 40 and np.abs(px[24, 61] - BLUE).max() < 40  # left red, right blue
    small = source[0] < 64 or source[1] < 48
    assert any("smaller than the 64x64 the model was trained at: upscaled" in n for n in init.notes) == small


def test_crop_cuts_the_overflow_and_fill_repeats_the_edge(tmp_path):
    path = striped(tmp_path / "wide.png", (200, 50))  # 4:1 into a square
    crop = np.asarray(prepare_init(str(path), 64, 64, resize_mode="crop").image).astype(int)
    assert np.abs(crop[0, 32] - data.PALETTE["green"]).max() < 60  # the whole height kept: the top row is there
    assert np.abs(crop[32, 0] - RED).max() < 30 and np.abs(crop[32, 63] - BLUE).max() < 30
    fill = np.asarray(prepare_init(str(path), 64, 64, resize_mode="fill").image).astype(int)
    # the picture is 64x16 in the middle; above it the border repeats its top (green) row, below its bottom
    assert (np.abs(fill[:20, 10] - fill[20, 10]) <= 1).all() or np.abs(fill[0, 10] - data.PALETTE["green"]).max() < 60
    assert (fill[56:, 10] == fill[55, 10]).all() and np.abs(fill[60, 10] - RED).max() < 30
    just = np.asarray(prepare_init(str(path), 64, 64, resize_mode="just").image).astype(int)
    assert np.abs(just[32, 10] - RED).max() < 30 and np.abs(just[32, 54] - BLUE).max() < 30


@pytest.mark.parametrize(
    "source, box, expected",
    [
        ((300, 200), (64, 64), (64, 40)),
        ((37, 53), (64, 64), (40, 64)),
        ((20, 12), (64, 64), (64, 32)),
        ((1000, 700), (128, 64), (88, 64)),
        ((64, 64), (64, 64), (64, 64)),
    ],
)
def test_fit_keeps_the_shape_inside_the_box_on_the_latent_grid(tmp_path, source, box, expected):
    path = striped(tmp_path / "in.png", source)
    init = prepare_init(str(path), *box, native=(64, 64), fit=True)
    assert init.size == expected
    assert init.size[0] % 8 == 0 and init.size[1] % 8 == 0
    assert f"fitted inside {box[0]}x{box[1]} keeping its shape: made at {expected[0]}x{expected[1]}" in init.notes[0]


# ---- colour modes (the rest are in test_hostile_files.py)


def test_grey_and_rgba_load_as_shown(tmp_path):
    Image.new("L", (16, 16), 90).save(tmp_path / "grey.png")
    init = prepare_init(str(tmp_path / "grey.png"), 16, 16)
    assert init.image.mode == "RGB" and init.image.getpixel((3, 3)) == (90, 90, 90) and init.notes == ()
    Image.new("RGBA", (16, 16), (10, 20, 30, 255)).save(tmp_path / "opaque.png")
    init = prepare_init(str(tmp_path / "opaque.png"), 16, 16)
    assert init.image.getpixel((3, 3)) == (10, 20, 30) and init.mask is None  # all opaque: plain img2img


def test_transparency_threshold_and_outcrop_strips_make_the_mask(tmp_path):
    a = np.zeros((64, 64, 4), np.uint8)
    a[..., :3], a[..., 3] = BLUE, 255
    a[:, :16, 3] = 127  # under the threshold: a hole
    a[:, 16:24, 3] = 128  # a soft edge: kept
    Image.fromarray(a, "RGBA").save(tmp_path / "soft.png")
    init = prepare_init(str(tmp_path / "soft.png"), 64, 64, outcrop=(("top", 12), ("right", 8)))
    assert init.size == (72, 80)  # 12 rounded up to 16
    m = np.asarray(init.mask)
    assert (m[:16] == 255).all() and (m[:, 64:] == 255).all()  # the strips
    assert (m[16:, :16] == 255).all() and (m[16:, 16:64] == 0).all()  # the hole, not the edge
    assert "canvas grown from 64x64 to 72x80 (top 16 (rounded up from 12), right 8)" in init.notes[-1]
    assert np.asarray(init.image)[0, 40].tolist() == list(BLUE)  # a strip starts from the image's edge


# ---- through the shell on tiny-shapes


def last(shell) -> Path:
    return shell.worker.status().made[-1].path


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(np.int16)


def share_of(px: np.ndarray, colour: str) -> float:
    return float((data.nearest_palette(px.astype(np.uint8)) == data.COLOURS.index(colour)).mean())


def replay(shell, path: Path) -> Path:
    """!fetch the PNG (over a pipe it prints the command), run that command, return the new file."""
    shell.lines.clear()
    shell.handle(f"!fetch {path}")
    command = next(line for line in shell.lines if line.startswith('"'))
    shell.handle(command)
    return last(shell)


def errors_of(shell, line: str) -> list[str]:
    shell.lines.clear()
    shell.raise_errors = False
    try:
        shell.handle(line)
    finally:
        shell.raise_errors = True
    said = "\n".join(shell.lines).split("\n")
    return [x for x in said if x.startswith("error:") or x.startswith("  hint:")]


@pytest.fixture(scope="module")
def blue_with_hole(tmp_path_factory) -> Path:
    """A blue picture whose middle 32x32 is transparent, blue still under it."""
    a = np.zeros((64, 64, 4), np.uint8)
    a[..., :3], a[..., 3] = BLUE, 255
    a[16:48, 16:48, 3] = 0
    path = tmp_path_factory.mktemp("hole") / "hole.png"
    Image.fromarray(a, "RGBA").save(path)
    return path


def test_transparent_pixels_are_repainted_and_the_rest_kept(shapes, blue_with_hole):
    shapes.lines.clear()
    shapes.handle(f"a red circle on a blue background -I {blue_with_hole} -f 1 -S 3")
    assert any("transparent pixels: they are repainted (25 % of the picture)" in x for x in shapes.lines)
    assert ">> inpaint: 25 of 25 steps (strength 1.00)" in shapes.lines  # said as what it is
    out = pixels(last(shapes))
    far = np.ones((64, 64), bool)
    far[12:52, 12:52] = False  # farther from the hole than the 4-pixel seam
    assert np.abs(out[far] - BLUE).max() <= 1  # the init's own pixels
    assert share_of(out[16:48, 16:48], "red") > 0.3  # the hole was blue: now a red shape is drawn there
    mask = pixels(last(shapes).with_name(last(shapes).name.replace(".png", ".mask.png")))
    assert (mask[16:48, 16:48] == 255).all() and (mask[far] == 0).all()


def test_erased_colour_under_transparency_is_said(shapes, tmp_path):
    a = np.zeros((64, 64, 4), np.uint8)
    a[..., :3], a[..., 3] = BLUE, 255
    a[:, 40:] = 0  # erased: black under alpha 0
    Image.fromarray(a, "RGBA").save(tmp_path / "erased.png")
    shapes.lines.clear()
    shapes.handle(f"a red circle on a blue background -I {tmp_path / 'erased.png'} -f 0.5 --mask_blur 0 -S 4")
    assert any("whose colour was erased (black under them): they are repainted" in x for x in shapes.lines)
    out = pixels(last(shapes))
    assert np.abs(out[:, :40] - BLUE).max() == 0  # a hard seam: every kept pixel is the init's own
    assert np.abs(out[:, 40:] - BLUE).mean() > 20  # painted from black, at 0.5 not yet the background


@pytest.mark.parametrize("invert", [False, True])
def test_a_mask_repaints_its_white_and_replays_from_the_copy_beside_the_image(shapes, tmp_path, invert):
    init = tmp_path / "init.png"
    data.render(data.Drawing("circle", "red", "blue", (16, 14, 46, 44))).save(init)
    m = np.zeros((32, 32), np.uint8)  # another size than the init: resized, with a note
    m[:, 16:] = 255  # right half white
    Image.fromarray(m).save(tmp_path / "mask.png")
    flag = " --invert_mask" if invert else ""
    shapes.lines.clear()
    shapes.handle(f"a yellow square on a green background -I {init} -M {tmp_path / 'mask.png'}{flag} -f 1 -S 5")
    assert any("mask is 32x32: resized to 64x64" in x for x in shapes.lines)
    made = last(shapes)
    out, before = pixels(made), pixels(init)
    kept, painted = (slice(0, 26), slice(38, 64)) if not invert else (slice(38, 64), slice(0, 26))
    assert np.abs(out[:, kept] - before[:, kept]).max() <= 1
    assert np.abs(out[:, painted] - before[:, painted]).mean() > 20  # repainted, no longer the init
    dream = Image.open(made).text["Dream"]
    assert f"-M {tmp_path / 'mask.png'}" in dream and ("--invert_mask" in dream) == invert
    saved = made.with_name(made.name.replace(".png", ".mask.png"))
    assert (pixels(saved)[:, painted] == 255).all() and (pixels(saved)[:, kept] == 0).all()
    (tmp_path / "mask.png").unlink()  # the user's mask is gone: !fetch replays the copy beside the image
    again = replay(shapes, made)
    assert any(f"-M: the mask saved beside it, {saved.name}" in x for x in shapes.lines)
    assert np.array_equal(pixels(again), out)
    shapes.lines.clear()
    shapes.handle(f"!fetch {made.parent}")  # a folder's listing: the images, not their masks
    assert not any(".mask.png:" in x for x in shapes.lines) and any(f"{made.name}:" in x for x in shapes.lines)


def test_outcrop_grows_the_canvas_and_paints_only_the_strip(shapes, tmp_path):
    init = tmp_path / "init.png"
    data.render(data.Drawing("square", "yellow", "green", (20, 20, 44, 44))).save(init)
    shapes.lines.clear()
    shapes.handle(f"a yellow square on a green background -I {init} --outcrop left 32 -f 1 -S 6")
    made = last(shapes)
    out, before = pixels(made), pixels(init)
    assert out.shape == (64, 96, 3)
    assert np.abs(out[:, 40:] - before[:, 8:]).max() <= 1  # the old picture, beyond the seam
    strip = out[:, :28]
    assert share_of(strip, "green") > 0.5  # the background carries on into the new strip
    assert not (strip == strip[:, -1:]).all()  # drawn, not the edge repeated
    assert "-W 96 -H 64" in Image.open(made).text["Dream"]
    shapes.handle("!history 1")
    assert " outcrop -f 1.00 " in shapes.lines[-2]
    assert np.array_equal(pixels(replay(shapes, made)), out)


def test_hires_fix_draws_then_refines_at_twice_the_size_and_replays(shapes):
    shapes.lines.clear()
    shapes.handle("a red circle on a blue background --hires_fix -S 7")
    assert ">> 64x64 upscaled (lanczos) to 128x128 and refined: 12 of 25 steps (strength 0.50)" in shapes.lines
    made = last(shapes)
    out = pixels(made)
    assert out.shape == (128, 128, 3)
    assert share_of(out, "blue") > 0.5 and share_of(out, "red") > 0.05  # a red circle (seed 7: 10 % of the picture)
    meta = json.loads(Image.open(made).text["sd-metadata"])["image"]
    assert (meta["width"], meta["height"], meta["steps_run"]) == (64, 64, 25 + 12)
    assert meta["hires"] == {"width": 128, "height": 128, "strength": 0.5, "upscaler": "lanczos"}
    assert "Hires upscale: 2, Hires upscaler: Lanczos" in Image.open(made).text["parameters"]
    shapes.handle("!history 1")  # the size of the file, not of the first pass
    assert f"{made.name}  " in shapes.lines[-2] and " 128x128 " in shapes.lines[-2]
    assert " txt2img+hires " in shapes.lines[-2]  # what the file is, not only its first pass
    assert np.array_equal(pixels(replay(shapes, made)), out)


def test_upscale_refines_an_existing_image_and_latent_upscaling_too(shapes, tmp_path):
    init = tmp_path / "init.png"
    data.render(data.Drawing("circle", "red", "blue", (16, 14, 46, 44))).save(init)
    shapes.lines.clear()
    shapes.handle(f"a red circle on a blue background -I {init} -U 2 0.3 -S 8")
    assert not any("img2img:" in x for x in shapes.lines)  # nothing is drawn first
    made = last(shapes)
    out = pixels(made)
    assert out.shape == (128, 128, 3)
    lanczos = pixels(init).repeat(2, 0).repeat(2, 1)
    assert np.abs(out - lanczos).mean() < 12  # the same picture, larger
    assert "-U 2.0 0.3" in Image.open(made).text["Dream"]
    assert np.array_equal(pixels(replay(shapes, made)), out)
    shapes.handle(f"a red circle on a blue background -I {init} -U 2 0.3 --hires_upscaler latent -S 8")
    latent = pixels(last(shapes))
    assert latent.shape == (128, 128, 3) and np.abs(latent - lanczos).mean() < 30
    assert not np.array_equal(latent, out)


def test_fit_and_resize_modes_through_the_shell_store_their_size(shapes, tmp_path):
    wide = striped(tmp_path / "wide.png", (300, 200))
    shapes.handle(f"a red circle on a blue background -I {wide} --fit -f 0.3 -S 9")
    made = last(shapes)
    assert Image.open(made).size == (64, 40) and "-W 64 -H 40" in Image.open(made).text["Dream"]
    assert "--fit" not in Image.open(made).text["Dream"]  # resolved into the size: replays the same
    assert np.array_equal(pixels(replay(shapes, made)), pixels(made))
    shapes.handle(f"a red circle on a blue background -I {wide} --resize_mode crop -W 48 -H 64 -f 0.3 -S 9")
    assert Image.open(last(shapes)).size == (48, 64)
    assert "--resize_mode crop" in Image.open(last(shapes)).text["Dream"]


def test_an_exif_rotated_photo_comes_out_upright(shapes, tmp_path):
    side = np.zeros((48, 64, 3), np.uint8)
    side[:, :32] = RED  # stored sideways: red on the left, shown on top
    side[:, 32:] = BLUE
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(side).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    shapes.handle(f"a red circle on a blue background -I {tmp_path / 'phone.jpg'} -W 48 -H 64 -f 0 -S 1")
    out = pixels(last(shapes))
    assert out.shape == (64, 48, 3)
    assert np.abs(out[10, 24] - RED).max() < 30 and np.abs(out[54, 24] - BLUE).max() < 30


@pytest.mark.parametrize(
    "line, message",
    [
        ("a cat --fit", "error: --fit works on an init image, and the line has no -I"),
        ("a cat -I {init} --outcrop up 32", "error: --outcrop has no side 'up'"),
        ("a cat -I {init} --outcrop top", "error: --outcrop expects side and pixel pairs, got 'top'"),
        ("a cat -I {init} -M {missing}", "error: mask {missing} does not exist"),
        ("a cat -I {init} --invert_mask", "error: --invert_mask inverts a mask, and the line has no -M"),
        ("a cat --hires_scale 3", "error: --hires_scale sets the refining pass of --hires_fix or -U"),
        ("a cat -I {init} -U 0.5", "error: -U/--upscale SCALE must be above 1 and at most 8, got '0.5'"),
        ("a cat -I {init} --fit --resize_mode crop", "error: --fit keeps the init image's shape"),
    ],
)
def test_mistakes_get_one_message_and_a_hint(shapes, tmp_path, line, message):
    init = striped(tmp_path / "i.png", (64, 64))
    missing = tmp_path / "nope.png"
    got = errors_of(shapes, line.format(init=init, missing=missing))
    assert len(got) == 2 and got[0].startswith(message.format(missing=missing)) and got[1].startswith("  hint:")


def test_new_switches_parse_back_exactly():
    line = parse_line(
        '"x" -I a.png --outcrop top 32 left 16 -M "my mask.png" --invert_mask --mask_blur 0 -S 1', DEFAULTS
    )
    assert line.outcrop == (("top", 32), ("left", 16)) and line.init_mask == "my mask.png"
    assert parse_line('"x" -U 2 0.6 --hires_upscaler latent -S 1', DEFAULTS).upscale == (2.0, 0.6)
    with pytest.raises(UsageError, match="names top twice"):
        parse_line("x -I a.png --outcrop top 8 top 16", DEFAULTS)


def test_the_other_chunks_carry_the_hires_pass_and_the_mask(tmp_path):
    from PIL.PngImagePlugin import PngInfo

    from invoke_shell.files.fetch import fetch
    from invoke_shell.files.metadata import ModelInfo, a1111_parameters, sd_metadata
    from invoke_shell.line.requests import ImageRequest

    model = ModelInfo("tiny-shapes", "model", "0123456789")
    hires = ImageRequest("a red circle", 25, 3.0, "ddim", 64, 64, 7, hires_fix=True, hires_strength=0.4)
    info = PngInfo()
    info.add_text("parameters", a1111_parameters(hires, model))  # AUTOMATIC1111's keys alone
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png", pnginfo=info)
    got = fetch(tmp_path / "a.png", DEFAULTS).request
    assert (got.hires_fix, got.hires_scale, got.hires_strength, got.hires_upscaler) == (True, 2.0, 0.4, "lanczos")
    masked = ImageRequest("x", 25, 3.0, "ddim", 64, 64, 7, init_img="i.png", init_mask="m.png", strength=0.9)
    info = PngInfo()
    info.add_text("sd-metadata", json.dumps(sd_metadata(masked, model, 22, 25)))  # InvokeAI's JSON alone
    Image.new("RGB", (8, 8)).save(tmp_path / "b.png", pnginfo=info)
    got = fetch(tmp_path / "b.png", DEFAULTS).request
    assert (got.init_img, got.init_mask, got.strength) == ("i.png", "m.png", 0.9)


# ---- the engine against diffusers' own inpaint pipeline (tiny random weights)


def _hole_mask() -> Image.Image:
    m = np.zeros((64, 64), np.uint8)
    m[20:37, 10:30] = 255  # not on the 8-pixel grid: the latent mask takes the cells it touches
    return Image.fromarray(m, "L")


def test_inpaint_equals_diffusers_pipeline_inside_and_the_init_outside(engine, tiny_pipe):
    import torch
    from diffusers import StableDiffusionInpaintPipeline

    from invoke_shell import schedulers
    from invoke_shell.engines.generate import latent_cells
    from invoke_shell.line.requests import ImageRequest

    init = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    mask = _hole_mask()
    r = ImageRequest("a red circle", 10, 7.5, "k_lms", 64, 64, 7, init_img="x.png", strength=0.8, mask_blur=0)
    ours = engine.generate(r, init_image=init, mask=mask)
    cells = np.asarray(latent_cells(mask, 8))
    assert cells[16:40, 8:32].all() and cells.sum() == 24 * 24 * 255  # widened to whole 8x8 cells
    ref = StableDiffusionInpaintPipeline.from_pipe(
        tiny_pipe, scheduler=schedulers.build("k_lms", engine.base_scheduler_config, 7)
    )(
        "a red circle",
        image=init,
        mask_image=latent_cells(mask, 8),
        strength=0.8,
        num_inference_steps=10,
        guidance_scale=7.5,
        generator=torch.Generator().manual_seed(7),
        output_type="np",
        height=64,
        width=64,
    ).images[0]
    inside = np.asarray(mask) > 0
    assert np.abs(ours.pixels[inside] - ref[inside]).max() <= 1e-4
    assert np.array_equal(np.asarray(ours.image)[~inside], np.asarray(init)[~inside])
    assert ours.steps_run == 8


def test_a_nine_channel_inpainting_unet_uses_its_own_channels(tiny_pipe):
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    from invoke_shell.engines.generate import Engine
    from invoke_shell.line.requests import ImageRequest

    config = {**tiny_pipe.unet.config, "in_channels": 9}  # latents + mask + masked-image latents
    unet = UNet2DConditionModel.from_config(config)
    parts = {**tiny_pipe.components, "unet": unet}
    engine = Engine(StableDiffusionPipeline(**parts))
    init = Image.new("RGB", (64, 64), (30, 60, 220))
    r = ImageRequest("x", 4, 7.5, "ddim", 64, 64, 1, init_img="x.png", strength=1.0, mask_blur=0)
    out = engine.generate(r, init_image=init, mask=_hole_mask())
    px = np.asarray(out.image).astype(int)
    inside = np.asarray(_hole_mask()) > 0
    assert (px[~inside] == (30, 60, 220)).all() and np.abs(px[inside] - (30, 60, 220)).mean() > 5


def test_paths_typed_relative_are_stored_absolute_so_fetch_works_from_any_folder(shapes, tmp_path, monkeypatch):
    data.render(data.Drawing("circle", "red", "blue", (16, 14, 46, 44))).save(tmp_path / "in.png")
    m = np.zeros((64, 64), np.uint8)
    m[:, 32:] = 255
    Image.fromarray(m).save(tmp_path / "mask.png")
    monkeypatch.chdir(tmp_path)
    shapes.handle("a yellow square on a green background -I in.png -M mask.png -f 0.8 -s 4 -S 2")
    made = last(shapes)
    dream = Image.open(made).text["Dream"]
    assert f"-I {tmp_path / 'in.png'}" in dream and f"-M {tmp_path / 'mask.png'}" in dream
    monkeypatch.chdir(made.parent)  # elsewhere: the stored command still finds its files
    assert np.array_equal(pixels(replay(shapes, made)), pixels(made))
