"""Hostile models.yaml files and history files: each gives one message that names the problem
(file, line and key for models.yaml), and the shell still starts, on the embedded model."""

from __future__ import annotations

import errno
import io
import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from invoke_shell.errors import UsageError
from invoke_shell.models.registry import ModelEntry, load_registry
from invoke_shell.shell.history import open_history

ENTRY = "models:\n  m:\n    path: weights\n"  # line 4 is the first key after path

# text, line, key path ("" for the file as a whole), what the message says after it
BAD_CONFIGS = [
    ("- a\n- b\n", 1, "", "the file must be a mapping with `default:` and `models:`, got a list"),
    ("just some words\n", 1, "", "the file must be a mapping with `default:` and `models:`, got the text"),
    ("", 1, "", "the file is empty (or all comments)"),
    ("# nothing here\n", 1, "", "the file is empty (or all comments)"),
    (b"\xff\xfe\x00\x01binary", 1, "", "the file is not UTF-8 text (byte 0xff)"),
    (b"models:\n  m:\n    path: w\xe9ights\n", 3, "", "the file is not UTF-8 text (byte 0xe9)"),
    ("models:\n  m:\x00\n", 2, "", "the file holds a character YAML does not allow (code 0)"),
    ("models:\n  m: [\n", 3, "", "not valid YAML: expected the node content, but found '<stream end>'"),
    ("models:\n  m:\n    path: w\n   width: 64\n", 4, "", "not valid YAML: expected <block end>"),
    ("models:\n  m:\n    path: 'w\n", 4, "", "(while scanning a quoted scalar that starts on line 3)"),
    ("models: {}\n---\nmodels: {}\n", 2, "", "not valid YAML: but found another document"),
    ("[" * 5000, 1, "", "the file is nested too deeply to read"),
    ("default: m\n", 1, "", "the file has no `models:`"),
    ("modles:\n  m:\n    path: w\n", 1, "modles", "unknown key"),
    ("models:\n", 1, "models", "lists no models"),
    ("models:\n  - m\n", 2, "models", "must be a mapping of model names to their settings, got a list"),
    ("models:\n  m: weights\n", 2, "models.m", "must be a mapping of settings (path:, width:, ...), got the text"),
    ("models:\n  m:\n    width: 64\n", 2, "models.m", "has no `path:`"),
    ("models:\n  m:\n    path: 5\n", 3, "models.m.path", "must be a file or folder path, got the number 5"),
    ("models:\n  m:\n    path:\n", 3, "models.m.path", "must be a file or folder path, got nothing"),
    (ENTRY + "    config: [a]\n", 4, "models.m.config", "must be a folder path, got a list"),
    (ENTRY + "    allow_pickle: 'yes'\n", 4, "models.m.allow_pickle", "must be true or false, got the text 'yes'"),
    (ENTRY + "    width: 65\n", 4, "models.m.width", "65 is not a multiple of 8"),
    (ENTRY + "    height: 12\n", 4, "models.m.height", "12 is not a multiple of 8"),
    (ENTRY + "    width: abc\n", 4, "models.m.width", "expects a whole number, got 'abc'"),
    (ENTRY + "    steps: 0\n", 4, "models.m.steps", "must be between 1 and 1000, got 0"),
    (ENTRY + "    steps: 2.5\n", 4, "models.m.steps", "expects a whole number, got '2.5'"),
    (ENTRY + "    steps: [10, 20]\n", 4, "models.m.steps", "must be one value, got a list"),
    (ENTRY + "    steps:\n", 4, "models.m.steps", "must be one value, got nothing"),
    (ENTRY + "    cfg_scale: .nan\n", 4, "models.m.cfg_scale", "expects a number, got '.nan'"),
    (ENTRY + "    cfg_scale: nan\n", 4, "models.m.cfg_scale", "expects a finite number, got 'nan'"),
    (ENTRY + "    cfg_scale: inf\n", 4, "models.m.cfg_scale", "expects a finite number, got 'inf'"),
    (ENTRY + "    strength: 1.5\n", 4, "models.m.strength", "must be between 0 and 1, got 1.5"),
    (ENTRY + "    sampler: dim\n", 4, "models.m.sampler", "unknown sampler 'dim'"),
    (ENTRY + "    cfg: 7\n", 4, "models.m.cfg", "unknown key"),
    (ENTRY + "    width: 64\n    width: 72\n", 5, "models.m.width", "is given twice (first on line 4)"),
    ("default: mm\n" + ENTRY, 1, "default", "'mm' is not one of its models"),
    ("default:\n" + ENTRY, 1, "default", "must be a model name, got nothing"),
]


