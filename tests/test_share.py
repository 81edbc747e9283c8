"""A prompt file split across processes with accelerate launch: each image is made once, by one
process, into the shared folder, and equals what one process makes for the same seed."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from invoke_shell.session.share import Share

LINES = [
    "a red circle -S 5 -n 3 -s 2",  # images 0-2: split between the processes
    "a green square -S 9 -s 2",  # image 3
    "a blue circle -S 11 -s 2 -n 2 -g",  # a grid: the whole line on one process
    "a {red|blue} square -S 3 -s 2",  # a template sheet: whole, on the other one
    "a yellow circle -s 2 -n 2",  # random seeds, the same draw in both processes
]


def test_images_are_dealt_round_robin_and_sheet_lines_whole():
    shares = [Share(rank, 2, base_seed=7) for rank in range(2)]
    picks = [
        [s.pick(n, whole) for n, whole in [(3, False), (1, False), (2, True), (2, True), (2, False)]] for s in shares
    ]
    # loads after each line: (2, 1), (2, 2), (4, 2), (4, 4), (5, 5)
    assert picks[0] == [[0, 2], [], [0, 1], [], [0]]
    assert picks[1] == [[1], [0], [], [0, 1], [1]]
    assert [s.new_seed() for s in shares[:1]] == [Share(1, 2, base_seed=7).new_seed()]  # one draw everywhere


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(cmd: list[str], tiny_config: Path, out: Path, script: Path) -> subprocess.CompletedProcess[str]:
    flags = ["--config", str(tiny_config), "--outdir", str(out), "--from_file", str(script), "--device", "cpu"]
    env = {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(out.parent)}
    return subprocess.run(cmd + flags, capture_output=True, text=True, timeout=300, env=env)


def _images(out: Path) -> dict[str, list[Path]]:
    """Files by the seed in their names (sheets kept apart)."""
    found: dict[str, list[Path]] = {}
    for p in sorted((out / "img-samples").glob("*.png")):
        kind = p.name.split(".")[2] if p.name.count(".") > 2 else "image"
        found.setdefault(f"{kind}:{p.name.split('.')[1]}", []).append(p)
    return found


def test_two_processes_make_each_image_once_and_equal_to_one_process(tiny_config, tmp_path):
    script = tmp_path / "prompts.txt"
    script.write_text("\n".join(LINES) + "\n")
    one = _run([sys.executable, "-m", "invoke_shell"], tiny_config, tmp_path / "one", script)
    assert one.returncode == 0, one.stderr
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    two = _run(
        launch + ["--main_process_port", str(_free_port()), "-m", "invoke_shell"], tiny_config, tmp_path / "two", script
    )
    assert two.returncode == 0, two.stderr[-3000:]

    made = sorted((tmp_path / "two" / "img-samples").glob("*.png"))
    numbers = [p.name.split(".")[0] for p in made]
    assert len(numbers) == len(set(numbers)) == 3 + 1 + (2 + 1) + (2 + 1) + 2  # images, grid, sheet
    kinds = Counter(p.name.split(".")[2] for p in made if p.name.count(".") > 2)
    assert kinds == {"grid": 1, "prompts": 1}

    a, b = _images(tmp_path / "one"), _images(tmp_path / "two")
    for key in ("image:5", "image:6", "image:7", "image:9", "image:11", "image:12", "image:3"):
        assert len(a[key]) == len(b[key]), key
        for x, y in zip(a[key], b[key]):
            assert np.array_equal(np.asarray(Image.open(x)), np.asarray(Image.open(y))), key
    random_seeds = [k for k in b if k.startswith("image:") and k not in a]
    assert len(random_seeds) == 2  # the random line's two seeds: drawn once, made once

    log = (tmp_path / "two" / "img-samples" / "invoke_log.md").read_text()
    assert all(log.count(f"`{p.name}`") == 1 for p in made)  # one combined log, every file once
