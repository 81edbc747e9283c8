"""File names, never overwriting, and the three metadata chunks."""

from __future__ import annotations

import json

from conftest import DEFAULTS
from PIL import Image

from invoke_shell.files import metadata, outputs
from invoke_shell.line.parsing import parse_line
from invoke_shell.line.requests import ImageRequest, expand

MODEL = metadata.ModelInfo("tiny-random", "/models/tiny", "0123456789")
SMALL = ImageRequest("x", 1, 7.5, "k_lms", 8, 8, seed=42)


def test_numbering_continues_and_never_overwrites(tmp_path):
    img = Image.new("RGB", (8, 8), (255, 0, 0))
    a, _ = outputs.write_image(tmp_path, SMALL, img, MODEL, 1, 1)
    b, _ = outputs.write_image(tmp_path, SMALL, img, MODEL, 1, 1)
    assert (a.name, b.name) == ("000001.42.png", "000002.42.png")
    # a file from an earlier session, with a gap: numbering continues after the highest
    (tmp_path / "img-samples" / "000007.5.png").write_bytes(b"keep me")
    c, _ = outputs.write_sheet(tmp_path, 9, img, '"x" -n 2 -g', ".grid")
    assert c.name == "000008.9.grid.png"
    assert (tmp_path / "img-samples" / "000007.5.png").read_bytes() == b"keep me"


def test_three_chunks_round_trip(tmp_path):
    req = ImageRequest(
        "a red circle [blurry]", 10, 7.5, "dpmpp_2m_karras", 64, 64, seed=42, init_img="in.png", strength=0.7
    )
    path, _ = outputs.write_image(tmp_path, req, Image.new("RGB", (64, 64)), MODEL, 7, 10)
    text = Image.open(path).text
    assert text["Dream"] == '"a red circle [blurry]" -s 10 -S 42 -W 64 -H 64 -C 7.5 -A dpmpp_2m_karras -I in.png -f 0.7'
    line = parse_line(text["Dream"], DEFAULTS)
    assert expand(line, line.seed, line.init_img, new_seed=lambda: 0) == [req]

    meta = json.loads(text["sd-metadata"])
    assert meta["model_weights"] == "tiny-random" and meta["model_hash"] == "0123456789"
    assert meta["app_id"] == "invoke-shell" and meta["model_path"] == "/models/tiny"
    image = meta["image"]
    assert image["prompt"] == [{"prompt": "a red circle [blurry]", "weight": 1.0}]
    assert (image["steps"], image["cfg_scale"], image["seed"], image["sampler"]) == (10, 7.5, 42, "dpmpp_2m_karras")
    assert (image["width"], image["height"], image["type"], image["strength"]) == (64, 64, "img2img", 0.7)
    assert image["init_image_path"] == "in.png" and image["variations"] == [] and image["steps_run"] == 7

    assert text["parameters"] == (
        "a red circle\nNegative prompt: blurry\n"
        "Steps: 10, Sampler: DPM++ 2M Karras, CFG scale: 7.5, Seed: 42, Size: 64x64, "
        "Model hash: 0123456789, Model: tiny-random, Denoising strength: 0.7"
    )


def test_txt2img_parameters_have_no_strength_and_no_negative_line():
    req = ImageRequest("a cat", 25, 3.0, "k_euler_a", 64, 64, seed=1)
    assert metadata.a1111_parameters(req, MODEL) == (
        "a cat\nSteps: 25, Sampler: Euler a, CFG scale: 3, Seed: 1, Size: 64x64, Model hash: 0123456789, Model: tiny-random"
    )
    assert metadata.sd_metadata(req, MODEL, 25, 25)["image"]["type"] == "txt2img"


def test_command_log_lists_each_file(tmp_path):
    (tmp_path / "img-samples").mkdir()
    outputs.append_log(tmp_path, '"a" -s 1', tmp_path / "img-samples" / "000001.1.png")
    outputs.append_log(tmp_path, '"b" -s 2', tmp_path / "img-samples" / "000002.2.png")
    lines = (tmp_path / "img-samples" / "invoke_log.md").read_text().splitlines()
    assert len(lines) == 2 and '`000002.2.png`: `"b" -s 2`' in lines[1]
