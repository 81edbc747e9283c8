"""The tiny-shapes world: palette, caption grammar, drawings and a judge of drawings.

Everything here is pure Pillow/numpy so the training script, the evaluation script and the
tests share one definition of what "a red circle on a blue background" looks like.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SIZE = 64

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 60),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 40),
    "orange": (245, 140, 20),
    "purple": (140, 50, 180),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
COLOURS = tuple(PALETTE)
SHAPES = ("circle", "square", "triangle")
LORA_SHAPES = ("cross",)  # not in the base model: taught by the LoRA that train_lora.py makes
# How people write: synonyms that name a palette colour or a shape, sizes the model ignores
# (it draws shapes of every size), and the small words of English sentences.
COLOUR_SYNONYMS = {"violet": "purple"}
SHAPE_SYNONYMS = {"disc": "circle", "ball": "circle", "dot": "circle", "box": "square"}
SIZES = ("tiny", "small", "little", "big", "large", "huge")
FILLER = ("simple", "flat", "plain", "solid", "bright", "picture", "image", "drawing", "photo", "shape")
GRAMMAR_WORDS = (
    *("a", "an", "the", "one", "of", "on", "over", "with", "in", "front", "against", "and", "background"),
    *COLOURS,
    *SHAPES,
    *COLOUR_SYNONYMS,
    *SHAPE_SYNONYMS,
    *SIZES,
    *FILLER,
)


@dataclass(frozen=True)
class Drawing:
    shape: str
    colour: str
    background: str
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 of the shape, pixels

    @property
    def caption(self) -> str:
        return f"a {self.colour} {self.shape} on a {self.background} background"


def random_drawing(rng: random.Random) -> Drawing:
    colour, background = rng.sample(COLOURS, 2)
    side = rng.randint(18, 44)
    x0 = rng.randint(2, SIZE - 2 - side)
    y0 = rng.randint(2, SIZE - 2 - side)
    return Drawing(rng.choice(SHAPES), colour, background, (x0, y0, x0 + side, y0 + side))


def triangle_points(box: tuple[float, float, float, float]) -> list[tuple[float, float]]:
    x0, y0, x1, y1 = box
    return [((x0 + x1) / 2, y0), (x1, y1), (x0, y1)]


def cross_bars(box: tuple[float, ...]) -> list[tuple[float, float, float, float]]:
    """A plus-shaped cross filling the box: a vertical and a horizontal bar, a third as thick."""
    x0, y0, x1, y1 = box
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 6
    return [(cx - half, y0, cx + half, y1), (x0, cy - half, x1, cy + half)]


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[float, ...], fill: object) -> None:
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "cross":
        for bar in cross_bars(box):
            draw.rectangle(bar, fill=fill)  # type: ignore[arg-type]
    else:
        draw.polygon(triangle_points(box), fill=fill)  # type: ignore[arg-type]


def render(d: Drawing) -> Image.Image:
    """Draw at 4x and downsample so edges are anti-aliased like a real picture."""
    k = 4
    img = Image.new("RGB", (SIZE * k, SIZE * k), PALETTE[d.background])
    draw = ImageDraw.Draw(img)
    box = tuple(v * k for v in d.box)
    _draw_shape(draw, d.shape, box, PALETTE[d.colour])
    return img.resize((SIZE, SIZE), Image.Resampling.BOX)


def caption_variants(d: Drawing, rng: random.Random) -> str:
    """The canonical caption a third of the time, short forms sometimes, else natural phrasing."""
    r = rng.random()
    if r < 0.06:
        return f"a {d.colour} {d.shape}"
    if r < 0.09:
        return f"a {d.shape} on a {d.background} background"
    if r < 0.4:
        return d.caption
    return natural_caption(d, rng)


def _article(next_word: str, rng: random.Random) -> str:
    r = rng.random()
    if r < 0.6:
        return "an" if next_word[0] in "aeiou" else "a"
    if r < 0.7:
        return "a"  # "a orange": what people typed to the first models, still understood
    return rng.choice(("the", "one", ""))


def _phrase(words: list[str], rng: random.Random) -> str:
    return " ".join(w for w in [_article(words[0], rng), *words] if w)


def natural_caption(d: Drawing, rng: random.Random) -> str:
    """One of the ways a person describes the drawing: articles, sizes, synonyms, word order,
    punctuation, and now and then a word the model has never seen (spelled out in characters),
    which it learns to ignore. Upper case needs no training: the tokenizer lowercases."""
    colour = next((k for k, v in COLOUR_SYNONYMS.items() if v == d.colour and rng.random() < 0.5), d.colour)
    shape = next((k for k, v in SHAPE_SYNONYMS.items() if v == d.shape and rng.random() < 0.3), d.shape)
    if shape == "box" and rng.random() < 0.5:
        shape = "square box"
    words = [colour, shape]
    if rng.random() < 0.3:
        words.insert(0, rng.choice(SIZES))
    if rng.random() < 0.15:
        words.insert(rng.randrange(len(words)), rng.choice(FILLER[:5]))
    subject = _phrase(words, rng)
    bg = d.background
    background = _phrase([bg, "background"], rng)
    form = rng.randrange(10)
    text = [
        f"{subject} on {background}",
        f"{subject} on {bg}",
        f"{subject} over {background}",
        f"{subject} in front of {background}",
        f"{subject} against {background}",
        f"{subject} with {background}",
        f"on {rng.choice((bg, background))}, {subject}",
        f"{background} with {subject}",
        f"{subject}, {background}",
        f"{background} and {subject}",
    ][form]
    if rng.random() < 0.12:
        text = f"{rng.choice(('picture', 'image', 'drawing', 'photo'))} of {text}"
    if rng.random() < 0.08:
        unknown = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 8)))
        cut = text.split(" ")
        cut.insert(rng.randrange(len(cut) + 1), unknown)
        text = " ".join(cut)
    return text + rng.choice(("", "", "", ".", "!"))


# ---------------------------------------------------------------- judging a picture


def nearest_palette(pixels: np.ndarray) -> np.ndarray:
    """Index into COLOURS of the nearest palette colour for each pixel (..., 3) uint8."""
    ref = np.array([PALETTE[c] for c in COLOURS], dtype=np.float32)
    d = ((pixels[..., None, :].astype(np.float32) - ref) ** 2).sum(-1)
    return d.argmin(-1)


def _template(shape: str, box: tuple[float, float, float, float]) -> np.ndarray:
    img = Image.new("L", (SIZE * 4, SIZE * 4), 0)
    draw = ImageDraw.Draw(img)
    _draw_shape(draw, shape, tuple(v * 4 for v in box), 255)
    return np.asarray(img.resize((SIZE, SIZE), Image.Resampling.BOX)) >= 128


@dataclass(frozen=True)
class Judgement:
    background: str
    colour: str | None
    shape: str | None


def judge(image: Image.Image, shapes: tuple[str, ...] = SHAPES) -> Judgement:
    """Read back background colour, shape colour and shape from a 64x64 picture.

    Background: the most common nearest-palette colour of the border pixels.
    Colour: the most common nearest-palette colour among the other pixels.
    Shape: the template (circle, square, upright triangle) drawn in the mask's bounding box
    that overlaps the mask best (intersection over union). Unlike a bounding-box fill ratio
    this still calls a square with rounded corners a square.
    """
    px = np.asarray(image.convert("RGB").resize((SIZE, SIZE)))
    idx = nearest_palette(px)
    border = np.concatenate([idx[0], idx[-1], idx[:, 0], idx[:, -1]])
    bg = int(np.bincount(border, minlength=len(COLOURS)).argmax())
    inner = idx != bg
    if inner.sum() < 12:
        return Judgement(COLOURS[bg], None, None)
    colour = int(np.bincount(idx[inner], minlength=len(COLOURS)).argmax())
    mask = idx == colour
    ys, xs = np.nonzero(mask)
    box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
    scores = {}
    for shape in shapes:
        t = _template(shape, box)
        scores[shape] = (t & mask).sum() / max((t | mask).sum(), 1)
    return Judgement(COLOURS[bg], COLOURS[colour], max(scores, key=scores.get))


def palette_distance(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute pixel difference (0-255) between two pictures."""
    x = np.asarray(a.convert("RGB"), dtype=np.float32)
    y = np.asarray(b.convert("RGB").resize(a.size), dtype=np.float32)
    return float(np.abs(x - y).mean())
