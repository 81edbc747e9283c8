"""The shell end to end: a real worker and model, a real PromptSession, the console script."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def test_lines_make_files_and_recall_seeds(make_shell, tmp_path):
    shell = make_shell()
    shell.handle("a red circle -s 4 -S 42")
    shell.handle("a blue square -S 7")
    shell.handle("again -S-2 -A ddim")
    shell.handle("and again -S -2")
    files = sorted((tmp_path / "out" / "img-samples").glob("*.png"))
    assert [f.name for f in files] == ["000001.42.png", "000002.7.png", "000003.42.png", "000004.7.png"]
    assert Image.open(files[2]).text["Dream"] == '"again" -s 6 -S 42 -W 64 -H 64 -C 7.5 -A ddim'


def test_bad_lines_keep_the_shell_and_model(make_shell, tmp_path):
    shell = make_shell()
    shell.handle("first -S 1")
    (tmp_path / "notes.txt").write_text("not an image")
    for bad, expected in [
        ("x --strenght 0.3", "did you mean --strength?"),
        ("x -I missing.png", "init image missing.png does not exist"),
        (f"x -I {tmp_path / 'notes.txt'}", "is not an image"),
        ("x -S-5", "-S -5 looks back 5 image(s), but this session has made 1"),
        ("!nosuch", "unknown command !nosuch"),
    ]:
        shell.lines.clear()
        assert shell.handle(bad) is True
        assert any(expected in line for line in shell.lines), (bad, shell.lines)
    shell.handle("still works -S 2")
    names = sorted(p.name for p in (tmp_path / "out" / "img-samples").glob("*.png"))
    assert names == ["000001.1.png", "000002.2.png"]


def test_img2img_line_reports_steps_and_iterations_count_seeds(make_shell, tmp_path):
    shell = make_shell()
    init = tmp_path / "init.png"
    Image.new("RGB", (128, 96), (200, 20, 20)).save(init)
    shell.handle(f"a thing -I {init} -f 0.7 -s 10 -S 100 -n 3")
    text = "\n".join(shell.lines)
    assert "img2img: 7 of 10 steps (strength 0.70)" in text
    assert "init image resized from 128x96 to 64x64" in text
    names = sorted(p.name for p in (tmp_path / "out" / "img-samples").glob("*.png"))
    assert names == ["000001.100.png", "000002.101.png", "000003.102.png"]
    meta = Image.open(tmp_path / "out" / "img-samples" / "000002.101.png").text
    assert "-S 101" in meta["Dream"] and "-f 0.7" in meta["Dream"]


def test_zero_strength_writes_the_init_image_back(make_shell, tmp_path):
    shell = make_shell()
    init = tmp_path / "init.png"
    pixels = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(init)
    shell.handle(f"x -I {init} -f 0.05 -s 10 -S 1")
    assert any("rounds down to 0 steps" in line for line in shell.lines)
    out = Image.open(tmp_path / "out" / "img-samples" / "000001.1.png")
    assert np.array_equal(np.asarray(out.convert("RGB")), pixels)


def test_ctrl_c_cancels_the_running_image_and_the_next_line_works(make_shell, tmp_path):
    shell = make_shell()
    shell.handle("warm up -s 1 -S 1")

    def press_ctrl_c_once_it_runs():
        end = time.monotonic() + 60
        while shell.worker.status().progress is None and time.monotonic() < end:  # the first step is reported
            time.sleep(0.01)
        shell.worker.cancel_running()

    stopper = threading.Thread(target=press_ctrl_c_once_it_runs)
    stopper.start()
    shell.handle("long one -s 500 -S 2 -n 3")
    stopper.join()
    said = [line for line in shell.lines if "generation cancelled at step" in line]
    assert len(said) == 1 and "; the line's other 2 image(s) were not made; the model is still loaded" in said[0]
    shell.handle("after -S 3")
    names = sorted(p.name for p in (tmp_path / "out" / "img-samples").glob("*.png"))
    assert names == ["000001.1.png", "000002.3.png"]


def test_real_prompt_session_with_pipe_input(make_shell, tmp_path):
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    shell = make_shell()
    history = tmp_path / "history"
    with create_pipe_input() as inp:
        inp.send_text("a red circle -S 5 -s 3\r")
        inp.send_text("x --bad 1\r")  # the validator keeps it in the buffer...
        inp.send_text("\x15quit\r")  # ...so Ctrl-U clears it before leaving
        shell.run_interactive(history, input=inp, output=DummyOutput())
    assert (tmp_path / "out" / "img-samples" / "000001.5.png").exists()
    assert "a red circle -S 5 -s 3" in history.read_text()
    assert "--bad" not in history.read_text()  # never submitted


def test_console_script_on_piped_input(tiny_config, tmp_path):
    exe = Path(sys.executable).parent / "invoke-shell"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "invoke_shell"]
    lines = (
        'a red circle on a blue background -s 4 -S 42\nthis line is bad --no_such_switch 3\n"again [dark]" -S-1 -C 3\n'
    )
    proc = subprocess.run(
        cmd + ["--config", str(tiny_config), "--outdir", str(tmp_path / "o"), "--history", str(tmp_path / "h")],
        input=lines,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 1, proc.stderr  # one line failed
    out = proc.stdout
    assert "error: unknown switch --no_such_switch" in proc.stderr and ">> 1 of 3 line(s) failed" in proc.stderr
    assert "Traceback" not in out + proc.stderr
    first, second = (tmp_path / "o" / "img-samples" / n for n in ("000001.42.png", "000002.42.png"))
    text = Image.open(second).text
    assert text["Dream"] == '"again [dark]" -s 6 -S 42 -W 64 -H 64 -C 3.0 -A k_lms'
    assert '"seed": 42' in text["sd-metadata"] and '"type": "txt2img"' in text["sd-metadata"]
    assert text["parameters"].startswith("again\nNegative prompt: dark\nSteps: 6, Sampler: LMS, CFG scale: 3, Seed: 42")
    assert first.exists()
    log = (tmp_path / "o" / "img-samples" / "invoke_log.md").read_text()
    assert "000002.42.png" in log and "-C 3.0" in log


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--help"], "usage: invoke-shell"),
        (["--device", "tpu"], "invalid choice: 'tpu'"),
        (["--threads", "0"], "argument --threads: must be 1 or more, got 0"),
        (["--threads", "x"], "argument --threads: expects a whole number, got 'x'"),
    ],
)
def test_help_and_bad_flags_answer_without_torch(argv, expected):
    code = (
        "import sys; from invoke_shell.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit: pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')"
    )
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60)
    assert expected in proc.stdout + proc.stderr
    assert proc.stdout.strip().endswith("NO-TORCH")


def test_unknown_model_flag_is_a_clear_error(tiny_config, tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "invoke_shell",
            "--config",
            str(tiny_config),
            "--model",
            "tiny-randm",
            "--outdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        input="",
    )
    assert proc.returncode == 2
    assert "no model named 'tiny-randm'" in proc.stderr and "did you mean tiny-random?" in proc.stderr


def test_from_file_runs_each_line_and_reports_bad_ones_by_number(tiny_config, tmp_path):
    script = tmp_path / "lines.txt"
    script.write_text("# a comment\na red circle -S 1 -s 2\n\nbad -f 2\n'blue' -S 2 -s 2\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "invoke_shell",
            "--config",
            str(tiny_config),
            "--outdir",
            str(tmp_path / "o"),
            "--history",
            str(tmp_path / "h"),
            "--from_file",
            str(script),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        input="",
    )
    assert proc.returncode == 1, proc.stderr  # a line failed, so the script's caller can tell
    assert "lines.txt line 4: error: -f/--strength must be between 0 and 1, got 2" in proc.stderr
    assert proc.stderr.rstrip().endswith(">> 1 of 3 line(s) failed")
    names = sorted(p.name for p in (tmp_path / "o" / "img-samples").glob("*.png"))
    assert names == ["000001.1.png", "000002.2.png"]


def test_a_model_that_does_not_load_fails_the_run_and_is_not_counted_as_a_line(tmp_path):
    config = tmp_path / "models.yaml"
    config.write_text(f"models:\n  gone:\n    path: {tmp_path / 'gone'}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "invoke_shell", "--config", str(config), "--outdir", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=120,
        input="a red circle -S 1\n",
    )
    assert proc.returncode == 1, proc.stderr
    assert f"error: model 'gone': {tmp_path / 'gone'} does not exist" in proc.stderr
    assert proc.stderr.rstrip().endswith(">> 1 of 1 line(s) failed")


def test_a_problem_wider_than_the_terminal_is_written_in_full_above_the_prompt():
    """The line under the prompt is one row: a long problem (the samplers there are) is cut
    there, so it is also written whole above the prompt, hint included."""
    from prompt_toolkit.document import Document
    from prompt_toolkit.validation import ValidationError

    from invoke_shell.shell.validator import LineValidator

    shown: list[str] = []
    validator = LineValidator(lambda: {}, lambda: 60, shown.append)
    with pytest.raises(ValidationError) as e:
        validator.validate(Document("a red circle -A k_foo"))
    assert len(e.value.message) <= 60 and e.value.message.endswith("... (see above)")
    assert len(shown) == 1 and shown[0].startswith("error: ") and "unipc" in shown[0]
    with pytest.raises(ValidationError) as e:
        LineValidator(lambda: {}, lambda: 400, shown.append).validate(Document("a red circle -A k_foo"))
    assert "unipc" in e.value.message and len(shown) == 1  # it fits: under the line only


def test_replay_and_show_say_whether_a_path_is_missing_or_is_not_a_file(make_shell, tmp_path):
    shell = make_shell()
    shell.handle(f"!replay {tmp_path / 'nofile.txt'}")
    shell.handle(f"!replay {tmp_path}")
    shell.handle(f"!show {tmp_path / 'nothing.png'}")
    errors = [line.splitlines()[0] for line in shell.lines if line.startswith("error:")]
    assert errors == [
        f"error: {tmp_path / 'nofile.txt'} does not exist",
        f"error: {tmp_path} is not a file",
        f"error: {tmp_path / 'nothing.png'} does not exist",
    ]


def test_replay_in_a_terminal_runs_its_lines_in_order_and_counts_failures_last(make_shell, tmp_path):
    """Typed lines queue in a terminal; a !replay file's lines are each waited for, so every
    image's line follows its command and the count of failed lines comes at the end."""
    shell = make_shell()
    shell.interactive = True
    commands = tmp_path / "lines.txt"
    commands.write_text("a red circle -s 1 -S 1\na red circle -s 0\na blue square -s 1 -S 2\n")
    shell.handle(f"!replay {commands}")
    out = [line for line in shell.lines if not line.startswith((">> model", ">> writing to"))]
    assert out[0] == "invoke> a red circle -s 1 -S 1    (lines.txt:1)"
    assert "000001.1.png  seed 1  1 steps" in out[1]
    assert out[2] == "invoke> a red circle -s 0    (lines.txt:2)"
    assert out[3].startswith("lines.txt line 2: error: -s/--steps must be between 1 and 1000")
    assert out[4] == "invoke> a blue square -s 1 -S 2    (lines.txt:3)"
    assert "000002.2.png  seed 2" in out[5]
    assert out[-1] == ">> 1 of 3 line(s) failed"
