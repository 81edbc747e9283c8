"""A real terminal end to end: invoke-shell in tmux, driven by keys as a person types them,
checked on the screen and on disk: a good line, a bad line, Ctrl-C mid-image, then quitting
with lines queued and Ctrl-C."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from invoke_shell.shell.terminal_view import fit_cells

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


class Tmux:
    def __init__(self, tmp_path: Path) -> None:
        self.socket = f"invoke-test-{os.getpid()}-{tmp_path.name}"

    def __call__(self, *args: str) -> str:
        out = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=30)
        return out.stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-J", "-S", "-200")

    def wait_for(self, text: str, timeout: float = 120) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never appeared; the screen:\n{self.screen()}")

    def keys(self, *keys: str) -> None:
        self("send-keys", "-t", "shell", *keys)


def test_a_session_in_a_real_terminal(tiny_config, tmp_path):
    exe = Path(sys.executable).parent / "invoke-shell"
    out = tmp_path / "o"
    command = (
        f"OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 COLORTERM=truecolor {exe} --config {tiny_config} --outdir {out} --history {tmp_path / 'h'}"
        "; echo exit status $?"
    )
    tmux = Tmux(tmp_path)
    tmux("new-session", "-d", "-s", "shell", "-x", "150", "-y", "45", command)
    tmux("set-option", "-t", "shell", "remain-on-exit", "on")
    try:
        tmux.wait_for("(ready)")
        # a good line
        tmux.keys("a red circle -s 3 -S 5", "Enter")
        tmux.wait_for("000001.5.png")
        assert Image.open(out / "img-samples" / "000001.5.png").size == (64, 64)
        # !show draws it as large as the 150x45 terminal shows it whole: 84 columns by 42 lines
        tmux.keys("!show", "Enter")
        lines = tmux.wait_for(f">> {out / 'img-samples' / '000001.5.png'}").splitlines()
        start = max(i for i, line in enumerate(lines) if line.startswith("invoke> !show"))
        end = max(i for i, line in enumerate(lines) if line.startswith(">> ") and "000001.5.png" in line)
        assert end - start - 1 == fit_cells((64, 64), (150, 45)).rows == 42
        # a bad line: the message appears under it and nothing runs
        tmux.keys("a cat -s 3 --bogus 2", "Enter")
        screen = tmux.wait_for("unknown switch --bogus")
        tmux.keys("C-u")
        # Ctrl-C on an empty line stops the running image within a step
        tmux.keys("a long one -s 500 -S 9", "Enter")
        tmux.wait_for("running ")
        tmux.keys("C-c")
        screen = tmux.wait_for("generation cancelled at step")
        tmux.wait_for("(ready)")
        # the model is still loaded: the next line runs at once
        tmux.keys("a blue circle -s 3 -S 6", "Enter")
        tmux.wait_for("000002.6.png")
        tmux("clear-history", "-t", "shell")
        # keys typed while the shell waits for a job (here !schedule behind a queued line) stay
        # off the screen until the next prompt, instead of landing between the worker's lines
        tmux.keys("a green square -s 40 -S 20 -n 2", "Enter")
        tmux.keys("!schedule -s 3", "Enter")
        for word in ("one ", "two ", "three ", "four "):
            tmux.keys("-l", word)
            time.sleep(0.3)
        screen = tmux.wait_for(">> plot:")
        time.sleep(0.5)
        screen = tmux.screen()
        typed = [line for line in screen.splitlines() if "two" in line or "four" in line]
        assert typed == ["invoke> one two three four "] or typed == ["invoke> one two three four"], screen
        tmux.keys("C-u")
        # quit with lines queued, then Ctrl-C as the screen suggests: they stop, the shell exits 0
        tmux.keys("a long one -s 500 -S 10", "Enter")
        tmux.keys("and another -s 500 -S 11", "Enter")
        tmux.keys("q", "Enter")
        tmux.wait_for("before leaving; Ctrl-C stops them")
        tmux.keys("C-c")
        tmux.wait_for(">> stopping: 1 queued line(s) dropped, the running image cancelled")
        tmux.wait_for("exit status", timeout=60)
        screen = tmux.screen()
    finally:
        tmux("kill-server")
    assert "exit status 0" in screen, screen
    assert "Traceback" not in screen and "Unhandled exception" not in screen and "terminate called" not in screen
    made = sorted(p.name for p in (out / "img-samples").glob("*.png"))
    assert made == ["000001.5.png", "000002.6.png", "000003.20.png", "000004.21.png"]
