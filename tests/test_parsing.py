"""Pure tests of the switch table, the parser and the command written back."""

from __future__ import annotations

import pytest
from conftest import DEFAULTS

from invoke_shell.errors import UsageError
from invoke_shell.line.parsing import format_request, parse_line
from invoke_shell.line.requests import ImageRequest, LineRequest, ShellCommand, expand
from invoke_shell.line.switches import BY_SHORT, SWITCHES, help_text


@pytest.mark.parametrize(
    "line, expected",
    [
        (
            '"fire" -s10 -W384 -H384 -S1592514025 -I drawings/fire.png -f 0.7',
            dict(
                prompt="fire",
                steps=10,
                width=384,
                height=384,
                seed=1592514025,
                init_img="drawings/fire.png",
                strength=0.7,
            ),
        ),
        (
            "a red circle on a blue background -s 25 -S 42",
            dict(prompt="a red circle on a blue background", steps=25, seed=42),
        ),
        ("bare prompt", dict(prompt="bare prompt", steps=6, seed=None, sampler="k_lms", cfg_scale=7.5)),
        ("x --steps=12 --seed 7 --cfg_scale 3 --sampler ddim", dict(steps=12, seed=7, cfg_scale=3.0, sampler="ddim")),
        ("x --iterations 3 --width 128 --height 96 --outdir o", dict(iterations=3, width=128, height=96, outdir="o")),
        ("x --init_img a.png --strength 0.3", dict(init_img="a.png", strength=0.3)),
        ("x -S-1", dict(seed=-1)),
        ("x -S -2", dict(seed=-2)),
        ("a dog's toy -C2.5", dict(prompt="a dog's toy", cfg_scale=2.5)),
        ("'single quoted' -n2", dict(prompt="single quoted", iterations=2)),
        ('x -I "my drawings/fire.png"', dict(init_img="my drawings/fire.png")),
        ("x-ray of a well-made  cat", dict(prompt="x-ray of a well-made cat")),
        ("x -f 0", dict(strength=0.0)),
        ("x -A DDIM -I a.png --resize_mode Crop", dict(sampler="ddim", resize_mode="crop")),
        ("x -C 0", dict(cfg_scale=0.0)),
    ],
)
def test_good_lines(line, expected):
    req = parse_line(line, DEFAULTS)
    assert isinstance(req, LineRequest)
    for key, value in expected.items():
        assert getattr(req, key) == value, key


@pytest.mark.parametrize(
    "line, message, hint",
    [
        ('"fire -s 10', "unbalanced quote", 'close the prompt with "'),
        ("x --strenght 0.5", "unknown switch --strenght", "did you mean --strength?"),
        ("x -q 3", "unknown switch -q", "!help"),
        ("x -I a.png -f 0.5,0 --exact_steps", "--exact_steps at strength 0", "give -f above 0"),
        ("x -w 64", "unknown switch -w", "did you mean -W"),
        ("x -f 1.5", "-f/--strength must be between 0 and 1, got 1.5", "-f 0.75"),
        ("x -s 0", "-s/--steps must be between 1 and 1000, got 0", "-s 25"),
        ("x -s ten", "-s/--steps expects a whole number, got 'ten'", "-s 25"),
        ("x -C lots", "-C/--cfg_scale expects a number, got 'lots'", None),
        ("x -C nan", "expects a finite number", None),
        ("x -A k_lmss", "unknown sampler 'k_lmss'", "did you mean k_lms?"),
        (
            "x -f 0.2,0.5,0.8",
            "-f 0.2,0.5,0.8 sweeps how an init image is redrawn, and this line has none",
            "add -I FILE",
        ),
        ("x -W 65", "--width must be a multiple of 8, got 65", "use 64 or 72"),
        ("x -s", "-s/--steps needs a value", "-s 25"),
        ("-s 10", "the line has no prompt", None),
        ("[blurry] -S 3", "the line has no prompt, only a [negative] or a LoRA tag", "a red circle [blurry]"),
        ("a cat [blurry", "unbalanced [ ]", None),
        ('x -I "open', "unbalanced quote among the switches", None),
        ("x -s 10 stray", "unexpected 'stray' after the switches", "put the whole prompt first"),
        ("x -I my doodle.png", "unexpected 'doodle.png'", 'a path with spaces goes in quotes: -I "my doodle.png"'),
    ],
)
def test_bad_lines_name_the_problem_and_the_fix(line, message, hint):
    with pytest.raises(UsageError) as err:
        parse_line(line, DEFAULTS)
    assert message in err.value.message
    if hint:
        assert hint in err.value.hint


