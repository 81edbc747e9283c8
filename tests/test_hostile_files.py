"""Hostile and broken files: PNG metadata for !fetch, and init images.

Nothing read from a file reaches the terminal unescaped, no value from foreign metadata can
carry a switch, and each bad file is one message naming it while the shell carries on.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import DEFAULTS
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from invoke_shell.errors import UsageError, escaped
from invoke_shell.files.fetch import MAX_CHUNK, fetch, listing
from invoke_shell.files.inputs import check_init_path, load_init_image
from invoke_shell.shell.commands import run_command

ESCAPES = "\x1b]0;pwned\x07\x1b[2J\x1b[31m"  # set the title, clear the screen, turn red


def png(path, zip=False, size=(8, 8), **chunks):
    info = PngInfo()
    for k, v in chunks.items():
        info.add_text(k.replace("_", "-"), v, zip=zip)
    Image.new("RGB", size, (90, 90, 90)).save(path, pnginfo=info)
    return path


def refused(path) -> str:
    with pytest.raises(UsageError) as err:
        fetch(path, DEFAULTS)
    return err.value.message


def sd_metadata(**image) -> str:
    return json.dumps({"model": "stable diffusion", "image": {"prompt": "fire", "steps": 10, "seed": 5, **image}})


def assert_clean(lines):
    for line in lines:
        assert not any(c in line for c in "\x1b\x07\x9b"), repr(line)


# ---------------------------------------------------------------- !fetch


def test_escape_sequences_are_shown_escaped_in_a_listing(tmp_path):
    good = png(tmp_path / "a.png", Dream='"x" -s 3 -S 1')
    dream = png(tmp_path / "b.png", Dream=ESCAPES)
    a1111 = png(tmp_path / "c.png", zip=True, parameters=f"a cat{ESCAPES}\nSteps: 5, Seed: 1")
    json_prompt = png(tmp_path / "d.png", sd_metadata=sd_metadata(prompt=f"fire{ESCAPES}"))
    named = png(tmp_path / "e\x1b[2J.png", Dream='"y" -s 3 -S 2')
    lines = list(listing([good, dream, a1111, json_prompt, named], DEFAULTS))
    assert_clean(lines)
    assert lines[0] == f'{good}: "x" -s 3 -S 1 -W 64 -H 64 -C 7.5 -A k_lms'
    assert lines[1].startswith(f"{dream}: its Dream ") and "control character '\\x1b'" in lines[1]
    assert lines[2].startswith(f"{a1111}: ") and "control character '\\x1b'" in lines[2]
    assert lines[3].startswith(f"{json_prompt}: ") and "control character '\\x1b'" in lines[3]
    assert lines[4] == f'{tmp_path}/e\\x1b[2J.png: "y" -s 3 -S 2 -W 64 -H 64 -C 7.5 -A k_lms'


def test_fetch_command_prints_nothing_raw_and_the_listing_goes_on(tmp_path):
    png(tmp_path / "1.png", Dream='"x" -s 3 -S 1')
    png(tmp_path / "2.png", Dream=ESCAPES)
    (tmp_path / "3.png").write_bytes(b"\x00\xff\x1b[2J garbage")
    png(tmp_path / "4.png", sd_metadata="[1, 2]")
    png(tmp_path / "5.png", parameters="x\nSteps: 5 -o /some/path")
    png(tmp_path / "6.png", Dream='"z" -s 4 -S 2')
    lines: list[str] = []
    host = SimpleNamespace(model_entry=SimpleNamespace(defaults=DEFAULTS), print=lines.append, edit=lines.append)
    run_command(host, "fetch", str(tmp_path))
    assert_clean(lines)
    assert len(lines) == 7 and lines[-1] == ">> 6 file(s); !fetch one of them to edit its command"
    assert all(line.startswith(str(tmp_path / f"{i}.png")) for i, line in enumerate(lines[:6], 1))
    assert lines[0].endswith('"x" -s 3 -S 1 -W 64 -H 64 -C 7.5 -A k_lms')
    assert "is not an image Pillow can read" in lines[2]
    assert "sd-metadata chunk is JSON but not InvokeAI's" in lines[3]
    assert "Steps is unusable" in lines[4]
    assert lines[5].endswith('"z" -s 4 -S 2 -W 64 -H 64 -C 7.5 -A k_lms')


def test_a_smuggled_switch_in_a1111_steps_is_refused_naming_steps(tmp_path):
    p = png(tmp_path / "a.png", parameters="a cat\nSteps: 5 -o /some/path, Seed: 1, Size: 64x64")
    assert refused(p) == (
        f"{p}: its parameters Steps is unusable: -s/--steps expects a whole number, got '5 -o /some/path'"
    )
    p = png(tmp_path / "b.png", parameters="a cat\nSteps: 5, Seed: 1, Size: 64x64 -o /x")
    assert "its parameters Size is unusable" in refused(p)


def test_a_smuggled_switch_in_sd_metadata_is_refused_and_numbers_as_text_are_read(tmp_path):
    p = png(tmp_path / "a.png", sd_metadata=sd_metadata(steps="5 -o /some/path"))
    assert (
        refused(p)
        == f"{p}: its sd-metadata steps is unusable: -s/--steps expects a whole number, got '5 -o /some/path'"
    )
    p = png(tmp_path / "b.png", sd_metadata=sd_metadata(steps="7", cfg_scale="6.5"))
    assert fetch(p, DEFAULTS).command == '"fire" -s 7 -S 5 -W 64 -H 64 -C 6.5 -A k_lms'
    p = png(tmp_path / "c.png", sd_metadata=sd_metadata(variations=[{"seed": "1:0.5,2", "weight": 0.1}]))
    assert "its sd-metadata variations hold" in refused(p)
    p = png(tmp_path / "d.png", sd_metadata=sd_metadata(init_image_path="in put.png -o /x", strength=0.5))
    assert fetch(p, DEFAULTS).request.init_img == "in put.png -o /x"  # one path, quoted: no switch
    assert fetch(p, DEFAULTS).request.outdir is None


def test_a_dream_command_is_parsed_and_holds_one_image_only(tmp_path):
    p = png(tmp_path / "a.png", Dream='"x" -s 3 -S 1 -o /some/path -n 4 -g')
    got = fetch(p, DEFAULTS)
    assert got.command == '"x" -s 3 -S 1 -W 64 -H 64 -C 7.5 -A k_lms'
    assert "its Dream command also sets -o/--outdir; left out (a PNG records one image)" in got.notes
    assert any("-n/--iterations" in n for n in got.notes)
    message = refused(png(tmp_path / "b.png", Dream='"x" -s 3 ; rm -rf ~'))
    assert message == f"{tmp_path / 'b.png'}: its Dream command does not parse here: unexpected ';' after the switches"
    assert "seed -1, not a seed an image was made with" in refused(png(tmp_path / "c.png", Dream='"x" -S -1'))
    assert "not a generation command" in refused(png(tmp_path / "d.png", Dream="!switch other"))
    # a refused Dream falls back to the next chunk, and says so
    got = fetch(png(tmp_path / "e.png", Dream=ESCAPES, sd_metadata=sd_metadata()), DEFAULTS)
    assert got.command == '"fire" -s 10 -S 5 -W 64 -H 64 -C 7.5 -A k_lms'
    assert got.notes[0].startswith("its Dream ") and got.notes[0].endswith("; the command is from sd-metadata instead")
    assert "\\x1b" in got.notes[0]
    assert_clean(got.notes)


def test_oversized_chunks_are_refused(tmp_path):
    big = png(tmp_path / "big.png", Dream='"x" ' + "y" * 10 * 2**20)
    assert refused(big) == f"{big}: its Dream chunk is 10,485,764 characters, more than the 65,536 metadata takes"
    over = png(tmp_path / "over.png", zip=True, parameters="z" * (MAX_CHUNK + 1))
    assert "its parameters chunk is 65,537 characters" in refused(over)
    bomb = png(tmp_path / "bomb.png", zip=True, sd_metadata="{" + " " * 10 * 2**20 + "}")
    assert refused(bomb) == (
        f"{bomb} has a compressed text chunk that inflates past 1,048,576 bytes (a decompression bomb?)"
    )


def test_compressed_chunks_are_read(tmp_path):
    p = png(tmp_path / "z.png", zip=True, Dream='"zipped" -s 3 -S 1')
    assert fetch(p, DEFAULTS).command == '"zipped" -s 3 -S 1 -W 64 -H 64 -C 7.5 -A k_lms'
    info = PngInfo()
    info.add_itxt("sd-metadata", sd_metadata(prompt="fuego é"), zip=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "i.png", pnginfo=info)
    assert fetch(tmp_path / "i.png", DEFAULTS).command == '"fuego é" -s 10 -S 5 -W 64 -H 64 -C 7.5 -A k_lms'


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ("[1, 2]", "its sd-metadata chunk is JSON but not InvokeAI's (no image record)"),
        ('{"image": [1]}', "its sd-metadata chunk is JSON but not InvokeAI's (no image record)"),
        ("{not json", "its sd-metadata chunk is not JSON"),
        ("[" * 60_000, "its sd-metadata chunk is not JSON"),  # nested past the recursion limit
        (sd_metadata(prompt=5), "its sd-metadata prompt is not text: 5"),
        (sd_metadata(prompt=[{"prompt": "a", "weight": "x"}]), "its sd-metadata prompt list holds"),
        (sd_metadata(steps=[5]), "its sd-metadata steps is not a value: [5]"),
        (sd_metadata(steps=True), "its sd-metadata steps is not a value: True"),
        (sd_metadata(sampler=["ddim"]), "its sd-metadata sampler is not text"),
        (sd_metadata(seed=2**40), "its sd-metadata seed is unusable: -S/--seed must be between"),
        (sd_metadata(width=65), "its sd-metadata chunk does not make a command: --width must be a multiple of 8"),
        (sd_metadata(negative_prompt={"a": 1}), "its sd-metadata negative_prompt is not text"),
    ],
)
def test_wrongly_typed_sd_metadata_gives_one_message(tmp_path, meta, message):
    p = png(tmp_path / "w.png", sd_metadata=meta)
    got = refused(p)
    assert got.startswith(f"{p}: {message}"), got


def test_unreadable_files_in_fetch(tmp_path):
    full = png(tmp_path / "full.png", size=(64, 64))
    (tmp_path / "cut.png").write_bytes(full.read_bytes()[:-40])  # no metadata before the pixels
    assert "cut.png is damaged or cut short" in refused(tmp_path / "cut.png")
    kept = png(tmp_path / "kept.png", size=(64, 64), Dream='"kept" -s 3 -S 1')
    (tmp_path / "kept_cut.png").write_bytes(kept.read_bytes()[:-40])  # metadata comes first: still read
    assert fetch(tmp_path / "kept_cut.png", DEFAULTS).command.startswith('"kept"')
    assert "carries no generation metadata" in refused(png(tmp_path / "none.png"))


def test_long_metadata_gives_short_output(tmp_path):
    settings = ", ".join(f"Key{i}: {'v' * 300}" for i in range(150))
    got = fetch(png(tmp_path / "keys.png", parameters=f"x\nSteps: 5, Seed: 1, {settings}"), DEFAULTS)
    assert got.command == '"x" -s 5 -S 1 -W 64 -H 64 -C 7.5 -A k_lms'
    assert len(got.notes) == 13 and got.notes[-1] == "and 138 more settings with no equivalent here"
    assert all(len(n) <= 200 for n in got.notes)
    p = png(tmp_path / "long.png", parameters=f"{'a ' * 30000}\nSteps: 5")
    (line,) = listing([p], DEFAULTS)  # refused for its length, or shown cut short: never 60 KB
    assert line.startswith(f"{p}: ") and len(line) <= len(str(p)) + 2 + 300


# ---------------------------------------------------------------- init images


def init_error(path) -> str:
    with pytest.raises(UsageError) as err:
        load_init_image(str(path), 64, 64)
    return err.value.show()


def test_broken_init_images_give_one_message_each(tmp_path):
    rng = np.random.default_rng(0)
    picture = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    picture.save(tmp_path / "full.png")
    picture.save(tmp_path / "full.jpg")
    (tmp_path / "cut.png").write_bytes((tmp_path / "full.png").read_bytes()[:5000])
    (tmp_path / "cut.jpg").write_bytes((tmp_path / "full.jpg").read_bytes()[:1000])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.png").write_text("this is not a picture\n")
    (tmp_path / "noise.png").write_bytes(bytes(rng.integers(0, 255, 3000, dtype=np.uint8)))
    Image.new("RGB", (1, 1)).save(tmp_path / "dot.png")
    (tmp_path / "folder").mkdir()
    cases = {
        "missing.png": "does not exist\n  hint: check the path after -I (tab completes paths)",
        "folder": "is a folder\n  hint: give one image file after -I",
        "empty.png": "is empty (0 bytes)\n  hint: the file was not saved completely: save or copy it again",
        "cut.png": "is damaged or cut short (Truncated File Read)\n  hint: save or copy the picture again",
        "cut.jpg": "is damaged or cut short (image file is truncated",
        "notes.png": "is not an image: it holds text\n  hint: use a PNG, JPEG or WebP file",
        "noise.png": "is not an image Pillow can read\n  hint: use a PNG, JPEG or WebP file",
        "dot.png": "is 1x1 pixels, too small to start from\n  hint: give a picture at least 8x8",
    }
    for name, message in cases.items():
        assert init_error(tmp_path / name).startswith(f"error: init image {tmp_path / name} {message}"), name


def test_decompression_bombs_are_refused_without_a_warning(tmp_path, monkeypatch, recwarn):
    # 20000x20000 in its header, a few bytes of pixels: refused from the header alone
    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    ihdr = struct.pack(">II", 20000, 20000) + data[24:29]
    data[16:33] = ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    (tmp_path / "huge.png").write_bytes(bytes(data))
    assert init_error(tmp_path / "huge.png").startswith(
        f"error: init image {tmp_path / 'huge.png'} has 400,000,000 pixels, more than the 89,478,485 that are safe "
        "to open (it could be a decompression bomb)\n  hint: scale it down first"
    )
    # between Pillow's limit and twice it Pillow only warns: refused all the same
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    Image.new("RGB", (40, 40)).save(tmp_path / "warns.png")
    assert "has 1,600 pixels, more than the 1,000 that are safe to open" in init_error(tmp_path / "warns.png")
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


def test_odd_file_names_load_and_are_named_escaped(tmp_path):
    Image.new("RGB", (64, 64), (1, 2, 3)).save(tmp_path / "my \"quoted\" 'pic'.png")
    image, note = load_init_image(str(tmp_path / "my \"quoted\" 'pic'.png"), 64, 64)
    assert note is None and image.getpixel((0, 0)) == (1, 2, 3)
    raw = os.fsencode(str(tmp_path)) + b"/caf\xe9.png"  # not UTF-8: a surrogate escape in the str
    Image.new("RGB", (64, 64), (4, 5, 6)).save(raw)
    image, _ = load_init_image(os.fsdecode(raw), 64, 64)
    assert image.getpixel((0, 0)) == (4, 5, 6)
    message = init_error(os.fsdecode(raw[:-4] + b"x.png"))
    assert f"init image {tmp_path}/caf\\udce9x.png does not exist" in message
    message.encode("utf-8")  # printable on any UTF-8 terminal: no lone surrogates
    assert escaped("a\x1b[2Jb\u202e\udcff") == "a\\x1b[2Jb\\u202e\\udcff"


def test_exif_rotation_is_applied(tmp_path):
    side = np.zeros((16, 40, 3), np.uint8)
    side[:, :20] = (255, 0, 0)  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: show it rotated 90 degrees clockwise
    Image.fromarray(side).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    image, note = load_init_image(str(tmp_path / "phone.jpg"), 16, 40)
    assert note is None and image.size == (16, 40)
    assert image.getpixel((8, 5))[0] > 200 and image.getpixel((8, 35))[0] < 50  # red on top now


def test_sixteen_bit_grey_is_scaled_to_eight_bits(tmp_path):
    Image.fromarray(np.full((16, 16), 32768, np.uint16)).save(tmp_path / "grey16.png")
    assert Image.open(tmp_path / "grey16.png").mode == "I;16"
    image, _ = load_init_image(str(tmp_path / "grey16.png"), 16, 16)
    assert image.getpixel((0, 0)) == (128, 128, 128)
    Image.new("I", (16, 16), 65535).save(tmp_path / "grey32.tif")
    image, _ = load_init_image(str(tmp_path / "grey32.tif"), 16, 16)
    assert image.getpixel((0, 0)) == (255, 255, 255)


def test_transparency_keeps_the_underlying_colour_and_says_so(tmp_path):
    pal = Image.new("P", (16, 16), 0)
    pal.putpalette([10, 200, 30, 200, 0, 0])
    pal.putpixel((0, 0), 1)
    pal.save(tmp_path / "pal.png", transparency=0)
    image, note = load_init_image(str(tmp_path / "pal.png"), 16, 16)
    assert image.getpixel((5, 5)) == (10, 200, 30) and image.getpixel((0, 0)) == (200, 0, 0)
    assert note == (
        "init image has transparent pixels: they are repainted (100 % of the picture) starting from "
        "the colour under them, the rest is kept"
    )

    la = Image.merge("LA", [Image.new("L", (16, 16), 77), Image.new("L", (16, 16), 128)])
    la.save(tmp_path / "la.png")
    image, note = load_init_image(str(tmp_path / "la.png"), 32, 32)
    assert image.getpixel((3, 3)) == (77, 77, 77)
    assert note is not None and note.startswith("init image resized from 16x16 to 32x32; init image has transparent")

    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[:8] = (0, 0, 255, 255)  # top half opaque blue, bottom half erased to transparent black
    Image.fromarray(rgba, "RGBA").save(tmp_path / "cut_out.png")
    image, note = load_init_image(str(tmp_path / "cut_out.png"), 16, 16)
    assert image.getpixel((0, 0)) == (0, 0, 255) and image.getpixel((0, 15)) == (0, 0, 0)
    assert note is not None and "whose colour was erased (black under them)" in note


def test_cmyk_webp_and_gif_load_as_shown(tmp_path):
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "print.jpg", quality=100)
    image, _ = load_init_image(str(tmp_path / "print.jpg"), 16, 16)
    r, g, b = image.getpixel((8, 8))
    assert r > 240 and g < 15 and b < 15
    Image.new("RGB", (16, 16), (0, 128, 255)).save(tmp_path / "web.webp", lossless=True)
    assert load_init_image(str(tmp_path / "web.webp"), 16, 16)[0].getpixel((3, 3)) == (0, 128, 255)
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    image, note = load_init_image(str(tmp_path / "anim.gif"), 16, 16)
    assert image.getpixel((8, 8)) == (255, 0, 0)
    assert note == "init image is animated: its first frame is used"


def test_check_init_path_refuses_early(tmp_path):
    (tmp_path / "x.png").write_bytes(b"")
    with pytest.raises(UsageError, match="is empty"):
        check_init_path(str(tmp_path / "x.png"))


def test_a_bare_number_after_dash_i_is_told_how_to_recall_an_image(tmp_path, monkeypatch):
    """`-I 1` meant as "my first image": the hint names recall, which counts back."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError) as e:
        check_init_path("1")
    assert e.value.message == "init image 1 does not exist"
    assert e.value.hint.startswith("images made this session are counted back: -I -1 is the last one")


def test_a_broken_init_image_keeps_the_shell_and_model(make_shell, tmp_path):
    shell = make_shell()
    Image.new("RGB", (64, 64), (200, 20, 20)).save(tmp_path / "full.jpg")
    (tmp_path / "cut.jpg").write_bytes((tmp_path / "full.jpg").read_bytes()[:300])  # passes the quick check
    shell.handle(f"x -I {tmp_path / 'cut.jpg'} -f 0.5 -s 2 -S 1")
    errors = [line for line in shell.lines if line.startswith("error:")]
    assert len(errors) == 1 and f"init image {tmp_path / 'cut.jpg'} is damaged or cut short" in errors[0]
    shell.handle(f"x -I {tmp_path / 'full.jpg'} -f 0.5 -s 2 -S 2")
    assert (tmp_path / "out" / "img-samples" / "000001.2.png").exists()
