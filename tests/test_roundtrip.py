"""`parse_line(format_request(r)) == r` for generated requests: prompts with both kinds of quote
and backslashes, paths with spaces, sweeps, grids, variations, every line switch."""

from __future__ import annotations

from conftest import DEFAULTS
from hypothesis import given, settings
from hypothesis import strategies as st

from invoke_shell.line.parsing import format_request, parse_line, quote_prompt
from invoke_shell.line.requests import LineRequest, expand
from invoke_shell.schedulers import MAX_SCHEDULE, SAMPLERS

# prompts as the parser keeps them: single spaces, no unbalanced [ ], not empty
words = st.text(alphabet=st.sampled_from(list("abcxyz\"'\\()[]:,.+-!#é中 ")), min_size=1, max_size=12)


def _prompt(raw: str) -> str | None:
    text = " ".join(raw.replace("[", " ").replace("]", " ").split())
    return text or None


prompts = st.builds(_prompt, words).filter(lambda p: p is not None)
negatives = st.one_of(st.just(""), st.builds(_prompt, words).filter(lambda p: p is not None).map(lambda p: f" [{p}]"))
paths = st.sampled_from(["a.png", "my drawings/fire.png", "it's here.png", "-1", "last", "/tmp/x y/z.png"])
floats = st.floats(0, 1, allow_nan=False).map(lambda x: round(x, 3))


@st.composite
def init_shaping(draw: st.DrawFn, init: str | None) -> dict:
    """--fit, resize modes, masks, outcrop, the hires pass and -U, drawn only where the parser
    accepts them (the init image's switches need -I; -U with -I alone takes no mask or outcrop)."""
    scales = st.floats(1.01, 8, allow_nan=False).map(lambda x: round(x, 2))
    upscale = draw(st.one_of(st.just(()), st.tuples(scales), st.tuples(scales, floats)))
    hires = draw(st.booleans())
    got: dict = {"hires_fix": hires, "upscale": upscale}
    if hires or upscale:
        got.update(
            hires_scale=draw(st.floats(1, 8, allow_nan=False).map(lambda x: round(x, 2))),
            hires_strength=draw(floats),
            hires_upscaler=draw(st.sampled_from(["lanczos", "latent"])),
        )
    if init is None:
        return got
    fit = draw(st.booleans())
    got.update(fit=fit, resize_mode="just" if fit else draw(st.sampled_from(["just", "crop", "fill"])))
    if upscale and not hires:
        return got
    sides = st.lists(st.tuples(st.sampled_from(["top", "bottom", "left", "right"]), st.integers(8, 1024)), max_size=4)
    mask = draw(st.one_of(st.none(), paths.filter(lambda p: p not in ("-1", "last"))))
    got.update(
        init_mask=mask,
        invert_mask=mask is not None and draw(st.booleans()),
        mask_blur=draw(st.integers(0, 64)),
        outcrop=tuple(dict(draw(sides)).items()),  # each side once
    )
    return got


@st.composite
def lines(draw: st.DrawFn) -> LineRequest:
    init = draw(st.one_of(st.none(), paths))
    sweepable = ["steps", "cfg_scale", "sampler"] + (["strength"] if init is not None else [])  # -f needs an -I
    sweep_names = draw(st.lists(st.sampled_from(sweepable), max_size=2, unique=True))
    values = {
        "steps": draw(st.lists(st.integers(1, 1000), min_size=2, max_size=3, unique=True)),
        "cfg_scale": draw(
            st.lists(st.floats(0, 50, allow_nan=False).map(lambda x: round(x, 2)), min_size=2, max_size=3, unique=True)
        ),
        "sampler": draw(st.lists(st.sampled_from(list(SAMPLERS)), min_size=2, max_size=3, unique=True)),
        "strength": draw(st.lists(floats, min_size=2, max_size=3, unique=True)),
    }
    sweep = tuple((name, tuple(values[name])) for name in sweep_names)
    txt2img = init is None
    # --exact_steps is refused when parsed where a strength and step count need a schedule
    # longer than the model's 1000 timesteps (strength 0 included), so it is drawn only where
    # every pair the line runs fits.
    strengths = dict(sweep).get("strength", (values["strength"][0],))
    steps = dict(sweep).get("steps", (values["steps"][0],))
    exact_fits = all(n <= s * MAX_SCHEDULE for n in steps for s in strengths)
    variations = draw(st.lists(st.tuples(st.integers(0, 2**32 - 1), floats), max_size=3)) if txt2img else []
    template = draw(st.booleans())  # a prompt template, with the switches that only it takes
    prompt = draw(prompts) + draw(negatives)
    if template:
        prompt = " ".join((prompt.replace("#", "") + " {x|y}").split())  # '#' would start a comment in a template
    return LineRequest(
        prompt=prompt,
        steps=values["steps"][0],
        cfg_scale=values["cfg_scale"][0],
        sampler=values["sampler"][0],
        width=draw(st.integers(1, 512)) * 8,
        height=draw(st.integers(1, 512)) * 8,
        seed=draw(st.one_of(st.none(), st.integers(-1000, 2**32 - 1))),
        init_img=init,
        strength=values["strength"][0],
        exact_steps=draw(st.booleans()) and not txt2img and exact_fits,
        with_variations=tuple(variations),
        iterations=1 if sweep else draw(st.integers(1, 1000)),
        variation_amount=draw(floats) if txt2img else 0.0,
        grid=draw(st.booleans()),
        max_prompts=draw(st.integers(1, 1000)) if template else 100,
        random_prompts=draw(st.one_of(st.none(), st.integers(1, 1000))) if template else None,
        vary_seed=draw(st.booleans()) and template,
        log_tokenization=draw(st.booleans()),
        preview=draw(st.booleans()),
        save_intermediates=draw(st.one_of(st.none(), st.integers(1, 1000))),
        intermediates_decode=draw(st.sampled_from(["approx", "vae"])),
        outdir=draw(st.one_of(st.none(), st.sampled_from(["o", "out dir/x"]))),
        **draw(init_shaping(init)),
        sweep=sweep,
    )


@settings(max_examples=400, deadline=None)
@given(lines())
def test_every_line_request_survives_format_and_parse(line):
    assert parse_line(format_request(line), DEFAULTS) == line


@settings(max_examples=200, deadline=None)
@given(lines(), st.integers(0, 2**32 - 1))
def test_every_image_request_survives_format_and_parse(line, seed):
    init = None if line.init_img is None else "resolved/" + line.init_img
    for image in expand(line, seed, init, new_seed=lambda: 99)[:4]:
        again = parse_line(format_request(image), DEFAULTS)
        assert expand(again, again.seed, again.init_img, new_seed=lambda: 0) == [image]


@given(prompts)
def test_quoted_prompt_reads_back_exactly(prompt):
    line = parse_line(quote_prompt(prompt) + " -s 3", DEFAULTS)
    assert line.prompt == prompt


def test_both_quote_kinds_are_kept():
    prompt = """he said "it's" \\ fine\\"""
    written = quote_prompt(prompt)
    assert written == '"he said \\"it\'s\\" \\ fine\\\\"'
    assert parse_line(written, DEFAULTS).prompt == prompt