def test_negative_prompt_in_brackets():
    req = parse_line("a red circle [blurry] on blue [dark, noisy] -s 5", DEFAULTS)
    assert req.positive == "a red circle on blue"
    assert req.negative == "blurry, dark, noisy"


def test_commands_and_blank_lines():
    assert parse_line("!fetch some.png", DEFAULTS) == ShellCommand("fetch", "some.png")
    assert parse_line("   ", DEFAULTS) is None
    assert parse_line("# a comment", DEFAULTS) is None


def test_model_defaults_fill_what_the_line_leaves_out():
    req = parse_line("x", {**DEFAULTS, "steps": 25, "sampler": "ddim", "strength": 0.5})
    assert (req.steps, req.sampler, req.strength) == (25, "ddim", 0.5)


def test_written_command_shape():
    req = ImageRequest("a red circle [blurry]", 10, 7.5, "k_lms", 64, 64, seed=42)
    assert format_request(req) == '"a red circle [blurry]" -s 10 -S 42 -W 64 -H 64 -C 7.5 -A k_lms'
    img = req.with_(init_img="in put.png", strength=0.7)
    assert format_request(img).endswith("-A k_lms -I 'in put.png' -f 0.7")


@pytest.mark.parametrize(
    "req",
    [
        ImageRequest("a red circle [blurry]", 10, 7.5, "k_lms", 64, 64, seed=42),
        ImageRequest('it\'s "quoted"', 50, 0.0, "dpmpp_2m_karras", 512, 768, seed=2**32 - 1),
        ImageRequest('say "hi"', 3, 12.25, "ddim", 64, 64, seed=0, init_img="dir with space/a.png", strength=0.33),
        ImageRequest("x", 1, 1.0, "unipc", 8, 4096, seed=1, init_img="a.png", strength=1.0),
    ],
)
def test_parse_of_written_command_gives_back_the_request(req):
    line = parse_line(format_request(req), DEFAULTS)
    assert expand(line, line.seed, line.init_img, new_seed=lambda: 0) == [req]


def test_switch_table_is_complete_and_drives_help():
    longs = {s.name for s in SWITCHES}
    assert {
        "steps",
        "seed",
        "iterations",
        "width",
        "height",
        "cfg_scale",
        "sampler",
        "init_img",
        "strength",
        "outdir",
    } <= longs
    assert len(BY_SHORT) == len([s for s in SWITCHES if s.short])  # no short form used twice
    text = help_text()
    for s in SWITCHES:
        assert f"--{s.name}" in text and s.help in text


def test_strength_without_an_init_image_is_accepted_with_a_note_that_it_is_not_used():
    notes: list[str] = []
    req = parse_line("a red circle -f 0.3 --exact_steps", {}, notes)
    assert req is not None and req.init_img is None
    assert notes == [
        "-f/--strength sets how an init image (-I) is redrawn; this line has none, so it is not used",
        "--exact_steps sets how an init image (-I) is redrawn; this line has none, so it is not used",
    ]
    for used in ("a red circle -f 0.3 -I x.png", "a red circle -f 0.3 --hires_fix"):
        notes.clear()
        parse_line(used, {}, notes)
        assert notes == []


def test_did_you_mean_offers_the_one_name_a_word_starts():
    from invoke_shell.errors import did_you_mean

    assert did_you_mean("tiny", ["tiny-shapes", "sd-1.5"]) == "tiny-shapes"  # !switch tiny
    assert did_you_mean("tiny", ["tiny-shapes", "tiny-random"]) is None  # two names start so: neither
    assert did_you_mean("k_eular", ["k_euler", "k_euler_a"]) == "k_euler"  # a misspelling, as before


def test_intermediates_decode_without_saved_steps_gets_a_note():
    notes: list[str] = []
    parse_line("a red circle --intermediates_decode vae", {}, notes)
    assert notes == [
        "--intermediates_decode sets how the step files of --save_intermediates N are drawn; "
        "this line saves none, so it is not used"
    ]
    notes.clear()
    parse_line("a red circle --intermediates_decode vae --save_intermediates 5", {}, notes)
    assert notes == []
