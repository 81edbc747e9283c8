"""Prompt templates through dynamicprompts: expansion counts and order, picks, wildcards, the
cap, drawn prompts, seeds of each image, labelled sheets read back from their own metadata,
!fetch of one expanded image and of the whole line, completion, and progress over a pipe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from invoke_shell.errors import UsageError
from invoke_shell.line.parsing import parse_line
from invoke_shell.line.requests import expand
from invoke_shell.line.switches import model_defaults
from invoke_shell.line.templates import Templates

DEFAULTS = model_defaults({"steps": 3, "width": 64, "height": 64})


@pytest.fixture
def wildcards(tmp_path: Path) -> Path:
    folder = tmp_path / "wildcards"
    (folder / "art").mkdir(parents=True)
    (folder / "colors.txt").write_text("red\n# a comment line\nblue\n\ngreen\n")
    (folder / "shapes.txt").write_text("circle\nsquare\n")
    (folder / "art" / "styles.txt").write_text("flat\nshaded\n")
    return folder


def library_expansion(template: str, folder: Path) -> list[str]:
    from dynamicprompts.generators import CombinatorialPromptGenerator
    from dynamicprompts.wildcards import WildcardManager

    manager = WildcardManager(folder)
    manager.sort_wildcards = False  # a wildcard's lines in the file's order
    gen = CombinatorialPromptGenerator(wildcard_manager=manager)
    return [" ".join(p.split()) for p in gen.generate(template, max_prompts=None)]


# ---- expansion


@pytest.mark.parametrize(
    "template, count",
    [
        ("a {red|blue} circle on a {white|black} background", 4),
        ("a {red|{dark|light} blue} circle", 3),  # nested groups
        ("a {2$$red|blue|green} circle", 6),  # picks: ordered pairs, as the library makes them
        ("a {1-2$$red|blue} circle", 4),  # a range of picks
        ("a __colors__ __shapes__", 6),  # wildcards, comment and blank lines skipped
        ("a {__colors__|white} __art/styles__ square", 8),  # a wildcard inside a group, a nested path
        ("a {red|blue} (circle)1.3 word+ [blurry, {dark|light}]", 4),  # weighting and negatives pass through
    ],
)
def test_expansions_are_the_librarys_own_in_its_order(template, count, wildcards):
    got = Templates(wildcards).expand(template, max_prompts=100, sample=None, seed=0)
    assert len(got.prompts) == count
    assert list(got.prompts) == library_expansion(template, wildcards)
    for prompt, labels in zip(got.prompts, got.labels):
        assert all(label in prompt or "," in label for label in labels)  # each label is what the prompt holds


def test_a_wildcard_keeps_its_files_order(wildcards):
    # red, blue, green as written: sorted, --random_prompts picks would not come "in the template's order"
    got = Templates(wildcards).expand("a __colors__ circle", 100, None, 0)
    assert got.prompts == ("a red circle", "a blue circle", "a green circle")


def test_groups_are_the_axes_first_group_slowest(wildcards):
    got = Templates(wildcards).expand("a {red|blue} circle on a __shapes__", 100, None, 0)
    assert got.axes == (("{red|blue}", ("red", "blue")), ("__shapes__", ("circle", "square")))
    assert got.prompts == (
        "a red circle on a circle",
        "a red circle on a square",
        "a blue circle on a circle",
        "a blue circle on a square",
    )
    assert got.labels[1] == ("red", "square")


def test_weighting_and_negative_syntax_survive_expansion(wildcards):
    got = Templates(wildcards).expand("a {red|blue}+ (circle)1.3 [{blurry|dark}]", 100, None, 0)
    assert got.prompts[1] == "a red+ (circle)1.3 [dark]"
    line = parse_line('"a {red|blue}+ (circle)1.3 [{blurry|dark}]" -S 5', DEFAULTS)
    images = expand(line, 5, None, lambda: 0, prompts=got.prompts)
    assert [(im.positive, im.negative) for im in images] == [
        ("a red+ (circle)1.3", "blurry"),
        ("a red+ (circle)1.3", "dark"),
        ("a blue+ (circle)1.3", "blurry"),
        ("a blue+ (circle)1.3", "dark"),
    ]


def test_the_cap_names_the_count_and_the_ways_out(wildcards):
    templates = Templates(wildcards)
    with pytest.raises(UsageError) as e:
        templates.expand("{a|b|c} {d|e|f} {g|h|i} {j|k|l} {m|n|o}", max_prompts=100, sample=None, seed=0)
    assert e.value.message == "the prompt template makes 243 prompts; this line allows 100 (--max_prompts)"
    assert "--random_prompts N" in e.value.hint
    assert len(templates.expand("{a|b|c} {d|e|f} {g|h|i} {j|k|l} {m|n|o}", 243, None, 0).prompts) == 243


def test_drawn_prompts_are_reproducible_distinct_and_in_order(wildcards):
    templates = Templates(wildcards)
    template = "a {red|blue|green|yellow} {circle|square|triangle} on {white|black}"
    first = templates.expand(template, 100, sample=5, seed=42)
    again = templates.expand(template, 100, sample=5, seed=42)
    other = templates.expand(template, 100, sample=5, seed=43)
    everything = templates.expand(template, 100, None, 0).prompts
    assert first == again and first.prompts != other.prompts
    assert len(set(first.prompts)) == 5
    assert sorted(first.prompts, key=everything.index) == list(first.prompts)  # in the template's order
    assert first.axes == ()  # not a whole product: a sheet of labelled tiles
    all_of_them = templates.expand("a {red|blue}", 100, sample=9, seed=1)
    assert all_of_them.prompts == ("a red", "a blue") and "only 2 prompt(s)" in (all_of_them.note or "")


def test_a_template_with_variables_is_expanded_whole(wildcards):
    template = "${c={red|blue}} a ${c} circle and a ${c} square"  # each ${c} chooses again
    got = Templates(wildcards).expand(template, 100, None, 0)
    assert list(got.prompts) == library_expansion(template, wildcards)
    assert got.prompts[1] == "a red circle and a blue square"
    assert got.axes == () and got.labels == tuple((p,) for p in got.prompts)


@pytest.mark.parametrize(
    "folder_kind, line, message",
    [
        ("given", "a __colours__ circle", "no wildcard '__colours__' in"),
        ("none", "a __colors__ circle", "'__colors__' is a wildcard, but no wildcards folder is set"),
        ("missing", "a __colors__ circle", "but the wildcards folder"),
    ],
)
def test_missing_wildcards_name_the_fix(folder_kind, line, message, wildcards):
    folder = {"given": wildcards, "none": None, "missing": wildcards / "nope"}[folder_kind]
    with pytest.raises(UsageError) as e:
        Templates(folder).expand(line, 100, None, 0)
    assert message in e.value.message
    if folder_kind == "given":
        assert e.value.hint.startswith("did you mean __colors__?")
    else:
        assert "--wildcards DIR" in e.value.hint


@pytest.mark.parametrize(
    "line, message",
    [
        ("a {red|blue circle", "the prompt template cannot be read at column 3"),
        ("a red circle --random_prompts 3", "--random_prompts works on a prompt template"),
        ("a red circle --vary_seed", "--vary_seed works on a prompt template"),
        ("a #1 {red|blue} circle", "'#' starts a comment in a prompt template"),
        ("a {red|blue} circle --max_prompts 0", "--max_prompts must be between 1 and 1000"),
    ],
)
def test_the_parser_refuses_what_cannot_expand(line, message):
    with pytest.raises(UsageError) as e:
        parse_line(line, DEFAULTS)
    assert e.value.message.startswith(message)


def test_prompts_that_are_not_templates_are_untouched():
    line = parse_line("50% off a red circle, $5 #1", DEFAULTS)
    assert line.prompt == "50% off a red circle, $5 #1"


# ---- seeds of each image


def test_each_expansion_has_the_lines_seed_or_with_vary_seed_the_next():
    prompts = ("a red", "a blue", "a green")
    same = expand(parse_line("a {red|blue|green} -S 7 -n 2", DEFAULTS), 7, None, lambda: 0, prompts=prompts)
    assert [(im.prompt, im.seed) for im in same] == [
        ("a red", 7), ("a red", 8), ("a blue", 7), ("a blue", 8), ("a green", 7), ("a green", 8),
    ]  # fmt: skip
    varied = expand(
        parse_line("a {red|blue|green} -S 7 -n 2 --vary_seed", DEFAULTS), 7, None, lambda: 0, prompts=prompts
    )
    assert [im.seed for im in varied] == [7, 8, 9, 10, 11, 12]
    assert {im.prompt_template for im in varied} == {"a {red|blue|green}"}


# ---- through a shell with a model


def sheet_layout(path: Path) -> dict:
    return json.loads(Image.open(path).text["invoke-sheet"])


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(np.int16)


def test_a_template_line_makes_each_image_a_labelled_sheet_and_fetch_brings_back_either(make_shell, tmp_path):
    shell = make_shell()
    shell.handle("a {red|blue} circle [{blurry|dark}] -s 3 -S 11")
    out = tmp_path / "out" / "img-samples"
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == ["000001.11.png", "000002.11.png", "000003.11.png", "000004.11.png", "000005.11.prompts.png"]
    assert ">> the template makes 4 prompt(s)" in shell.lines
    first = Image.open(out / "000001.11.png").text
    assert first["Dream"] == '"a red circle [blurry]" -s 3 -S 11 -W 64 -H 64 -C 7.5 -A k_lms'
    assert first["parameters"].startswith("a red circle\nNegative prompt: blurry\n")
    meta = json.loads(first["sd-metadata"])["image"]
    assert meta["prompt"][0]["prompt"] == "a red circle [blurry]"
    assert meta["prompt_template"] == "a {red|blue} circle [{blurry|dark}]"
    assert meta["template_line"] == '"a {red|blue} circle [{blurry|dark}]" -s 3 -S 11 -W 64 -H 64 -C 7.5 -A k_lms'

    layout = sheet_layout(out / "000005.11.prompts.png")  # rows: the first group; columns: the second
    assert layout == {
        "columns": ["blurry", "dark"],
        "rows": ["red", "blue"],
        "files": [["000001.11.png", "000002.11.png"], ["000003.11.png", "000004.11.png"]],
    }
    assert Image.open(out / "000005.11.prompts.png").text["Dream"] == meta["template_line"]

    shell.handle("!fetch " + str(out / "000003.11.png"))  # one expansion: that image again
    assert shell.lines[-1] == '"a blue circle [blurry]" -s 3 -S 11 -W 64 -H 64 -C 7.5 -A k_lms'
    shell.handle(shell.lines[-1])
    assert np.array_equal(pixels(out / "000006.11.png"), pixels(out / "000003.11.png"))
    assert not np.array_equal(pixels(out / "000006.11.png"), pixels(out / "000001.11.png"))

    shell.handle("!fetch --template " + str(out / "000003.11.png"))  # the whole line
    assert shell.lines[-1] == meta["template_line"]
    shell.handle("!fetch --template " + str(out / "000005.11.prompts.png"))  # its sheet: the same line
    assert shell.lines[-1] == meta["template_line"]
    shell.handle("!fetch --template " + str(out / "000006.11.png"))
    assert "000006.11.png was not made from a prompt template" in "\n".join(shell.lines[-2:])


def test_a_template_with_a_sweep_makes_a_prompt_by_value_sheet(make_shell, tmp_path):
    shell = make_shell()
    shell.handle("a {red|blue} circle -s 2 -S 3 -C 3,7 --max_prompts 5 -o there")
    out = tmp_path / "out" / "there" / "img-samples"
    shell.handle("!fetch --template " + str(out / "000002.3.png"))  # the whole line but -o
    assert shell.lines[-1] == '"a {red|blue} circle" -s 2 -S 3 -W 64 -H 64 -A k_lms --max_prompts 5 -C 3.0,7.0'
    assert "sets -o/--outdir; left out (a file does not choose where images go)" in shell.lines[-2]
    layout = sheet_layout(out / "000005.3.prompts.png")
    assert layout["rows"] == ["red", "blue"] and layout["columns"] == ["-C 3.0", "-C 7.0"]
    cfgs = [
        json.loads(Image.open(out / f).text["sd-metadata"])["image"]["cfg_scale"]
        for row in layout["files"]
        for f in row
    ]
    assert cfgs == [3.0, 7.0, 3.0, 7.0]


def test_three_axes_or_drawn_prompts_make_labelled_tiles(make_shell, tmp_path):
    shell = make_shell()
    shell.handle("a {red|blue} {circle|square} on {white|black} -s 2 -S 1 --vary_seed")
    out = tmp_path / "out" / "img-samples"
    sheet = out / "000009.1.prompts.png"
    tiles = [t for row in sheet_layout(sheet)["tiles"] for t in row]
    assert tiles[0] == "red\ncircle\nwhite\n-S 1" and tiles[7] == "blue\nsquare\nblack\n-S 8"
    assert [p.name.split(".")[1] for p in sorted(out.glob("00000?.*.png"))[:8]] == [str(s) for s in range(1, 9)]

    shell.handle("a {red|blue|green} {circle|square} -s 2 -S 4 --random_prompts 2 -t")
    listed = [line for line in shell.lines if line.startswith("   1. ") or line.startswith("   2. ")]
    assert len(listed) == 2  # -t lists the drawn prompts before they run
    sheet = next(out.glob("*.4.prompts.png"))
    tiles = [t for row in sheet_layout(sheet)["tiles"] for t in row]
    prompts = [
        json.loads(Image.open(out / f).text["sd-metadata"])["image"]["prompt"][0]["prompt"]
        for row in sheet_layout(sheet)["files"]
        for f in row
        if f
    ]
    assert [f"a {t.replace(chr(10), ' ')}" for t in tiles] == prompts

    shell.handle("a {red|blue|green} {circle|square} -s 2 -S 6 --random_prompts 3")
    layout = sheet_layout(next(out.glob("*.6.prompts.png")))
    assert [len(row) for row in layout["tiles"]] == [3]  # side by side, as a -g grid of 3: no empty cell


def test_dash_t_lists_ten_expansions_and_the_count(make_shell):
    shell = make_shell()
    shell.handle("a {1|2|3|4|5|6} {x|y} -s 1 -S 2 -t --max_prompts 12")
    at = shell.lines.index(">> the template makes 12 prompt(s):")
    assert shell.lines[at + 1 : at + 3] == ["   1. a 1 x", "   2. a 1 y"]
    assert shell.lines[at + 10] == "   10. a 5 y" and shell.lines[at + 11] == "   ... and 2 more"


def test_completion_offers_wildcard_names_after_two_underscores(wildcards):
    from prompt_toolkit.completion import CompleteEvent
    from prompt_toolkit.document import Document

    from invoke_shell.shell.completion import ShellCompleter

    completer = ShellCompleter(None, lambda: None, Templates(wildcards).names)  # type: ignore[arg-type]
    got = [(c.text, c.start_position) for c in completer.get_completions(Document("a {__co"), CompleteEvent())]
    assert got == [("__colors__", -4)]
    nested = [c.text for c in completer.get_completions(Document("a __"), CompleteEvent())]
    assert nested == ["__art/styles__", "__colors__", "__shapes__"]


def test_progress_over_a_pipe_is_a_line_per_image_on_stderr(tiny_config, tmp_path, wildcards):
    exe = Path(sys.executable).parent / "invoke-shell"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "invoke_shell"]
    args = ["--config", str(tiny_config), "--outdir", str(tmp_path / "o"), "--wildcards", str(wildcards)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        cmd + args, input="a __shapes__ -s 2 -S 9\n", capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    progress = [line for line in proc.stderr.splitlines() if line.startswith(">> image ")]
    assert len(progress) == 2
    assert progress[0].startswith(">> image 1/2: 2 steps in ") and "left" in progress[0]
    assert progress[1].startswith(">> image 2/2: 2 steps in ") and progress[1].endswith("line done")
    assert "000003.9.prompts.png  sheet of 2 images" in proc.stdout


def test_random_prompts_beyond_the_template_says_so_and_as_many_does_not(wildcards):
    templates = Templates(wildcards)
    equal, over = (templates.expand("a {red|blue} circle", 100, n, 0) for n in (2, 5))
    assert equal.note is None and over.note == (
        "--random_prompts 5: the template makes only 2 prompt(s); all of them are made"
    )
    assert equal.axes == over.axes == (("{red|blue}", ("red", "blue")),)  # all of them: a sheet by the group