def write(tmp_path: Path, content: str | bytes) -> Path:
    path = tmp_path / "models.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


@pytest.mark.parametrize("content, line, key, problem", BAD_CONFIGS)
def test_each_malformed_config_is_one_message_with_file_line_and_key(tmp_path, content, line, key, problem):
    path = write(tmp_path, content)
    with pytest.raises(UsageError) as err:
        load_registry(path)
    message = err.value.message
    assert message.startswith(f"{path} line {line}: " + (f"{key}: " if key else "")), message
    assert problem in message, message
    assert "\n" not in message and err.value.hint  # one line, and a fix


def test_the_line_number_is_the_offending_keys_in_a_real_file(tmp_path):
    path = write(
        tmp_path,
        "# my models\ndefault: sd15\nmodels:\n  sd15:\n    path: sd15.safetensors\n    steps: 30\n    width: 65\n",
    )
    with pytest.raises(UsageError) as err:
        load_registry(path)
    assert err.value.message == f"{path} line 7: models.sd15.width: 65 is not a multiple of 8"
    assert err.value.hint == "use 64 or 72"


@pytest.mark.parametrize(
    "extra, hint",
    [
        ("sampler: dim", "did you mean ddim? allowed: one of k_lms,"),
        ("steps: 0", "allowed: between 1 and 1000, e.g. steps: 25"),
        ("strenght: 0.5", "did you mean strength? keys:"),
    ],
)
def test_hints_name_the_fix_in_yaml_terms(tmp_path, extra, hint):
    with pytest.raises(UsageError) as err:
        load_registry(write(tmp_path, ENTRY + f"    {extra}\n"))
    assert (err.value.hint or "").startswith(hint)
    assert "-s " not in (err.value.hint or "") and "-A " not in (err.value.hint or "")  # no switch never typed


def test_unknown_default_suggests_the_model(tmp_path):
    with pytest.raises(UsageError) as err:
        load_registry(write(tmp_path, "default: sd-15\nmodels:\n  sd-1.5:\n    path: w\n"))
    assert err.value.hint == "did you mean sd-1.5? known models: sd-1.5"


def test_a_config_that_is_a_folder_cannot_be_read(tmp_path):
    with pytest.raises(UsageError) as err:
        load_registry(tmp_path)
    assert err.value.message == f"model config {tmp_path} cannot be read (is a directory)"


def test_every_switch_default_and_key_type_is_taken(tmp_path):
    path = write(
        tmp_path,
        "models:\n  b:\n    path: b\n  a:\n    path: '5'\n    description: 1.5\n    allow_pickle: yes\n"
        "    steps: 10\n    width: 96\n    height: 72\n    cfg_scale: 4\n    sampler: ddim\n    strength: 0.5\n",
    )
    reg = load_registry(path)
    assert reg.default == "b"  # no `default:`: the first model
    a = reg.get("a")
    assert (a.path, a.description, a.allow_pickle) == (tmp_path / "5", "1.5", True)
    assert a.defaults == {"steps": 10, "width": 96, "height": 72, "cfg_scale": 4.0, "sampler": "ddim", "strength": 0.5}


# ---- the launch: a broken config starts the shell on the embedded model


@pytest.fixture
def run_main(monkeypatch, capsys, tmp_path):
    """cli.main in this process on piped input; gives back (code, stdout, stderr)."""
    from invoke_shell.cli import main

    for name in (
        "HF_HUB_OFFLINE",
        "HF_HUB_DISABLE_PROGRESS_BARS",
        "HF_HUB_DISABLE_TELEMETRY",
        "TOKENIZERS_PARALLELISM",
    ):
        monkeypatch.setenv(name, os.environ.get(name, "1"))  # restored after: main sets them
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level

    def run(config: Path, *extra: str, lines: str = "") -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "stdin", io.StringIO(lines))
        argv = ["--config", str(config), "--outdir", str(tmp_path / "o"), "--history", str(tmp_path / "h"), *extra]
        code = main(argv)
        out = capsys.readouterr()
        return code, out.out, out.err

    yield run
    for h in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(h)
        h.close()
    root.setLevel(level)
    logging.captureWarnings(False)


