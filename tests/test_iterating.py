"""Iterating at the prompt: history, !N, !fetch, !replay, completion, recall of outputs, grids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import DEFAULTS
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from invoke_shell.errors import UsageError
from invoke_shell.files.fetch import fetch


def png_with(path, **chunks):
    info = PngInfo()
    for k, v in chunks.items():
        info.add_text(k, v)
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    return path


def test_fetch_reads_a1111_parameters(tmp_path):
    p = png_with(
        tmp_path / "a.png",
        parameters=(
            "a castle on a hill, (masterpiece:1.2)\nNegative prompt: blurry, lowres\n"
            "Steps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 1234, Size: 512x768, "
            'Model hash: abcdef1234, Model: dreamshaper, Clip skip: 2, Lora hashes: "x: 1, y: 2"'
        ),
    )
    got = fetch(p, DEFAULTS)
    assert got.command == (
        '"a castle on a hill, (masterpiece:1.2) [blurry, lowres]" -s 30 -S 1234 -W 512 -H 768 -C 6.5 -A dpmpp_2m_karras'
    )
    assert any("Clip skip: 2" in n for n in got.notes)
    assert any("Lora hashes" in n for n in got.notes)
    assert any("dreamshaper" in n for n in got.notes)


def test_fetch_reads_invokeai_sd_metadata(tmp_path):
    meta = {
        "model": "stable diffusion",
        "model_weights": "stable-diffusion-1.5",
        "model_hash": "cc6cb27103",
        "app_id": "invoke-ai/InvokeAI",
        "app_version": "2.3.5",
        "image": {
            "prompt": [{"prompt": "fire", "weight": 1.0}],
            "steps": 10,
            "cfg_scale": 7.5,
            "threshold": 0,
            "perlin": 0,
            "height": 384,
            "width": 384,
            "seed": 1592514025,
            "seamless": False,
            "hires_fix": False,
            "type": "img2img",
            "postprocessing": None,
            "sampler": "k_lms",
            "variations": [],
            "init_image_path": "drawings/fire.png",
            "strength": 0.7,
        },
    }
    got = fetch(png_with(tmp_path / "i.png", **{"sd-metadata": json.dumps(meta)}), DEFAULTS)
    assert got.command == '"fire" -s 10 -S 1592514025 -W 384 -H 384 -C 7.5 -A k_lms -I drawings/fire.png -f 0.7'


def test_fetch_prefers_dream_and_says_when_there_is_none(tmp_path):
    p = png_with(tmp_path / "d.png", Dream='"x" -s 3 -S 1', parameters="y\nSteps: 9")
    assert fetch(p, DEFAULTS).command == '"x" -s 3 -S 1 -W 64 -H 64 -C 7.5 -A k_lms'  # filled from the defaults
    with pytest.raises(UsageError) as err:
        fetch(png_with(tmp_path / "none.png"), DEFAULTS)
    assert "carries no generation metadata" in err.value.message


def test_history_recall_and_fetch_in_the_shell(make_shell, tmp_path):
    shell = make_shell()
    shell.handle("first -S 11 -s 3")
    shell.handle("second -S 22 -A ddim")
    shell.lines.clear()
    shell.handle("!history")
    assert "000001.11.png" in shell.lines[0] and "000002.22.png" in shell.lines[1]
    assert shell.lines[0].split()[2] == "seed"  # one model this session: not named on every row
    shell.lines.clear()
    shell.handle("!2")  # piped: the command is printed for the user to copy
    assert shell.lines == ['"second" -s 6 -S 22 -W 64 -H 64 -C 7.5 -A ddim']
    shell.lines.clear()
    shell.handle(f"!fetch {tmp_path / 'out' / 'img-samples' / '000001.11.png'}")
    assert shell.lines == ['"first" -s 3 -S 11 -W 64 -H 64 -C 7.5 -A k_lms']
    shell.lines.clear()
    shell.handle(f"!fetch {tmp_path / 'out' / 'img-samples'}")
    assert len([line for line in shell.lines if ".png:" in line]) == 2
    shell.lines.clear()
    shell.handle("!9")
    assert "there is no generation 9" in shell.lines[0]


def test_init_image_from_the_previous_output(make_shell, tmp_path):
    shell = make_shell()
    shell.handle("base -S 1 -s 4")
    shell.handle("refine -I -1 -f 0.5 -S 2 -s 4")
    shell.handle("again -I last -f 0.5 -S 3 -s 4")
    out = tmp_path / "out" / "img-samples"
    assert "-I " + str(out / "000001.1.png") in Image.open(out / "000002.2.png").text["Dream"]
    assert "-I " + str(out / "000002.2.png") in Image.open(out / "000003.3.png").text["Dream"]
    shell.lines.clear()
    shell.handle("x -I -9")
    assert shell.lines[-1] == (
        "error: -I -9 looks back 9 image(s), but this session has made 3\n  hint: use -I -1 to -I -3, or give a file path"
    )


def test_recalled_init_is_stored_absolute_under_a_relative_outdir(make_shell, tmp_path, monkeypatch):
    # launched as `invoke-shell --outdir out`: the PNG's command must still find its init from elsewhere
    monkeypatch.chdir(tmp_path)
    shell = make_shell(outdir=Path("out"))
    shell.handle("base -S 1 -s 4")
    shell.handle("refine -I -1 -f 0.5 -S 2 -s 4")
    out = tmp_path / "out" / "img-samples"
    assert "-I " + str(out / "000001.1.png") + " " in Image.open(out / "000002.2.png").text["Dream"]


def test_grid_of_iterations(make_shell, tmp_path):
    shell = make_shell()
    shell.handle("many -n 3 -g -S 5 -s 2")
    out = tmp_path / "out" / "img-samples"
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == ["000001.5.png", "000002.6.png", "000003.7.png", "000004.5.grid.png"]
    assert Image.open(out / "000004.5.grid.png").size == (3 * 64 + 2 * 4, 64)  # one row, 4 px gaps, no empty cell


def test_replay_reports_bad_lines_with_numbers_and_goes_on(make_shell, tmp_path):
    script = tmp_path / "prompts.txt"
    script.write_text('# my prompts\n\na red circle -S 1 -s 2\nbad --steps many\n"blue" -S 2 -s 2\n')
    shell = make_shell()
    shell.handle(f"!replay {script}")
    assert any("prompts.txt line 4: error: -s/--steps expects a whole number" in line for line in shell.lines)
    names = sorted(p.name for p in (tmp_path / "out" / "img-samples").glob("*.png"))
    assert names == ["000001.1.png", "000002.2.png"]


def test_path_commands_take_a_quoted_path_as_minus_i_does(make_shell, tmp_path):
    shell = make_shell(outdir=tmp_path / "my out")
    shell.handle("first -S 11 -s 3")
    png = tmp_path / "my out" / "img-samples" / "000001.11.png"
    script = tmp_path / "my prompts.txt"
    script.write_text("second -S 12 -s 2\n")
    shell.lines.clear()
    shell.handle(f'!fetch "{png}"')
    assert shell.lines == ['"first" -s 3 -S 11 -W 64 -H 64 -C 7.5 -A k_lms']
    shell.handle(f"!replay '{script}'")
    assert (tmp_path / "my out" / "img-samples" / "000002.12.png").exists()
    shell.lines.clear()
    shell.handle(f'!replay "{tmp_path / "nothing.txt"}"')
    assert shell.lines[-1].startswith(f"error: {tmp_path / 'nothing.txt'} does not exist")


def test_help_from_a_line(make_shell):
    shell = make_shell()
    shell.handle("a cat -h")
    assert any("--strength" in line for line in shell.lines)


def completions(shell, text):
    from invoke_shell.shell.completion import ShellCompleter

    return [
        c.text
        for c in ShellCompleter(shell.registry, shell.worker.status).get_completions(
            Document(text, len(text)), CompleteEvent()
        )
    ]


def test_completion(make_shell, tmp_path):
    shell = make_shell()
    shell.handle("x -S 4242 -s 1")
    assert completions(shell, "a cat -A k_eu") == ["k_euler", "k_euler_a"]
    assert completions(shell, "a cat -Add") == ["-Addim"]
    assert "--strength" in completions(shell, "a cat --str")
    assert completions(shell, "a cat -S ") == ["4242"]
    assert "!fetch" in completions(shell, "!fe")
    assert completions(shell, "!switch tiny") == ["tiny-random"]
    (tmp_path / "drawing.png").write_bytes(b"")
    assert completions(shell, f"a cat -I {tmp_path}/dra") == [f"{tmp_path}/drawing.png"]


def test_path_completion_quotes_spaces_and_goes_into_folders(make_shell, tmp_path):
    from invoke_shell.line.parsing import parse_line

    shell = make_shell()
    (tmp_path / "my pics").mkdir()
    (tmp_path / "my pics" / "sketch 2.png").write_bytes(b"")
    # a folder keeps its slash; a space puts the path in quotes, as the parser needs
    assert completions(shell, f"a cat -I {tmp_path}/my") == [f'"{tmp_path}/my pics/']
    assert completions(shell, f'a cat -I "{tmp_path}/my pics/sk') == [f'"{tmp_path}/my pics/sketch 2.png"']
    assert completions(shell, f"!fetch '{tmp_path}/my pics/") == [f"'{tmp_path}/my pics/sketch 2.png'"]
    line = f'a cat -I "{tmp_path}/my pics/sketch 2.png" -f 0.5'
    assert parse_line(line, {}).init_img == f"{tmp_path}/my pics/sketch 2.png"  # what Tab wrote parses
    assert completions(shell, "a cat's hat -s 1") == []  # an apostrophe in a prompt opens no path


class LiveSession:
    """A real PromptSession on pipe input, run on its own thread so the test can type at it."""

    def __init__(self, shell):
        import threading

        from prompt_toolkit.input import create_pipe_input
        from prompt_toolkit.output import DummyOutput

        self.shell = shell
        self._pipe = create_pipe_input()
        self.inp = self._pipe.__enter__()
        self.thread = threading.Thread(
            target=shell.run_interactive, args=(None,), kwargs={"input": self.inp, "output": DummyOutput()}
        )
        self.thread.start()

    def type(self, text):
        self.inp.send_text(text)

    def wait_for(self, predicate, timeout=60):
        import time

        end = time.time() + timeout
        while not predicate():
            assert time.time() < end, "timed out"
            time.sleep(0.05)

    def close(self):
        self.type("exit\r")
        self.thread.join(timeout=120)
        self._pipe.__exit__(None, None, None)
        assert not self.thread.is_alive()


def test_buffer_gets_the_recalled_command_in_a_real_session(make_shell, tmp_path):
    shell = make_shell()
    out = tmp_path / "out" / "img-samples"
    live = LiveSession(shell)
    live.type("first -S 7 -s 2\r")
    live.wait_for(lambda: (out / "000001.7.png").exists() and not shell.worker.busy())
    live.type("!1\r")
    live.type(" -C 3\r")  # appended to the recalled command in the buffer
    live.close()
    assert Image.open(out / "000002.7.png").text["Dream"] == '"first" -s 2 -S 7 -W 64 -H 64 -C 3.0 -A k_lms'


def test_fetch_puts_a_png_command_into_the_buffer_in_a_real_session(make_shell, tmp_path):
    meta = {
        "app_id": "invoke-ai/InvokeAI",
        "image": {
            "prompt": [{"prompt": "fetched", "weight": 1.0}],
            "steps": 3,
            "cfg_scale": 4.0,
            "seed": 77,
            "width": 64,
            "height": 64,
            "sampler": "ddim",
            "type": "txt2img",
        },
    }
    png = png_with(tmp_path / "invokeai.png", **{"sd-metadata": json.dumps(meta)})
    shell = make_shell()
    out = tmp_path / "out" / "img-samples"
    live = LiveSession(shell)
    live.type(f"!fetch {png}\r")
    live.type("\r")  # Enter runs the fetched command as it stands in the buffer
    live.wait_for(lambda: (out / "000001.77.png").exists())
    live.close()
    assert Image.open(out / "000001.77.png").text["Dream"] == '"fetched" -s 3 -S 77 -W 64 -H 64 -C 4.0 -A ddim'


def test_lines_queue_while_an_image_is_made_and_can_be_cancelled(make_shell, tmp_path):
    shell = make_shell()
    out = tmp_path / "out" / "img-samples"
    live = LiveSession(shell)
    live.wait_for(lambda: shell.worker.status().state == "ready")
    live.type("slow one -s 500 -S 1\r")
    live.wait_for(lambda: shell.worker.status().progress is not None)
    live.type("second -s 2 -S 2\r")
    live.type("third -s 2 -S 3\r")
    live.wait_for(lambda: len(shell.worker.status().queued) == 2)
    assert "queue 2 | running" in shell.toolbar()
    shell.lines.clear()
    live.type("!queue\r")
    live.wait_for(lambda: any("third -s 2 -S 3" in line for line in shell.lines))
    assert any(line.strip().startswith("running") and "slow one" in line for line in shell.lines)
    live.type("!cancel 1\r")  # drop "second"
    live.wait_for(lambda: len(shell.worker.status().queued) == 1)
    live.type("\x03")  # Ctrl-C on an empty line stops the running image only
    live.wait_for(lambda: (out / "000001.3.png").exists())
    live.close()
    assert sorted(p.name for p in out.glob("*.png")) == ["000001.3.png"]
    assert any("generation cancelled at step" in line for line in shell.lines)


def test_variations_reproduce_bit_identically_from_their_stored_command(make_shell, tmp_path):
    import numpy as np

    shell = make_shell()
    shell.handle("a red circle -S 42 -s 4 -v 0.3 -n 2")
    out = tmp_path / "out" / "img-samples"
    first, second = out / "000001.42.png", out / "000002.42.png"
    dream = Image.open(first).text["Dream"]
    assert " -S 42 " in dream and " -V " in dream and ":0.3" in dream
    assert json.loads(Image.open(first).text["sd-metadata"])["image"]["variations"][0]["weight"] == 0.3
    assert not np.array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(second)))
    shell.handle(dream)  # replaying the stored command gives the same pixels
    assert np.array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(out / "000003.42.png")))
    shell.handle("a red circle -S 42 -s 4")  # no variation: a third, different picture
    assert not np.array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(out / "000004.42.png")))
    # a chain: vary the variation, and fetch puts the whole chain back
    chain = dream.split(" -V ")[1].split()[0]
    shell.handle(f"a red circle -S 42 -s 4 -V {chain} -v 0.1 -n 1")
    dream5 = Image.open(out / "000005.42.png").text["Dream"]
    assert f"-V {chain}," in dream5
    shell.lines.clear()
    shell.handle(f"!fetch {out / '000005.42.png'}")
    assert shell.lines == [dream5]


@pytest.mark.parametrize("bad", ["-V 12", "-V x:0.2", "-V 12:1.5", "-v 0.2 -I a.png"])
def test_bad_variation_switches(bad):
    from invoke_shell.line.parsing import parse_line

    with pytest.raises(UsageError):
        parse_line(f"a cat {bad}", {"steps": 6, "cfg_scale": 7.5, "sampler": "k_lms", "width": 64, "height": 64})


def test_a_bad_line_is_shown_under_the_prompt_and_stays_in_the_buffer(make_shell, tmp_path):
    shell = make_shell()
    live = LiveSession(shell)
    live.type("a cat --strenght 0.3\r")
    live.wait_for(
        lambda: (
            getattr(shell, "prompt_session", None) is not None
            and shell.prompt_session.default_buffer.validation_error is not None
        )
    )
    error = shell.prompt_session.default_buffer.validation_error
    assert "unknown switch --strenght" in error.message and "did you mean --strength?" in error.message
    assert shell.prompt_session.default_buffer.text == "a cat --strenght 0.3"
    live.type("\x08" * 12 + "strength 0.3 -s 2 -S 8\r")  # fix it in place; Enter now runs it
    live.wait_for(lambda: (tmp_path / "out" / "img-samples" / "000001.8.png").exists())
    live.close()
