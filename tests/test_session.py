"""The model session and its worker: seeds, switching models, load failures, intermediates
decoded by the VAE, the queue and the frozen status the shell reads."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import open_shell
from PIL import Image

from invoke_shell.errors import Cancelled
from invoke_shell.line.parsing import parse_line
from invoke_shell.models.registry import load_registry
from invoke_shell.session.session import ModelSession
from invoke_shell.session.worker import Generate, Worker
from invoke_shell.shell.repl import Shell

UNET_FILE = Path("unet") / "diffusion_pytorch_model.safetensors"


def samples(tmp_path: Path) -> Path:
    return tmp_path / "out" / "img-samples"


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(np.int16)


def sd_meta(path: Path) -> dict:
    return json.loads(Image.open(path).text["sd-metadata"])


def short_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:10]


@pytest.fixture(scope="module")
def three_models(tiny_config, tmp_path_factory) -> Path:
    """models.yaml with the tiny model, a copy of it whose UNet weights are shifted ("other"),
    and an entry whose weights are missing ("broken")."""
    import torch
    from safetensors.torch import load_file, save_file

    folder = tmp_path_factory.mktemp("three")
    tiny = tiny_config.parent / "model"
    other = folder / "other"
    shutil.copytree(tiny, other)
    weights = load_file(str(other / UNET_FILE))
    save_file({k: (v + 0.05 if torch.is_floating_point(v) else v) for k, v in weights.items()}, str(other / UNET_FILE))
    config = folder / "models.yaml"
    common = "    width: 64\n    height: 64\n    steps: 6\n    cfg_scale: 7.5\n    sampler: k_lms\n"
    config.write_text(
        "default: tiny-random\nmodels:\n"
        f"  tiny-random:\n    description: random weights\n    path: {tiny}\n{common}"
        f"  other:\n    description: shifted UNet\n    path: {other}\n{common}"
        f"  broken:\n    description: weights not there\n    path: {folder / 'nowhere'}\n{common}"
    )
    return config


# ---- seeds


def test_seeds_name_files_change_pixels_and_a_random_seed_reproduces(make_shell, tmp_path):
    shell = make_shell()
    shell.handle("a red circle -s 3 -S 11")
    shell.handle("a red circle -s 3 -S 12")
    out = samples(tmp_path)
    assert sorted(p.name for p in out.glob("*.png")) == ["000001.11.png", "000002.12.png"]
    assert np.abs(pixels(out / "000001.11.png") - pixels(out / "000002.12.png")).mean() > 1

    shell.handle("a red circle -s 3")  # no -S: a random seed, recorded in the name and the command
    shell.handle("a red circle -s 3")
    third, fourth = (sorted(out.glob(f"00000{n}.*.png")) for n in (3, 4))
    assert len(third) == len(fourth) == 1
    seed3, seed4 = (int(p[0].name.split(".")[1]) for p in (third, fourth))
    assert seed3 != seed4  # two random draws (equal once in 2**32)
    assert any(line.startswith(f"{third[0]}  seed {seed3}  3 steps") for line in shell.lines)
    dream = Image.open(third[0]).text["Dream"]
    assert dream == f'"a red circle" -s 3 -S {seed3} -W 64 -H 64 -C 7.5 -A k_lms'
    assert sd_meta(third[0])["image"]["seed"] == seed3

    shell.handle(dream)  # the stored command makes the same picture again
    again = out / f"000005.{seed3}.png"
    assert np.array_equal(pixels(again), pixels(third[0]))
    assert not np.array_equal(pixels(again), pixels(fourth[0]))


# ---- switching models


def test_switch_loads_the_other_weights_and_records_them(three_models, tmp_path):
    shell = open_shell(three_models, tmp_path / "out")
    try:
        shell.handle("a red circle -s 3 -S 5")
        shell.handle("!switch other")
        shell.handle("a red circle -s 3 -S 5")
        assert any(line.startswith(">> model other loaded on cpu in") for line in shell.lines)
        first, second = samples(tmp_path) / "000001.5.png", samples(tmp_path) / "000002.5.png"
        assert np.abs(pixels(first) - pixels(second)).mean() > 1  # same seed, other weights
        m1, m2 = sd_meta(first), sd_meta(second)
        assert (m1["model_weights"], m2["model_weights"]) == ("tiny-random", "other")
        registry = load_registry(three_models)
        assert m1["model_hash"] == short_sha(registry.get("tiny-random").path / UNET_FILE)
        assert m2["model_hash"] == short_sha(registry.get("other").path / UNET_FILE)
        assert m1["model_hash"] != m2["model_hash"]
        assert "Model: other" in Image.open(second).text["parameters"]

        shell.lines.clear()
        shell.handle("!models")
        assert [line.split()[:2] for line in shell.lines] == [
            ["name", "family"],
            ["tiny-random", "Stable"],
            ["*", "other"],
            ["broken", "?"],
        ]
        assert shell.lines[1].startswith("   tiny-random ") and shell.lines[2].startswith(" * other ")
        assert shell.lines[1].split()[-3:] == ["cached", "random", "weights"]

        status = shell.worker.status()
        assert (status.model, status.state) == ("other", "ready")
        assert shell.model_entry.name == "other"
        assert " model other (ready) | device cpu | last seed 5 |" in shell.toolbar()
    finally:
        shell.close()


def test_a_missing_model_keeps_the_loaded_one(three_models, tmp_path):
    shell = open_shell(three_models, tmp_path / "out")
    try:
        shell.handle("a red circle -s 3 -S 5")
        shell.lines.clear()
        assert shell.handle("!switch broken") is True
        errors = [line for line in shell.lines if "error" in line]
        missing = three_models.parent / "nowhere"
        assert len(errors) == 1, shell.lines
        assert errors[0].startswith(f"error: model 'broken': {missing} does not exist")
        assert "(model tiny-random is still loaded)" in errors[0]
        assert not any("loaded on" in line for line in shell.lines)

        status = shell.worker.status()
        assert (status.model, status.state, shell.model_entry.name) == ("tiny-random", "ready", "tiny-random")
        shell.handle("a red circle -s 3 -S 5")
        first, second = samples(tmp_path) / "000001.5.png", samples(tmp_path) / "000002.5.png"
        assert sd_meta(second)["model_weights"] == "tiny-random"
        assert np.array_equal(pixels(first), pixels(second))  # the very same model made it
    finally:
        shell.close()


# ---- load failures that are bugs, and lines with no model


def bare_shell(config: Path, outdir: Path, load, raise_errors: bool) -> tuple[Shell, list[str]]:
    lines: list[str] = []
    registry = load_registry(config)
    session = ModelSession(registry, load, outdir, lines.append)
    return Shell(registry, registry.get(None), session, printer=lines.append, raise_errors=raise_errors), lines


def test_a_loader_bug_raises_when_tests_ask_for_bugs(tiny_config, tmp_path):
    def load(entry):
        raise TypeError("loader bug")

    shell, lines = bare_shell(tiny_config, tmp_path / "out", load, raise_errors=True)
    try:
        with pytest.raises(TypeError, match="loader bug"):
            shell.load_first_model(wait=True)
        assert shell.worker.status().state == "no model"
    finally:
        shell.close()


def test_a_loader_bug_is_reported_logged_and_the_shell_goes_on(tiny_config, tmp_path, caplog):
    from invoke_shell.models.loader import load_model

    calls: list[str] = []

    def load(entry):  # a bug the first time, fine afterwards
        calls.append(entry.name)
        if len(calls) == 1:
            raise TypeError("loader bug")
        return load_model(entry, "cpu", "fp32")

    shell, lines = bare_shell(tiny_config, tmp_path / "out", load, raise_errors=False)
    try:
        with caplog.at_level(logging.ERROR, logger="invoke_shell"):
            shell.load_first_model(wait=True)
        shown = "\n".join(lines)
        assert shown.startswith("error: unexpected TypeError: loader bug")
        assert "the shell is still running; the full traceback is in the log file" in shown
        assert "Traceback" not in shown
        logged = [r.getMessage() for r in caplog.records if r.name == "invoke_shell" and r.levelno >= logging.ERROR]
        assert "model tiny-random could not be loaded: loader bug" in logged  # the session's line
        tracebacks = [m for m in logged if "Traceback (most recent call last)" in m]
        assert len(tracebacks) == 1 and tracebacks[0].startswith("unexpected error"), logged  # the shell's, once
        assert "TypeError: loader bug" in tracebacks[0]

        lines.clear()
        assert shell.handle("a red circle -s 2 -S 1") is True
        assert lines == [
            "error: no model is loaded (loader bug)\n  hint: fix models.yaml, or load another model with !switch NAME"
        ]
        assert not (tmp_path / "out" / "img-samples").exists()

        shell.handle("!switch tiny-random")  # the shell still takes commands, and lines once a model is in
        shell.handle("a red circle -s 2 -S 1")
        assert calls == ["tiny-random", "tiny-random"]
        assert (tmp_path / "out" / "img-samples" / "000001.1.png").exists()
    finally:
        shell.close()


# ---- intermediates decoded by the VAE


def test_vae_decoded_last_x0_is_the_final_image_and_the_approximation_is_not(make_shell, tmp_path):
    shell = make_shell()
    shell.handle("a red circle -s 4 -S 3 --save_intermediates 2 --intermediates_decode vae")
    shell.handle("a red circle -s 4 -S 3 --save_intermediates 2")
    out = samples(tmp_path)
    final_vae, final_approx = pixels(out / "000001.3.png"), pixels(out / "000002.3.png")
    assert np.array_equal(final_vae, final_approx)  # the option changes the previews only
    x0_vae = pixels(out / "intermediates" / "000001.3" / "step_004.x0.png")
    x0_approx = pixels(out / "intermediates" / "000002.3" / "step_004.x0.png")
    assert x0_vae.shape == x0_approx.shape == final_vae.shape
    # measured: vae 0.0004, approx 75.7 (mean absolute difference of 8-bit values)
    assert np.abs(x0_vae - final_vae).mean() < 8
    assert np.abs(x0_approx - final_vae).mean() > 30
    # halfway, the predicted clean image is nearer the result than the noisy latents are
    # (measured: 0.97 against 3.1), so the x0 file is the decode of x0, not of x_t
    halfway = out / "intermediates" / "000001.3"
    x0_2, xt_2 = pixels(halfway / "step_002.x0.png"), pixels(halfway / "step_002.xt.png")
    assert 2 * np.abs(x0_2 - final_vae).mean() < np.abs(xt_2 - final_vae).mean()


# ---- the worker's queue and the status snapshot


def test_a_queued_line_makes_the_worker_busy_until_dropped(tiny_config, tmp_path):
    registry = load_registry(tiny_config)
    session = ModelSession(registry, lambda e: None, tmp_path / "out", lambda s: None)
    worker = Worker(session, on_error=lambda t, e: None)  # never started: the line stays queued
    try:
        assert worker.busy() is False
        line = parse_line("queued -S 1", registry.get(None).defaults)
        ticket = worker.submit(Generate(line), "queued -S 1")
        assert worker.busy() is True
        assert worker.status().queued == ("queued -S 1",)
        assert worker.drop(1) is ticket
        assert isinstance(ticket.error, Cancelled) and ticket.done.is_set()
        assert worker.busy() is False and worker.status().queued == ()
    finally:
        session.close()


def test_worker_busy_while_running_and_a_dropped_line_never_runs(make_shell, tmp_path):
    shell = make_shell()
    worker, session = shell.worker, shell.worker.session
    started, go = threading.Event(), threading.Event()
    run_line = session.run_line

    def gated(line, cancel, quiet=False):  # hold the running line until the test lets it go
        started.set()
        assert go.wait(30)
        return run_line(line, cancel, quiet)

    session.run_line = gated
    defaults = shell.model_entry.defaults
    assert worker.busy() is False
    first = worker.submit(Generate(parse_line("first -s 2 -S 1", defaults)), "first -s 2 -S 1", background=True)
    assert started.wait(30)
    assert worker.busy() is True  # running, nothing queued
    second = worker.submit(Generate(parse_line("second -s 2 -S 2", defaults)), "second -s 2 -S 2", background=True)
    status = worker.status()
    assert (status.running, status.queued) == ("first -s 2 -S 1", ("second -s 2 -S 2",))
    assert worker.drop(1) is second
    assert isinstance(second.error, Cancelled) and second.done.is_set()
    assert worker.busy() is True  # the first line still runs
    go.set()
    assert first.done.wait(60) and first.error is None
    assert worker.busy() is False
    assert [p.name for p in first.outputs] == ["000001.1.png"]
    shell.handle("third -s 2 -S 3")  # the worker is idle and went past the dropped line
    assert sorted(p.name for p in samples(tmp_path).glob("*.png")) == ["000001.1.png", "000002.3.png"]
    assert second.outputs == []
    assert not any("second" in line for line in shell.lines)


def test_status_is_a_frozen_snapshot(make_shell, tmp_path):
    shell = make_shell()
    shell.handle("one -s 2 -S 1")
    status = shell.worker.status()
    with pytest.raises(dataclasses.FrozenInstanceError):
        status.model = "something else"  # type: ignore[misc]
    assert isinstance(status.made, tuple) and len(status.made) == 1
    shell.handle("two -s 2 -S 2")
    assert len(status.made) == 1 and status.last_seed == 1  # the old snapshot did not move
    now = shell.worker.status()
    assert [m.path.name for m in now.made] == ["000001.1.png", "000002.2.png"] and now.last_seed == 2


def test_the_eta_leaves_out_the_first_image_which_pays_one_time_work():
    """With --compile the first image takes 27 s and the rest 0.1 s: the ETA follows the rest."""
    from pathlib import Path

    from invoke_shell.line.requests import ImageRequest
    from invoke_shell.session.session import _progress_line
    from invoke_shell.session.status import Made

    req = ImageRequest("x", steps=25, cfg_scale=3.0, sampler="ddim", width=64, height=64, seed=1)
    made = Made(req, Path("a.png"), 25, 0.1)
    assert _progress_line(1, 6, made, 27.0, 27.0) == ">> image 1/6: 25 steps in 0.1 s; 27 s so far, about 135 s left"
    assert _progress_line(3, 6, made, 27.2, 27.0) == ">> image 3/6: 25 steps in 0.1 s; 27 s so far, about 0 s left"
    assert _progress_line(6, 6, made, 27.5, 27.0).endswith(", line done")