@pytest.mark.parametrize(
    "content, shown",
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00", "line 1: the file is not UTF-8 text (byte 0x89)"),
        ("- a\n- b\n", "line 1: the file must be a mapping with `default:` and `models:`, got a list"),
        ("models:\n  - a\n", "line 2: models: must be a mapping of model names to their settings, got a list"),
        ("", "line 1: the file is empty (or all comments)"),
        ("models:\n  m: [\n", "line 3: not valid YAML: expected the node content"),
        ("default: x\n" + ENTRY, "line 1: default: 'x' is not one of its models"),
        ("models:\n  m:\n    path: 5\n", "line 3: models.m.path: must be a file or folder path, got the number 5"),
        (ENTRY + "    width: 65\n", "line 4: models.m.width: 65 is not a multiple of 8"),
        (ENTRY + "    cfg_scale: .nan\n", "line 4: models.m.cfg_scale: expects a number, got '.nan'"),
    ],
)
def test_console_starts_on_the_embedded_model_after_one_message(run_main, tmp_path, content, shown):
    config = write(tmp_path, content)
    code, out, err = run_main(config)
    assert code == 0
    assert err.count("error: ") == 1 and f"error: {config} {shown}" in err
    assert ">> starting on the embedded model tiny-shapes" in err
    assert ">> model tiny-shapes loaded on" in out
    assert "Traceback" not in out + err


def test_a_model_asked_for_by_name_in_a_broken_config_stops_the_launch(run_main, tmp_path):
    config = write(tmp_path, ENTRY + "    steps: 0\n")
    code, out, err = run_main(config, "--model", "m")
    assert code == 2
    assert f"error: {config} line 4: models.m.steps: must be between 1 and 1000, got 0" in err
    assert "embedded" not in err and "loaded" not in out


