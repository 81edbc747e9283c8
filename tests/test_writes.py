"""Writes that never lose or corrupt a picture: atomic files, numbers unique between shells,
intermediates folders never reused, no log through a symlink, clear errors on a bad folder or a
full disk, and `!save` for the picture that could not be written."""

from __future__ import annotations

import builtins
import errno
import multiprocessing
import os
import re
from pathlib import Path

import pytest
import torch
from PIL import Image

from invoke_shell.engines.previews import SD1_LATENT_RGB, LatentPreviewer
from invoke_shell.files import metadata, outputs
from invoke_shell.files.step_files import StepFiles, StepWriter
from invoke_shell.line.requests import ImageRequest

MODEL = metadata.ModelInfo("tiny-random", "/models/tiny", "0123456789")
RED = Image.new("RGB", (8, 8), (255, 0, 0))
PREVIEWER = LatentPreviewer(SD1_LATENT_RGB)  # the writer makes pictures with it only for steps sent without
WHERE_HINT = "  hint: choose a folder you can write to: -o DIR for a line, --outdir DIR at launch"


def req(seed: int) -> ImageRequest:
    return ImageRequest("x", 1, 7.5, "k_lms", 8, 8, seed=seed)


def names(folder: Path) -> list[str]:
    """Everything in the folder, hidden files too (a leftover .tmp would show here)."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def fill_disk_after(monkeypatch: pytest.MonkeyPatch, pngs: int, written: int = 4096) -> None:
    """The disk fills up after `pngs` more pictures: the next one gets `written` bytes out, then
    ENOSPC, as a real full disk does (the tester saw 4,096-byte and 0-byte PNGs)."""
    real_open = builtins.open
    left = [pngs]

    class Full:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            self.f.write(data[:written])
            self.f.flush()
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def fake_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        if "x" not in mode:
            return f
        left[0] -= 1
        return f if left[0] >= 0 else Full(f)

    monkeypatch.setattr(outputs, "open", fake_open, raising=False)


# ---- atomic files and a full disk


@pytest.mark.parametrize("written", [4096, 0])
def test_a_full_disk_leaves_no_partial_png_and_keeps_the_earlier_ones(tmp_path, monkeypatch, written):
    first, note = outputs.write_image(tmp_path, req(1), RED, MODEL, 1, 1)
    assert first.name == "000001.1.png" and note is None
    fill_disk_after(monkeypatch, 0, written)
    with pytest.raises(outputs.WriteError) as e:
        outputs.write_image(tmp_path, req(2), RED, MODEL, 1, 1)
    folder = tmp_path / "img-samples"
    assert e.value.show() == (
        f"error: could not save 000002.2.png in {folder}: the disk is full\n"
        "  hint: free some space, or write elsewhere: -o DIR for a line"
    )
    assert names(folder) == ["000001.1.png", "invoke_log.md"]  # no partial PNG, no temporary file
    assert Image.open(first).text["Dream"].startswith('"x" -s 1 -S 1')
    log = (folder / "invoke_log.md").read_text().splitlines()
    assert len(log) == 1 and "`000001.1.png`" in log[0]


def test_save_copy_never_overwrites_and_leaves_nothing_on_a_full_disk(tmp_path, monkeypatch):
    target = tmp_path / "keep.png"
    assert outputs.save_copy(target, req(3), RED, MODEL, 1, 1) == target
    with pytest.raises(outputs.UsageError, match="keep.png already exists; it is never overwritten"):
        outputs.save_copy(target, req(4), RED, MODEL, 1, 1)
    assert "-S 3" in Image.open(target).text["Dream"]
    fill_disk_after(monkeypatch, 0)
    with pytest.raises(outputs.WriteError, match="could not save .*other.png: the disk is full"):
        outputs.save_copy(tmp_path / "other.png", req(4), RED, MODEL, 1, 1)
    assert names(tmp_path) == ["keep.png"]


def test_a_plot_is_replaced_whole(tmp_path):
    outputs.write_plot(tmp_path, "k_lms.10.png", RED)
    path = outputs.write_plot(tmp_path, "k_lms.10.png", Image.new("RGB", (4, 4)))
    assert names(path.parent) == ["k_lms.10.png"] and Image.open(path).size == (4, 4)


# ---- numbers unique between shells


def _write_many(outdir: str, worker: int, count: int, start) -> None:
    start.wait()  # all three begin together, so their scans of the folder overlap
    for i in range(count):
        outputs.write_image(Path(outdir), req(worker * 1000 + i), RED, MODEL, 1, 1)


def test_three_shells_writing_at_once_never_share_a_number(tmp_path):
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that may hold torch threads
    start = ctx.Barrier(3)
    procs = [ctx.Process(target=_write_many, args=(str(tmp_path), w, 30, start)) for w in (1, 2, 3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    folder = tmp_path / "img-samples"
    pngs = [n for n in names(folder) if n.endswith(".png")]
    assert names(folder) == sorted([*pngs, "invoke_log.md"])  # no claim or temporary file left
    numbers = sorted(int(n[:6]) for n in pngs)
    assert numbers == list(range(1, 91))  # distinct, and none skipped
    for n in pngs:
        with Image.open(folder / n) as im:
            im.load()  # a whole PNG, not a truncated one
            assert im.text["Dream"].split("-S ")[1].split()[0] == n.split(".")[1]  # its own seed inside
    log = (folder / "invoke_log.md").read_text().splitlines()
    assert len(log) == 90 and all(re.fullmatch(r"\* \S+ `\d{6}\.\d+\.png`: `.*`", line) for line in log)
    assert sorted(line.split("`")[1] for line in log) == sorted(pngs)


def test_a_number_finished_by_another_shell_during_the_scan_is_not_reused(tmp_path, monkeypatch):
    folder = tmp_path / "img-samples"
    folder.mkdir()
    real = outputs.next_number

    def stale(f):  # this shell counted before the other one wrote 000001.9.png
        n = real(f)
        (folder / "000001.9.png").write_bytes(b"the other shell's picture")
        return n

    monkeypatch.setattr(outputs, "next_number", stale)
    path, _ = outputs.write_image(tmp_path, req(5), RED, MODEL, 1, 1)
    assert path.name == "000002.5.png"
    assert (folder / "000001.9.png").read_bytes() == b"the other shell's picture"


# ---- intermediates folders


def test_a_leftover_intermediates_folder_keeps_its_number(tmp_path):
    folder = tmp_path / "img-samples"
    old = folder / "intermediates" / "000003.7"
    old.mkdir(parents=True)
    (old / "contact_sheet.png").write_bytes(b"old")
    (folder / "000001.1.png").write_bytes(b"1")  # 000002 and 000003 were deleted by the user
    path, _ = outputs.write_image(tmp_path, req(7), RED, MODEL, 1, 1)
    assert path.name == "000004.7.png"
    import torch

    from invoke_shell.engines.generate import StepState

    writer = StepWriter()
    try:
        steps = StepFiles(folder, PREVIEWER, writer)
        steps.step(StepState(1, 1, 999.0, 1.0, torch.zeros(1, 4, 8, 8), None, 1.0), (RED, None))
        with pytest.raises(outputs.WriteError) as e:  # raised in the writer process, shown here
            steps.finish(folder / "000003.7.png").result()  # an image whose folder is the old one
    finally:
        writer.shutdown()
    assert e.value.show() == (
        f"error: {old} already exists: intermediates are never written into an old folder\n"
        "  hint: move or delete that folder"
    )
    assert names(old) == ["contact_sheet.png"] and (old / "contact_sheet.png").read_bytes() == b"old"
    assert names(folder / "intermediates") == ["000003.7"]  # the new steps' hidden folder is gone


def _step(k: int):
    import torch

    from invoke_shell.engines.generate import StepState

    return StepState(k, 3, 999.0 - k, 1.0, torch.full((1, 4, 8, 8), float(k)), torch.zeros(1, 4, 8, 8), 1.0)


def test_steps_of_an_abandoned_image_leave_nothing_and_the_writer_goes_on(tmp_path):
    writer = StepWriter()
    try:
        gone = StepFiles(tmp_path, PREVIEWER, writer)
        gone.step(_step(1), (RED, RED))
        gone.abandon()  # Ctrl-C or a failed generation
        assert names(tmp_path / "intermediates") == []
        kept = StepFiles(tmp_path, PREVIEWER, writer)
        for k in (1, 2, 3):
            kept.step(_step(k), (Image.new("RGB", (8, 8), (60 * k, 0, 0)), RED))
        files = kept.finish(tmp_path / "000001.5.png").result()
    finally:
        writer.shutdown()
    folder = tmp_path / "intermediates" / "000001.5"
    assert names(tmp_path / "intermediates") == ["000001.5"]
    assert sorted(p.name for p in files) == names(folder)
    assert Image.open(folder / "steps.gif").n_frames == 3
    from safetensors.torch import load_file

    assert load_file(folder / "step_002.safetensors")["latents"].eq(2.0).all()
    mode = lambda name: (folder / name).stat().st_mode & 0o777  # noqa: E731
    assert mode("step_002.safetensors") == mode("step_002.xt.png")  # safetensors made it owner-only


def test_a_writer_process_that_dies_is_one_message_and_the_next_image_gets_a_new_one(tmp_path):

    writer = StepWriter()
    try:
        steps = StepFiles(tmp_path, PREVIEWER, writer)
        steps.step(_step(1), (RED, None))
        assert writer.cpu_seconds() > 0  # the process is up and has written the step
        writer.process().kill()  # killed from outside (the OOM killer, a user)
        writer.process().join()
        with pytest.raises(outputs.WriteError) as e:
            steps.step(_step(2), (RED, None))
            steps.finish(tmp_path / "000001.5.png").result()
        assert e.value.show() == (
            "error: the intermediates writer process stopped\n  hint: run the line again (a new writer starts)"
        )
        assert names(tmp_path / "intermediates") == []  # its hidden folder went with it
        again = StepFiles(tmp_path, PREVIEWER, writer)
        again.step(_step(1), (RED, None))
        again.finish(tmp_path / "000002.5.png").result()
    finally:
        writer.shutdown()
    assert names(tmp_path / "intermediates" / "000002.5") == [
        "contact_sheet.png",
        "step_001.safetensors",
        "step_001.xt.png",
        "steps.gif",
    ]


def test_full_size_previews_keep_their_size_on_disk_and_are_reduced_in_the_sheet_and_gif(tmp_path):
    from invoke_shell.files import intermediates
    from invoke_shell.files.sheets import row_labels_width

    big = (Image.new("RGB", (512, 512), (200, 30, 30)), Image.new("RGB", (512, 512), (30, 30, 200)))
    writer = StepWriter()
    try:
        steps = StepFiles(tmp_path, PREVIEWER, writer)
        for k in (1, 2, 3):
            steps.step(_step(k), big)
        steps.finish(tmp_path / "000001.5.png").result()
    finally:
        writer.shutdown()
    folder = tmp_path / "intermediates" / "000001.5"
    assert Image.open(folder / "step_002.xt.png").size == (512, 512)
    sheet = Image.open(folder / "contact_sheet.png")
    assert sheet.width == row_labels_width(intermediates.ROWS) + 3 * intermediates.MAX_TILE
    # the x0 row: the blue picture, reduced to a 256-px tile (box-averaged, so still that blue)
    assert sheet.getpixel((sheet.width - 10, sheet.height - 10)) == (30, 30, 200)
    assert Image.open(folder / "steps.gif").size == (2 * 256, 256 + 12)


def test_the_contact_sheet_made_a_step_at_a_time_is_the_whole_sheet_pixel_for_pixel():
    import numpy as np

    from invoke_shell.files import intermediates
    from invoke_shell.files.sheets import labelled_sheet

    rng = np.random.default_rng(0)

    def tile() -> Image.Image:
        return Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))

    frames = [
        (intermediates.StepInfo(k, 100, 999.0 - 9.9 * k, 14.615 - 0.1 * k, 1.0), tile(), tile() if k else None)
        for k in range(0, 101, 4)  # step 0 of an img2img run has no x0
    ]
    whole = labelled_sheet(
        [[xt for _, xt, _ in frames], [x0 for _, _, x0 in frames]],
        [intermediates.label(s) for s, _, _ in frames],
        intermediates.ROWS,
        min_tile=96,
    )
    joined = intermediates.contact_sheet([intermediates.sheet_column(f) for f in frames])
    assert joined.size == whole.size == (3349, 293)
    assert np.array_equal(np.asarray(joined), np.asarray(whole))


# ---- the log


def test_the_log_is_never_written_through_a_symlink(tmp_path):
    folder = tmp_path / "img-samples"
    folder.mkdir()
    elsewhere = tmp_path / "important.txt"
    elsewhere.write_text("keep\n")
    (folder / "invoke_log.md").symlink_to(elsewhere)
    path, note = outputs.write_image(tmp_path, req(8), RED, MODEL, 1, 1)
    assert path.name == "000001.8.png" and Image.open(path).text["Dream"]
    assert note == (
        f"000001.8.png is saved, but not listed in invoke_log.md: {folder / 'invoke_log.md'} is a symbolic link; "
        "the log is not written through it"
    )
    assert elsewhere.read_text() == "keep\n"


# ---- folders that cannot take files


def test_an_outdir_that_is_a_file_or_unwritable_is_refused_before_anything_is_made(tmp_path, monkeypatch):
    file = tmp_path / "afile"
    file.write_text("x")
    with pytest.raises(outputs.WriteError) as e:
        outputs.prepare_outdir(file)
    assert e.value.show() == f"error: {file} is a file, not a folder\n{WHERE_HINT}"
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "img-samples").write_text("x")
    with pytest.raises(outputs.WriteError, match="img-samples is a file, not a folder"):
        outputs.prepare_outdir(tmp_path / "o")

    def read_only(self, *a, **k):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "touch", read_only)  # tests run as root: chmod would not stop a write
    with pytest.raises(outputs.WriteError) as e:
        outputs.prepare_outdir(tmp_path / "ro")
    assert (
        e.value.show()
        == f"error: cannot save images in {tmp_path / 'ro' / 'img-samples'}: the file system is read-only\n{WHERE_HINT}"
    )


def test_launch_with_a_bad_outdir_exits_2_with_a_message_and_no_traceback(tiny_config, tmp_path, capsys, monkeypatch):
    from invoke_shell.cli import main

    for var in ("HF_HUB_OFFLINE", "HF_HUB_DISABLE_PROGRESS_BARS", "HF_HUB_DISABLE_TELEMETRY", "TOKENIZERS_PARALLELISM"):
        monkeypatch.setenv(var, os.environ.get(var, "1"))  # main sets them; put them back after
    file = tmp_path / "afile"
    file.write_text("x")
    assert main(["--config", str(tiny_config), "--outdir", str(file), "--history", str(tmp_path / "h")]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {file} is a file, not a folder\n{WHERE_HINT}\n"
    assert file.read_text() == "x"


# ---- in the shell: a full disk, !save, -o


def test_a_full_disk_stops_the_line_keeps_the_picture_and_save_writes_it(make_shell, tmp_path, monkeypatch):
    shell = make_shell()
    shell.lines.clear()
    out = tmp_path / "out" / "img-samples"
    fill_disk_after(monkeypatch, 2)
    shell.handle("a red circle -s 1 -S 5 -n 12")
    assert shell.lines[0] == f">> writing to {out} (a new folder)"
    assert shell.lines[-1] == (
        f"error: could not save 000003.7.png in {out}: the disk is full; the line stopped, 9 of its 12 images not made\n"
        "  hint: the picture is kept in memory: !save PATH writes it to another file or folder"
    )
    assert names(out) == ["000001.5.png", "000002.6.png", "invoke_log.md"]
    assert len((out / "invoke_log.md").read_text().splitlines()) == 2

    monkeypatch.undo()
    keep = tmp_path / "keep"
    keep.mkdir()
    shell.lines.clear()
    shell.handle(f"!save {keep}")
    assert shell.lines == [f">> saved {keep / '000001.7.png'}"]
    assert '"a red circle" -s 1 -S 7' in Image.open(keep / "000001.7.png").text["Dream"]
    shell.lines.clear()
    shell.handle(f"!save {keep / '000001.7.png'}")
    assert shell.lines == [
        f"error: {keep / '000001.7.png'} already exists; it is never overwritten\n"
        "  hint: give another file name, or a folder"
    ]
    shell.lines.clear()
    shell.handle(f"!save '{tmp_path / 'with space.png'}'")
    assert shell.lines == [f">> saved {tmp_path / 'with space.png'}"]
    shell.lines.clear()
    shell.handle("!history")  # the saved copy joined the session's images, once
    assert [line.split()[1] for line in shell.lines[:-1]] == ["000001.5.png", "000002.6.png", "000001.7.png"]


def test_save_before_any_image_and_a_bad_name(make_shell, tmp_path):
    shell = make_shell()
    shell.lines.clear()
    shell.handle(f"!save {tmp_path}")
    assert shell.lines[-1] == (
        "error: no image has been made this session\n  hint: make one first; !save writes the last one"
    )
    shell.handle("a red circle -s 1 -S 2")
    shell.handle(f"!save {tmp_path / 'x.jpg'}")
    assert shell.lines[-1].startswith(f"error: {tmp_path / 'x.jpg'} is not a folder and its name does not end in .png")
    shell.handle(f"!save {tmp_path / 'no' / 'x.png'}")
    assert shell.lines[-1].startswith(f"error: folder {tmp_path / 'no'} does not exist")
    shell.handle(f"!save {tmp_path / 'keep' / 'new'}/")  # a trailing slash: a folder, made for it
    assert shell.lines[-1] == f">> saved {tmp_path / 'keep' / 'new' / '000001.2.png'}"


def test_o_expands_home_and_says_where_it_writes(make_shell, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cwd = tmp_path / "a" / "b"
    cwd.mkdir(parents=True)
    monkeypatch.chdir(cwd)
    shell = make_shell()
    shell.handle("a red circle -s 1 -S 3 -o ~/pics")
    where = tmp_path / "home" / "pics" / "img-samples"
    assert f">> writing to {where} (a new folder)" in shell.lines
    assert names(where) == ["000001.3.png", "invoke_log.md"] and not (cwd / "~").exists()
    shell.lines.clear()
    shell.handle("a red circle -s 1 -S 3 -o ~/pics")  # known folder: no word about it
    assert not any(line.startswith(">> writing to") for line in shell.lines)
    shell.handle("a red circle -s 1 -S 4 -o ../up")  # relative to --outdir (tmp_path/out), shown resolved
    assert f">> writing to {tmp_path / 'up' / 'img-samples'} (a new folder)" in shell.lines
    shell.lines.clear()
    shell.handle("a red circle -s 1 -S 4 -o ../up")
    assert f">> writing to {tmp_path / 'up' / 'img-samples'}" in shell.lines  # `..` is said every time
    assert any(line.startswith(f"{tmp_path / 'up' / 'img-samples' / '000002.4.png'}  seed 4") for line in shell.lines)
    shell.handle("a red circle -s 1 -S 5 -o cats")  # under --outdir, not the current folder
    assert names(tmp_path / "out" / "cats" / "img-samples") == ["000001.5.png", "invoke_log.md"]
    assert not (cwd / "cats").exists()


def test_an_unwritable_line_folder_is_refused_before_the_image_is_made(make_shell, tmp_path, monkeypatch):
    shell = make_shell()
    shell.lines.clear()

    def denied(self, *a, **k):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "touch", denied)
    shell.handle(f"a red circle -s 1 -S 3 -o {tmp_path / 'locked'}")
    assert shell.lines == [
        f"error: cannot save images in {tmp_path / 'locked' / 'img-samples'}: permission denied\n{WHERE_HINT}"
    ]
    assert shell.worker.status().made == ()


def test_a_log_file_that_cannot_be_written_is_said_once_never_a_logging_traceback(tmp_path, capsys):
    import errno
    import logging

    from invoke_shell.logs import route_logs

    class FullDisk:
        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self):
            pass

    path = route_logs(tmp_path, verbose=False)
    handler = next(h for h in logging.getLogger().handlers if h.name == "invoke_shell_handler")
    logging.getLogger("invoke_shell").error("first")
    handler.stream = FullDisk()
    for _ in range(3):
        logging.getLogger("invoke_shell").error("more")
    logging.getLogger().removeHandler(handler)
    err = capsys.readouterr().err
    assert err.count(f">> log file {path} cannot be written") == 1 and "No space left" in err
    assert "Logging error" not in err and "Traceback" not in err
    assert "first" in path.read_text()


def test_a_log_path_that_is_a_folder_or_a_link_is_never_written_through(tmp_path, capsys):
    import logging

    from invoke_shell.logs import route_logs

    target = tmp_path / "elsewhere.txt"
    target.write_text("keep\n")
    (tmp_path / "invoke_shell.log").symlink_to(target)
    route_logs(tmp_path, verbose=False)
    logging.getLogger("invoke_shell").error("should not land anywhere")
    for h in [h for h in logging.getLogger().handlers if h.name == "invoke_shell_handler"]:
        logging.getLogger().removeHandler(h)
    assert target.read_text() == "keep\n"
    assert "is a folder or a symbolic link; nothing is logged to it" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without a GPU")
@pytest.mark.parametrize(
    "flag, message",
    [
        (
            "--offload",
            "error: --offload moves a model's parts to a GPU while they run, and there is no GPU here\n"
            "  hint: leave --offload out: on the CPU the model is in main memory already\n",
        ),
        (
            "--compile",
            "error: --compile is for CUDA GPUs (torch.compile with CUDA graphs), and there is none here\n"
            "  hint: leave --compile out\n",
        ),
    ],
)
def test_gpu_only_flags_without_a_gpu_are_refused_at_launch(tiny_config, tmp_path, capsys, monkeypatch, flag, message):
    from invoke_shell.cli import main

    for var in ("HF_HUB_OFFLINE", "HF_HUB_DISABLE_PROGRESS_BARS", "HF_HUB_DISABLE_TELEMETRY", "TOKENIZERS_PARALLELISM"):
        monkeypatch.setenv(var, os.environ.get(var, "1"))
    lines = tmp_path / "lines.txt"
    lines.write_text("a red circle -S 1\n")
    argv = ["--config", str(tiny_config), "--outdir", str(tmp_path / "out"), "--from_file", str(lines), flag]
    assert main(argv) == 2
    assert capsys.readouterr().err == message
    assert not (tmp_path / "out").exists()  # nothing written: the run never started


def test_a_long_run_s_contact_sheet_wraps_into_bands_of_steps():
    """150 steps side by side made a sheet 19,221 px wide; past BAND steps it wraps, each band
    the sheet of its own steps, row labels included."""
    import numpy as np

    from invoke_shell.files import intermediates

    rng = np.random.default_rng(1)
    frames = [
        (
            intermediates.StepInfo(k, 40, 999.0 - 20 * k, 14.0 - 0.3 * k, 1.0),
            Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)),
            Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)),
        )
        for k in range(1, 41)
    ]
    columns = [intermediates.sheet_column(f) for f in frames]
    sheet = intermediates.contact_sheet(columns)
    first = intermediates.contact_sheet(columns[: intermediates.BAND])
    second = intermediates.contact_sheet(columns[intermediates.BAND :])
    assert sheet.size == (first.width, 2 * first.height)
    assert np.array_equal(np.asarray(sheet.crop((0, 0, *first.size))), np.asarray(first))
    below = np.asarray(sheet.crop((0, first.height, second.width, sheet.height)))
    assert np.array_equal(below, np.asarray(second))
    assert (np.asarray(sheet.crop((second.width, first.height, sheet.width, sheet.height))) == 255).all()


def test_one_writer_process_however_many_threads_ask_at_once():
    # two processes meant a folder opened in one and finished in the other: "the writer stopped"
    import threading

    writer = StepWriter()
    start, got = threading.Barrier(8), []

    def ask():
        start.wait()
        got.append(writer.process())

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert len({id(p) for p in got}) == 1
    finally:
        writer.shutdown()
        assert not got[0].is_alive()


def test_steps_from_a_gpu_are_copied_on_a_thread_and_all_written_before_the_folder_is_named(tmp_path):
    # a GPU's latents: the copy to the CPU waits for the GPU, so a thread makes it, not the generation
    from types import SimpleNamespace

    from safetensors.torch import load_file

    class OnGpu:
        device = SimpleNamespace(type="cuda")

        def __init__(self, t: torch.Tensor) -> None:
            self.t = t

        def detach(self) -> torch.Tensor:
            return self.t

    writer = StepWriter()
    try:
        steps = StepFiles(tmp_path, PREVIEWER, writer)
        for k in (1, 2, 3):
            s = _step(k)
            steps.step(
                type(s)(k, 3, s.timestep, s.sigma, OnGpu(s.latents), OnGpu(s.denoised), 1.0),
                (Image.new("RGB", (8, 8), (60 * k, 0, 0)), RED),
            )
        steps.finish(tmp_path / "000001.5.png").result()
    finally:
        writer.shutdown()
    folder = tmp_path / "intermediates" / "000001.5"
    assert [load_file(folder / f"step_{k:03d}.safetensors")["latents"][0, 0, 0, 0].item() for k in (1, 2, 3)] == [
        1,
        2,
        3,
    ]
    assert Image.open(folder / "steps.gif").n_frames == 3


# ---- what a line with intermediates says, and when


def test_a_file_named_intermediates_costs_only_the_steps_and_the_line_says_so(make_shell, tmp_path):
    out = tmp_path / "out" / "img-samples"
    out.mkdir(parents=True)
    (out / "intermediates").write_text("not a folder")
    shell = make_shell()
    shell.handle("a red circle -s 2 -S 1")  # the numbering looked inside it and refused every image
    shell.lines.clear()
    shell.handle("a red circle -s 2 -S 2 --save_intermediates 1")
    assert (out / "000001.1.png").exists() and (out / "000002.2.png").exists()
    assert shell.lines[0].startswith(f"{out / '000002.2.png'}  seed 2  2 steps")
    assert shell.lines[-1].startswith(
        f"error: could not make {out / 'intermediates'}: {out / 'intermediates'} is a file, not a folder; "
        "the line's images were saved without them\n  hint: "
    )
    assert (out / "intermediates").read_text() == "not a folder"


def test_each_images_intermediates_line_comes_once_its_folder_is_written(make_shell, tmp_path):
    shell = make_shell()
    shell.handle("a red circle -s 3 -S 5 -n 2 --save_intermediates 3")
    out = tmp_path / "out" / "img-samples"
    said = [line for line in shell.lines if line.startswith((str(out), "   intermediates"))]
    assert said == [
        f"{out / '000001.5.png'}  seed 5  3 steps  " + said[0].rsplit("  ", 1)[1],
        f"   intermediates: 1 step -> {out / 'intermediates' / '000001.5'}",
        f"{out / '000002.6.png'}  seed 6  3 steps  " + said[2].rsplit("  ", 1)[1],
        f"   intermediates: 1 step -> {out / 'intermediates' / '000002.6'}",
    ]
    assert sorted(p.name for p in (out / "intermediates").iterdir()) == ["000001.5", "000002.6"]


def test_strength_0_runs_no_step_and_leaves_no_empty_folder(make_shell, tmp_path):
    shell = make_shell()
    shell.handle("a red circle -s 4 -S 1")
    shell.lines.clear()
    shell.handle("a blue circle -s 4 -S 1 -I -1 -f 0 --save_intermediates 1")
    assert "   intermediates: none, no sampler step ran" in shell.lines
    assert list((tmp_path / "out" / "img-samples" / "intermediates").iterdir()) == []


def test_previews_are_the_same_pixels_whether_the_writer_or_the_shell_draws_them(tmp_path):
    # the writer draws them once it has loaded torch; before that (a session's first line) the shell does
    import numpy as np

    from invoke_shell.engines.generate import StepState

    g = torch.Generator().manual_seed(0)
    state = StepState(1, 1, 999.0, 1.0, torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 4, 8, 8, generator=g), 0.7)
    expected = [np.asarray(p) for p in PREVIEWER.pictures(state.latents * 0.7, state.denoised)]
    writer = StepWriter()
    try:
        cold = StepFiles(tmp_path, PREVIEWER, writer)
        cold.step(state)
        cold.finish(tmp_path / "000001.5.png").result()
        assert writer.ready(60)  # torch loads once the first folder is written
        warm = StepFiles(tmp_path, PREVIEWER, writer)
        warm.step(state)
        warm.finish(tmp_path / "000002.5.png").result()
        assert (cold._draws_here, warm._draws_here) == (True, False)
    finally:
        writer.shutdown()
    for k in (1, 2):
        folder = tmp_path / "intermediates" / f"00000{k}.5"
        got = [np.asarray(Image.open(folder / f"step_001.{kind}.png")) for kind in ("xt", "x0")]
        assert all(np.array_equal(a, b) for a, b in zip(got, expected))
