"""Prompt weighting (compel) and long prompts."""

from __future__ import annotations

import numpy as np
import pytest

from invoke_shell.engines.prompts import is_weighted, to_compel
from invoke_shell.line.requests import ImageRequest


@pytest.mark.parametrize(
    "text, weighted",
    [
        ("a red circle", False),
        ("a well-made cat", False),
        ("a (red)1.3 circle", True),
        ("a red+ circle", True),
        ("a red circle-", True),
        ("a (red:1.3) circle", True),
        ("x-ray, blue", False),
        ("(red)", False),
    ],
)
def test_weighting_is_recognised(text, weighted):
    assert is_weighted(text) is weighted


def test_a1111_weights_convert_to_compel():
    assert to_compel("a (red:1.3) circle, (blue: 0.8)") == "a (red)1.3 circle, (blue)0.8"


def req(prompt, **kw):
    return ImageRequest(prompt, 4, 7.5, "k_lms", 64, 64, seed=3, **kw)


def test_weights_change_the_picture_and_both_syntaxes_agree(engine):
    plain = engine.generate(req("a red circle")).pixels
    invoke = engine.generate(req("a (red)1.5 circle")).pixels
    a1111 = engine.generate(req("a (red:1.5) circle")).pixels
    assert np.abs(plain - invoke).max() > 1e-3
    assert np.array_equal(invoke, a1111)
    neutral = engine.generate(req("a (red)1.0 circle")).pixels  # weight 1 through compel = plain
    assert np.abs(plain - neutral).max() < 1e-4


def test_long_prompts_are_chunked_not_cut(engine):
    window = engine.prompts.window
    words = ["red circle blue square"] * 6
    long = " ".join(words)
    assert engine.prompts.token_count(long) > window
    cut = " ".join(long.split()[:window])
    assert np.abs(engine.generate(req(long)).pixels - engine.generate(req(cut)).pixels).max() > 1e-3


def test_tokenization_report(make_shell):
    shell = make_shell()
    shell.handle("a (red)1.3 circle+ -S 1 -s 2 -t")
    assert any("prompt: 3 tokens in 1 chunk(s) of 14: a red(1.3) circle(1.1)" in line for line in shell.lines)
    shell.lines.clear()
    shell.handle("a shiny (red)1.3 circle+ -S 1 -s 2 -t")  # what the model reads: "shiny" left out
    assert any("prompt: 3 tokens in 1 chunk(s) of 14: a red(1.3) circle(1.1)" in line for line in shell.lines)