def test_console_script_on_a_binary_config_makes_images_with_the_embedded_model(tmp_path):
    config = write(tmp_path, bytes(range(256)))  # byte 10 is a newline, so 0x80 is on line 2
    proc = subprocess.run(
        [sys.executable, "-m", "invoke_shell", "--config", str(config), "--outdir", str(tmp_path / "o")]
        + ["--history", str(tmp_path / "h")],
        input="a red circle -s 2 -S 3\n",
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    assert f"error: {config} line 2: the file is not UTF-8 text (byte 0x80)" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    png = tmp_path / "o" / "img-samples" / "000001.3.png"
    assert '"model_weights": "tiny-shapes"' in Image.open(png).text["sd-metadata"]


# ---- weights: the one pickle rule, suffixes in any case


@pytest.mark.parametrize("name", ["model.ckpt", "MODEL.CKPT", "model.Pt", "model.BIN", "model.pth"])
def test_pickle_files_in_any_case_need_allow_pickle(tmp_path, name):
    from invoke_shell.models.loader import load_pipeline

    (tmp_path / name).write_bytes(b"not loaded")
    entry = ModelEntry("old", tmp_path / name, config=tmp_path)
    assert entry.is_single_file
    with pytest.raises(UsageError) as err:
        load_pipeline(entry, "cpu", torch.float32)
    assert err.value.message == f"model 'old' holds pickled weights ({name}), which can run code when loaded"
    assert "allow_pickle: true" in (err.value.hint or "")


def test_upper_case_safetensors_is_refused_not_unpickled(tmp_path):
    from invoke_shell.models.loader import load_pipeline

    (tmp_path / "MODEL.SAFETENSORS").write_bytes(b"x")
    with pytest.raises(UsageError) as err:
        load_pipeline(ModelEntry("m", tmp_path / "MODEL.SAFETENSORS", config=tmp_path), "cpu", torch.float32)
    assert "must end in lower-case .safetensors" in err.value.message
    assert err.value.hint == "rename it to MODEL.safetensors"


@pytest.fixture(scope="module")
def pickled_folder(tmp_path_factory, tiny_pipe):
    """The tiny random pipeline saved the old way: .bin pickles for the UNet and VAE (transformers
    writes the text encoder as safetensors whatever it is told)."""
    folder = tmp_path_factory.mktemp("pickled") / "model"
    tiny_pipe.save_pretrained(folder, safe_serialization=False)
    return folder


def test_a_diffusers_folder_of_bin_weights_needs_allow_pickle(pickled_folder):
    from invoke_shell.models.loader import load_pipeline

    with pytest.raises(UsageError) as err:
        load_pipeline(ModelEntry("old", pickled_folder), "cpu", torch.float32)
    assert err.value.message == (
        "model 'old' holds pickled weights (unet/diffusion_pytorch_model.bin, vae/diffusion_pytorch_model.bin), "
        "which can run code when loaded"
    )
    assert "allow_pickle: true" in (err.value.hint or "")
    pipe = load_pipeline(ModelEntry("old", pickled_folder, allow_pickle=True), "cpu", torch.float32)
    assert pipe.unet is not None  # with the opt-in it loads


def test_a_folder_that_is_not_a_model_is_named(tmp_path):
    from invoke_shell.models.loader import load_pipeline

    with pytest.raises(UsageError) as err:
        load_pipeline(ModelEntry("m", tmp_path), "cpu", torch.float32)
    assert err.value.message == f"model 'm': {tmp_path} is a folder but not a diffusers model (no model_index.json)"


# ---- the history file


def unusable(path: Path, why: str) -> str:
    return f">> history file {path} cannot be used ({why}); this session's history is kept in memory only"


def test_a_missing_history_folder_is_made_and_the_file_is_user_only(tmp_path):
    path = tmp_path / "new" / "deeper" / "history"
    said: list[str] = []
    history = open_history(path, said.append)
    history.append_string("a red circle -S 1")
    assert said == []
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "+a red circle -S 1" in path.read_text()


def test_a_history_folder_is_said_once_and_kept_in_memory(tmp_path):
    said: list[str] = []
    history = open_history(tmp_path, said.append)
    history.append_string("one")
    history.append_string("two")
    assert said == [unusable(tmp_path, "is a directory")]
    assert history.get_strings() == ["one", "two"]


def test_a_fifo_is_not_read_forever(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    said: list[str] = []
    open_history(fifo, said.append)
    assert said == [unusable(fifo, "not a regular file")]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads and writes a chmod 000 file")
def test_an_unreadable_history_file(tmp_path):
    path = tmp_path / "history"
    path.write_text("\n+old line\n")
    path.chmod(0)
    said: list[str] = []
    open_history(path, said.append)
    assert said == [unusable(path, "permission denied")]


@pytest.mark.parametrize("code, why", [(errno.EACCES, "permission denied"), (errno.EROFS, "read-only file system")])
def test_history_on_a_read_only_or_forbidden_file_system(tmp_path, monkeypatch, code, why):
    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "open", refuse)
    said: list[str] = []
    history = open_history(tmp_path / "history", said.append)
    history.append_string("kept")
    assert said == [unusable(tmp_path / "history", why)]
    assert history.get_strings() == ["kept"]


def test_a_history_file_that_breaks_later_is_said_once(tmp_path):
    path = tmp_path / "gone" / "history"
    said: list[str] = []
    history = open_history(path, said.append)
    history.append_string("first")
    path.unlink()
    path.parent.rmdir()  # the folder removed while the shell runs
    history.append_string("second")
    history.append_string("third")
    assert said == [unusable(path, "no such file or directory")]
    assert history.get_strings() == ["first", "second", "third"]


def test_a_corrupt_history_file_still_loads_and_appends(tmp_path):
    import asyncio

    path = tmp_path / "history"
    path.write_bytes(b"\n# old\n+a \xff\xfe line\n\x00\x9c garbage\n+good -S 2\n")
    said: list[str] = []
    history = open_history(path, said.append)

    async def load() -> list[str]:
        return [s async for s in history.load()]

    assert asyncio.run(load()) == ["good -S 2", "a \ufffd\ufffd line"]
    history.append_string("new")
    assert said == [] and path.read_bytes().endswith(b"+new\n")


def test_real_prompt_with_a_history_folder_runs_every_line(make_shell, tmp_path, capfd):
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    shell = make_shell()
    folder = tmp_path / "history_is_a_folder"
    folder.mkdir()
    with create_pipe_input() as inp:
        inp.send_text("first -S 1 -s 2\r")  # prompt_toolkit swallowed this one before
        inp.send_text("second -S 2 -s 2\r")
        inp.send_text("quit\r")
        shell.run_interactive(folder, input=inp, output=DummyOutput())
    names = sorted(p.name for p in (tmp_path / "out" / "img-samples").glob("*.png"))
    assert names == ["000001.1.png", "000002.2.png"]
    assert shell.lines.count(unusable(folder, "is a directory")) == 1
    seen = capfd.readouterr()
    assert "Unhandled exception" not in seen.out + seen.err


def test_an_existing_history_file_readable_by_others_is_made_user_only(tmp_path):
    path = tmp_path / "history"
    path.write_text("\n# 2026-01-01\n+old line\n")
    path.chmod(0o644)
    open_history(path, lambda s: None)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "+old line" in path.read_text()
