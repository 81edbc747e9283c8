"""Ctrl-C stops a request inside a model call (prompt encoding, a UNet step, the VAE decode),
leaves no hook behind, and the next request gives the uninterrupted picture."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from invoke_shell.errors import Cancelled
from invoke_shell.line.requests import ImageRequest


def req(**kw) -> ImageRequest:
    base = dict(prompt="a red circle [blurry]", steps=4, cfg_scale=7.5, sampler="k_lms", width=64, height=64, seed=7)
    base.update(kw)
    return ImageRequest(**base)


def _press_ctrl_c_in(module, cancel: threading.Event, after_calls: int = 1):
    """Set `cancel` while `module` runs its `after_calls`-th forward, as a key press would."""
    calls = [0]

    def hook(mod, args):
        calls[0] += 1
        if calls[0] == after_calls:
            cancel.set()

    return module.register_forward_pre_hook(hook), calls


def _hook_count(engine) -> int:
    p = engine.txt2img
    return sum(len(m._forward_pre_hooks) for model in (p.text_encoder, p.unet, p.vae) for m in model.modules())


@pytest.mark.parametrize(
    ("where", "nth", "stopped_after"),
    [
        ("text_encoder.encoder.layers.0", 1, 0),  # while the prompt is encoded
        ("unet.mid_block", 3, 2),  # inside the third UNet step (of 4)
        ("vae.decoder.mid_block", 1, 4),  # while the picture is decoded
    ],
)
def test_ctrl_c_inside_a_model_call_stops_at_the_next_block(engine, where, nth, stopped_after):
    uninterrupted = engine.generate(req()).pixels
    cancel = threading.Event()
    component, _, path = where.partition(".")
    handle, _ = _press_ctrl_c_in(getattr(engine.txt2img, component).get_submodule(path), cancel, nth)
    up_calls = [0]
    counter = engine.txt2img.unet.up_blocks[0].register_forward_pre_hook(
        lambda m, a: up_calls.__setitem__(0, 1 + up_calls[0])
    )
    hooks_before = _hook_count(engine)
    engine.prompts.forget()  # the uninterrupted run cached the prompt: encode it again
    try:
        with pytest.raises(Cancelled) as e:
            engine.generate(req(), cancel=cancel)
    finally:
        handle.remove()
        counter.remove()
    assert e.value.step == stopped_after
    if where.startswith("unet"):  # the step that was cut never reached the up blocks
        assert up_calls[0] == 2
    assert _hook_count(engine) == hooks_before - 2  # the stop points are gone with the request
    assert np.array_equal(engine.generate(req()).pixels, uninterrupted)


def test_large_images_decode_in_tiles_and_stop_between_tiles(engine, monkeypatch):
    monkeypatch.setattr(engine, "tile_above", 64 * 64)  # so a small image counts as large
    vae = engine.txt2img.vae
    tiles = [0]
    cancel = threading.Event()

    def count(mod, args):
        tiles[0] += 1
        if tiles[0] == 2:
            cancel.set()

    h = vae.decoder.register_forward_pre_hook(count)
    try:
        with pytest.raises(Cancelled):
            engine.generate(req(width=128, height=128, steps=1), cancel=cancel)
    finally:
        h.remove()
    assert tiles[0] == 2  # the decoder ran tile by tile and stopped after the second
    assert not vae.use_tiling  # tiling is switched off again for the next request


# ---- over a pipe, through the console script


def _start(tiny_config, tmp_path, **kw):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).parent / "invoke-shell"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "invoke_shell"]
    args = ["--config", str(tiny_config), "--outdir", str(tmp_path / "o"), "--history", str(tmp_path / "h")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    # Ctrl-C as a terminal delivers it, even when the tests themselves run in the background
    # (a background job starts with SIGINT ignored, and children inherit that)
    default_sigint = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    return subprocess.Popen(cmd + args, env=env, preexec_fn=default_sigint, **kw)


def test_bytes_that_are_not_utf8_are_named_and_the_other_lines_run(tiny_config, tmp_path):
    import subprocess

    proc = _start(tiny_config, tmp_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(
        b"a red circle -s 2 -S 1\na \xff circle -s 2\na \x1b[2J circle\na blue circle -s 2 -S 2\n", 120
    )
    text, errors = out.decode(), err.decode()
    assert proc.returncode == 1, errors  # some lines failed: a script can tell
    assert "error: the line is not valid UTF-8 (byte 0xff at column 3)" in errors
    assert "error: the line holds a control character '\\x1b' at column 3" in errors
    assert ">> 2 of 4 line(s) failed" in errors
    assert "invoke> a \\x1b[2J circle" in text and "\x1b" not in text + errors  # echoed escaped, never raw
    assert "Traceback" not in text + errors
    names = sorted(p.name for p in (tmp_path / "o" / "img-samples").glob("*.png"))
    assert names == ["000001.1.png", "000002.2.png"]


def test_sigint_over_a_pipe_cancels_the_image_says_what_did_not_run_and_exits_130(tiny_config, tmp_path):
    import signal
    import subprocess
    import time

    proc = _start(
        tiny_config, tmp_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("a red circle -s 2 -S 1\na long one -s 500 -S 2\na third -s 2 -S 3\n")
    proc.stdin.flush()
    seen = ""
    while "invoke> a long one" not in seen:  # the second line has started
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        seen += line
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    out = seen + out
    assert proc.returncode == 130, out + err
    assert ">> generation cancelled at step" in out
    assert ">> interrupted at standard input line 2: the lines after it did not run" in err
    assert "Traceback" not in out + err and "terminate called" not in err
    names = sorted(p.name for p in (tmp_path / "o" / "img-samples").glob("*.png"))
    assert names == ["000001.1.png"]  # no partial picture of the cancelled line, and line 3 never ran


def test_a_closed_output_ends_the_run_quietly_at_once(tiny_config, tmp_path):
    """`invoke-shell < lines | head -1`: no BrokenPipeError, no hang; the rest does not run."""
    import subprocess
    import time

    proc = _start(tiny_config, tmp_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    proc.stdin.write(b"a red circle -s 2 -S 1\na long one -s 500 -S 2\na third -s 2 -S 3\n")
    proc.stdin.close()
    while b"000001.1.png" not in proc.stdout.readline():  # what `head` reads before it exits
        pass
    proc.stdout.close()
    t0 = time.monotonic()
    proc.wait(timeout=60)
    err = proc.stderr.read().decode()
    assert time.monotonic() - t0 < 30
    assert proc.returncode == 141, err
    assert "BrokenPipe" not in err and "Traceback" not in err
    names = sorted(p.name for p in (tmp_path / "o" / "img-samples").glob("*.png"))
    assert names == ["000001.1.png"]
