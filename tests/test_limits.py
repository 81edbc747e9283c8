"""Cost before work: large lines are estimated, refused over the limits with the estimate and the
flag, announced when long; running out of memory is one message and the model stays loaded."""

from __future__ import annotations

import pytest
from conftest import open_shell

from invoke_shell.engines import cost
from invoke_shell.engines.generate import TILE_ABOVE_PIXELS
from invoke_shell.session.limits import Limits


@pytest.fixture
def shell_with(tiny_config, tmp_path):
    made = []

    def make(limits: Limits):
        shell = open_shell(tiny_config, tmp_path / "out")
        shell.worker.session.limits = limits
        made.append(shell)
        return shell

    yield make
    for shell in made:
        shell.close()


def _pngs(tmp_path):
    return sorted(p.name for p in (tmp_path / "out" / "img-samples").glob("*.png"))


def test_a_line_over_the_time_limit_is_refused_with_the_estimate_and_the_flag(shell_with, tmp_path):
    shell = shell_with(Limits(max_seconds=0.0001))
    shell.handle("a red circle -W 512 -H 512 -s 20 -S 3")
    text = "\n".join(shell.lines)
    assert "error: 1 image(s) at 512x512 would take about" in text and "over the 0 s limit" in text
    assert "--max_seconds N" in text
    assert not any("was trained at" in line for line in shell.lines)  # a refused line: its error alone
    shell.handle("a red circle -s 2 -S 4")  # native size: never estimated, runs
    assert _pngs(tmp_path) == ["000001.4.png"]


def test_a_line_over_the_memory_limit_is_refused(shell_with, tmp_path):
    shell = shell_with(Limits(max_memory=1e-6))
    shell.handle("a red circle -W 1024 -H 1024 -s 2 -S 3")
    text = "\n".join(shell.lines)
    assert "error: 1 image(s) at 1024x1024 needs about" in text and "cpu has 0.0 GB free" in text
    assert "--max_memory GB" in text
    assert _pngs(tmp_path) == []


def test_a_long_line_is_announced_then_runs(shell_with, tmp_path):
    shell = shell_with(Limits(announce_seconds=0))
    shell.handle("a red circle -W 256 -H 256 -s 2 -S 3")
    assert any(
        line.startswith(">> 1 image(s) at 256x256: about ") and line.endswith("(estimated); Ctrl-C stops it")
        for line in shell.lines
    ), shell.lines
    assert _pngs(tmp_path) == ["000001.3.png"]


def test_out_of_memory_is_one_message_and_the_model_stays_loaded(shell_with, tmp_path, monkeypatch):
    shell = shell_with(Limits())
    engine = shell.worker.session.model().engine
    real = engine.generate

    def fail(*a, **k):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(engine, "generate", fail)
    shell.raise_errors = False
    shell.handle("a red circle -s 2 -S 3")
    text = "\n".join(shell.lines)
    assert "error: out of memory on cpu making a 64x64 image; the model is still loaded" in text
    assert "--precision fp16" in text and "Traceback" not in text
    monkeypatch.setattr(engine, "generate", real)
    shell.handle("a red circle -s 2 -S 3")
    assert _pngs(tmp_path) == ["000001.3.png"]


def test_estimates_grow_with_size_and_tiles_bound_the_decoder(engine):
    speed = cost.measure(engine.txt2img, 64, 64)
    small, large = (cost.estimate(engine.txt2img, speed, [(s, s, 10)], TILE_ABOVE_PIXELS) for s in (256, 1024))
    assert large.seconds > 16 * small.seconds * 0.99  # at least linear in pixels, attention on top
    assert large.memory > small.memory
    untiled = cost.estimate(engine.txt2img, speed, [(2048, 2048, 1)], 10**9)
    tiled = cost.estimate(engine.txt2img, speed, [(2048, 2048, 1)], TILE_ABOVE_PIXELS)
    assert tiled.vae_memory < untiled.vae_memory / 4


def test_a_size_the_model_was_not_trained_at_is_said_once_per_line(shell_with, tmp_path):
    shell = shell_with(Limits())
    shell.handle("a red circle -s 1 -S 2")
    shell.handle("a red circle -W 128 -H 64 -s 1 -S 3 -n 2")
    notes = [line for line in shell.lines if "was trained at" in line]
    assert notes == [">> tiny-random was trained at 64x64; at 128x64 expect repeated or cut-off subjects"]


def test_a_line_typed_in_a_terminal_says_the_size_note_and_its_errors_without_repeating_the_line(make_shell):
    """In a terminal lines run in the background (the prompt comes back at once): they say the
    same notes as a piped line, and a failing line is named again only when more were typed since."""
    import time

    from invoke_shell.errors import UsageError
    from invoke_shell.session.worker import Generate, Ticket

    shell = make_shell()
    shell.interactive = True
    shell.handle("a red circle -W 128 -H 64 -s 1 -S 3")
    shell.handle("a red circle -I -99 -s 1")
    while shell.worker.busy():
        time.sleep(0.05)
    assert ">> tiny-random was trained at 64x64; at 128x64 expect repeated or cut-off subjects" in shell.lines
    assert any(line.startswith("error: ") and "-99" in line for line in shell.lines)
    assert not any("in queued line" in line for line in shell.lines)
    earlier = Ticket(Generate(None), "a blue square -I -99")  # type: ignore[arg-type]
    shell._report_background_error(earlier, UsageError("no image -99", "fix it"))
    assert shell.lines[-2:] == [">> in queued line: a blue square -I -99", "error: no image -99\n  hint: fix it"]
