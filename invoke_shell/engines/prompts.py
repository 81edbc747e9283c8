"""Prompt weighting and long prompts, through the compel library.

Plain prompts that fit the text encoder go through diffusers' own encoder (so pixels equal
diffusers'); a prompt with weights - InvokeAI 2.3's `(word)1.3`, `word+`, `word-`, or
AUTOMATIC1111's `(word:1.3)`, converted first - or one longer than the encoder's window is
encoded by compel, long ones in chunks rather than cut.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from typing import Any

import torch

_A1111 = re.compile(r"\(([^():]+):\s*([0-9]*\.?[0-9]+)\)")
_WORD = re.compile(r"[^\W\d_]+")  # runs of letters: the words of a prompt, weights and punctuation aside
# A vocabulary this small was built for a closed caption grammar (tiny-shapes: 160 tokens), where
# a word that is not one whole token is spelled out letter by letter and means nothing to the
# model. CLIP's 49,408 tokens split rare words into pieces the model does know: never said there.
CLOSED_VOCABULARY = 5000
_TAG = re.compile(r"(<[^<>]*>)")  # an embedding's token, <star-shape>: one token, never taken apart
_EMPTY_GROUP = re.compile(r"\(\s*(?::\s*[0-9.]*)?\s*\)(?:[0-9]*\.?[0-9]+|[+\-]+)?")  # (shiny)1.2 with shiny gone
_WEIGHTED = re.compile(r"\)\s*[0-9]*\.?[0-9]+|[\w)][+\-]+(?=[\s,.]|$)")


def to_compel(text: str) -> str:
    """AUTOMATIC1111's (word:1.3) becomes compel's (word)1.3."""
    return _A1111.sub(r"(\1)\2", text)


def is_weighted(text: str) -> bool:
    return bool(_WEIGHTED.search(to_compel(text)))


CACHED_PROMPTS = 16  # (prompt, negative) pairs whose embeddings are kept between images
_SD_NAMES = ("prompt_embeds", "negative_prompt_embeds")
_XL_NAMES = (*_SD_NAMES, "pooled_prompt_embeds", "negative_pooled_prompt_embeds")


class PromptEncoder:
    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe
        self._compel: Any = None
        self.xl = getattr(pipe, "text_encoder_2", None) is not None  # SDXL: two encoders
        self._cache: OrderedDict[tuple[Any, ...], dict[str, torch.Tensor]] = OrderedDict()

    def embeddings(
        self, positive: str, negative: str, adapters: tuple[Any, ...], lora: bool = False
    ) -> dict[str, torch.Tensor]:
        """The pipeline's embedding arguments for a prompt and its negative (SDXL adds the pooled
        ones), encoded once while the same LoRAs and embeddings are in use (`adapters` names
        them): a -n run, a sweep or the next line with the same prompt pays no text-encoder
        time. Plain prompts go through the pipeline's own encode_prompt, so the pixels are those
        of a pipeline called with the strings. A closed vocabulary reads the prompt without the
        words it does not know, unless a `lora` on the line may have taught them."""
        if not lora:
            positive, negative = self.known_words(positive), self.known_words(negative)
        key = (positive, negative, adapters)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        if self.needs_compel(positive, negative):  # weights or a long prompt
            found = self.encode(positive, negative)
        else:
            with torch.no_grad():
                found = self.pipe.encode_prompt(
                    prompt=positive,
                    device=self.pipe._execution_device,
                    num_images_per_prompt=1,
                    do_classifier_free_guidance=True,
                    negative_prompt=negative or None,
                )
        names = _XL_NAMES if self.xl else _SD_NAMES
        self._cache[key] = dict(zip(names, found, strict=True))
        while len(self._cache) > CACHED_PROMPTS:
            self._cache.popitem(last=False)
        return self._cache[key]

    def forget(self) -> None:
        """Drop the cached embeddings (the text encoder moved, or changed)."""
        self._cache.clear()

    @property
    def window(self) -> int:
        return int(self.pipe.tokenizer.model_max_length) - 2  # minus start and end tokens

    def token_count(self, text: str) -> int:
        ids: list[int] = self.pipe.tokenizer(text, add_special_tokens=False, verbose=False).input_ids
        return len(ids)

    def unknown_words(self, text: str) -> list[str]:
        """The words of `text` the model cannot know: not a whole token of a closed vocabulary."""
        tokenizer = self.pipe.tokenizer
        if len(tokenizer) >= CLOSED_VOCABULARY:
            return []
        words = dict.fromkeys(w.lower() for part in _TAG.split(text)[::2] for w in _WORD.findall(part))
        return [w for w in words if len(tokenizer.tokenize(w)) > 1]

    def known_words(self, text: str) -> str:
        """`text` without the words a closed vocabulary does not know. Spelled out letter by
        letter, four of them turned tiny-shapes' "green triangle on black" into a yellow triangle
        on green in 6 seeds of 6; left out, the picture is the caption's. Open vocabularies
        (CLIP's) read every word."""
        unknown = set(self.unknown_words(text))
        if not unknown:
            return text
        parts = _TAG.split(text)
        for i in range(0, len(parts), 2):  # the text between embedding tokens
            kept = _WORD.sub(lambda m: "" if m.group().lower() in unknown else m.group(), parts[i])
            parts[i] = _EMPTY_GROUP.sub("", kept)
        return " ".join("".join(parts).split())

    def needs_compel(self, positive: str, negative: str) -> bool:
        return any(is_weighted(t) or self.token_count(t) > self.window for t in (positive, negative))

    def compel(self) -> Any:
        if self._compel is None:
            from compel import Compel, ReturnedEmbeddingsType

            p = self.pipe
            if self.xl:  # both encoders, the penultimate layer, the second one's pooled output
                self._compel = Compel(
                    tokenizer=[p.tokenizer, p.tokenizer_2],
                    text_encoder=[p.text_encoder, p.text_encoder_2],
                    returned_embeddings_type=ReturnedEmbeddingsType.PENULTIMATE_HIDDEN_STATES_NON_NORMALIZED,
                    requires_pooled=[False, True],
                    truncate_long_prompts=False,
                )
            else:
                self._compel = Compel(tokenizer=p.tokenizer, text_encoder=p.text_encoder, truncate_long_prompts=False)
        return self._compel

    @torch.no_grad()
    def encode(self, positive: str, negative: str) -> tuple[torch.Tensor, ...]:
        """Weighted or long prompts through compel, in the order of encode_prompt's results."""
        c = self.compel()
        if not self.xl:
            cond, uncond = c(to_compel(positive)), c(to_compel(negative))
            cond, uncond = c.pad_conditioning_tensors_to_same_length([cond, uncond])
            return cond, uncond
        (cond, pooled), (uncond, neg_pooled) = c(to_compel(positive)), c(to_compel(negative))
        cond, uncond = c.pad_conditioning_tensors_to_same_length([cond, uncond])
        if not negative and self.pipe.config.get("force_zeros_for_empty_prompt", False):
            uncond, neg_pooled = torch.zeros_like(cond), torch.zeros_like(pooled)  # as the pipeline does
        return cond, uncond, pooled, neg_pooled

    def describe(self, text: str) -> str:
        """How a prompt was tokenised: each token with its weight, and the chunks it took."""
        c = self.compel()
        parsed = c.parse_prompt_string(to_compel(text))
        parts, total = [], 0
        for prompt in getattr(parsed, "prompts", [parsed]):
            for fragment in getattr(prompt, "children", []):
                tokens = self.pipe.tokenizer.tokenize(fragment.text)
                total += len(tokens)
                parts += [
                    f"{t.removesuffix('</w>')}" + (f"({fragment.weight:g})" if fragment.weight != 1 else "")
                    for t in tokens
                ]
        chunks = max(1, math.ceil(total / self.window))
        return f"{total} token{'s' * (total != 1)} in {chunks} chunk(s) of {self.window}: " + " ".join(parts)
