"""Small fixes, each with the test that would have caught it."""

from __future__ import annotations

import logging

import pytest
from conftest import DEFAULTS, open_shell
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from invoke_shell.errors import UsageError
from invoke_shell.files.fetch import fetch
from invoke_shell.line.parsing import parse_line
from invoke_shell.line.requests import LineRequest, ShellCommand


@pytest.mark.parametrize("line", ["help", "?", "h", " Help "])
def test_a_bare_help_word_shows_the_help(line):
    assert parse_line(line, DEFAULTS) == ShellCommand("help", "")


def test_help_in_a_longer_prompt_is_still_a_prompt():
    req = parse_line("help me -s 5", DEFAULTS)
    assert isinstance(req, LineRequest) and req.prompt == "help me"


def test_a_sampler_in_the_wrong_case_is_taken_as_its_name():
    assert parse_line("x -A K_EULER", DEFAULTS).sampler == "k_euler"
    with pytest.raises(UsageError) as e:
        parse_line("x -A K_EULAR", DEFAULTS)
    assert e.value.hint.startswith("did you mean k_euler? ")


@pytest.mark.parametrize(
    "line, noted",
    [("x -g", True), ("x --grid -n 1", True), ("x -g -n 2", False), ("x -g -C 3,7", False), ("x -n 2", False)],
)
def test_a_grid_of_one_image_gets_a_note(line, noted):
    notes: list[str] = []
    parse_line(line, DEFAULTS, notes)
    note = "-g/--grid makes a grid of a line's images; this line makes one, so there is no grid"
    assert (note in notes) is noted, notes


def test_dream_switches_this_shell_lacks_are_left_out_with_a_note(tmp_path):
    info = PngInfo()
    info.add_text("Dream", '"a cat" -s 10 -U 2 0.6 -S 42 -G 0.5 --hires_fix -F -A k_euler -C 5')
    path = tmp_path / "invokeai.png"
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    got = fetch(path, DEFAULTS)
    assert got.source == "Dream"
    assert (got.request.prompt, got.request.steps, got.request.seed) == ("a cat", 10, 42)
    assert (got.request.sampler, got.request.cfg_scale) == ("k_euler", 5.0)
    assert got.notes == ["left out: -G 0.5, -F (this shell has no such switches)"]
    # InvokeAI's -U SCALE STRENGTH and --hires_fix are this shell's too: a refining pass at twice the size
    assert (got.request.upscale, got.request.hires_fix) == ((2.0, 0.6), True)


def test_recall_with_no_image_and_a_failed_switch_each_say_once(tiny_config, tmp_path, caplog):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model_index.json").write_text("{not json")  # a folder diffusers fails on: a bug-type error
    config = tmp_path / "models.yaml"
    common = "    width: 64\n    height: 64\n    steps: 6\n    cfg_scale: 7.5\n    sampler: k_lms\n"
    config.write_text(
        "default: tiny\nmodels:\n"
        f"  tiny:\n    description: random weights\n    path: {tiny_config.parent / 'model'}\n{common}"
        f"  gone:\n    description: no weights\n    path: {tmp_path / 'nowhere'}\n{common}"
        f"  bad:\n    description: broken weights\n    path: {bad}\n{common}"
    )
    shell = open_shell(config, tmp_path / "out")
    shell.raise_errors = False  # as in use: a bug is reported, not raised
    try:
        shell.lines.clear()
        shell.handle("x -s 2 -S-1")
        assert shell.lines[-1] == (
            "error: -S -1 looks back 1 image(s), but this session has made 0\n"
            "  hint: make an image first, or give a seed: -S 42"
        )
        for name in ("gone", "bad"):
            shell.lines.clear()
            with caplog.at_level(logging.ERROR, logger="invoke_shell"):
                shell.handle(f"!switch {name}")
            assert len(shell.lines) == 1 and shell.lines[0].startswith("error: "), shell.lines
        tracebacks = [r for r in caplog.records if "Traceback (most recent call last)" in r.getMessage()]
        assert len(tracebacks) == 1  # the bad load, logged once
        assert shell.worker.status().model == "tiny"
    finally:
        shell.close()


def test_the_toolbar_says_busy_while_an_image_is_made():
    from types import SimpleNamespace

    from invoke_shell.shell.repl import status_line

    making = SimpleNamespace(state="ready", last_seed=5, progress=(3, 25), model="m", device="cpu", queued=())
    assert status_line("m", making).startswith(" model m (busy) | device cpu | last seed 5 | queue 0 | running 3/25 #")
    idle = SimpleNamespace(**{**vars(making), "progress": None})
    assert status_line("m", idle) == " model m (ready) | device cpu | last seed 5 | queue 0"
