"""Pictures in the terminal: !show, and the live --preview in the toolbar."""

from __future__ import annotations

from PIL import Image

from invoke_shell.shell.terminal_view import toolbar_rows


def test_toolbar_preview_is_half_blocks_with_the_picture_colours():
    img = Image.new("RGB", (64, 64), (255, 0, 0))
    img.paste((0, 0, 255), (0, 32, 64, 64))  # bottom half blue
    rows = toolbar_rows(img, width=16)
    cells = [(style, text) for style, text in rows if text == "▀"]
    assert len(cells) == 16 * 8  # 16 columns, 16 pixel rows, two per cell
    assert cells[0][0].startswith("fg:#ff0000 bg:#ff0000")
    assert cells[-1][0].startswith("fg:#0000ff bg:#0000ff")
    assert sum(text == "\n" for _, text in rows) == 8


def test_show_over_a_pipe_draws_nothing_and_says_so(make_shell, tmp_path):
    shell = make_shell()
    shell.handle("a red circle -S 1 -s 2")
    shell.lines.clear()
    shell.handle("!show")
    assert shell.lines == [
        f">> not drawing {tmp_path / 'out' / 'img-samples' / '000001.1.png'}: "
        "the output is not a terminal that shows pictures"
    ]
    shell.lines.clear()
    shell.handle("!show -3")
    assert "this session has made 1 image(s)" in shell.lines[0]


def test_preview_fills_the_toolbar_while_the_image_is_made(make_shell):
    import threading
    import time

    shell = make_shell()
    run = threading.Thread(target=shell.handle, args=("a red circle -S 2 -s 500 --preview",))
    run.start()
    end = time.time() + 60
    while not isinstance(shell.toolbar(), list):  # the picture appears after the first step
        assert time.time() < end and run.is_alive(), "no preview in the toolbar"
        time.sleep(0.02)
    rows = shell.toolbar()
    assert any(text == "▀" for _, text in rows) and "running" in rows[-1][1]
    assert shell.worker.cancel_running()
    run.join(timeout=60)
    assert shell.worker.status().preview is None and isinstance(shell.toolbar(), str)  # gone once it stops
