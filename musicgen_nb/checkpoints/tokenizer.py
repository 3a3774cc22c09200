"""A small, real T5-style tokenizer that is built offline.

The offline checkpoints need a tokenizer that saves and loads through
``AutoProcessor`` like a hub one. We train a ``tokenizers`` Unigram model on a
built-in corpus of music descriptions, so no file is downloaded.

Examples
--------
>>> corpus()[0]
'calm lo-fi beat with a slow tempo'
"""

from __future__ import annotations

import math
from collections import Counter
from itertools import product
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import T5TokenizerFast

_GENRES = [
    "lo-fi",
    "jazz",
    "rock",
    "pop",
    "techno",
    "house",
    "ambient",
    "classical",
    "folk",
    "funk",
    "hip hop",
    "blues",
    "reggae",
    "metal",
    "disco",
    "soul",
    "trap",
    "orchestral",
    "cinematic",
    "synthwave",
    "bossa nova",
    "country",
    "drum and bass",
    "dubstep",
    "gospel",
    "latin",
]
_MOODS = [
    "calm",
    "energetic",
    "dark",
    "happy",
    "sad",
    "dreamy",
    "epic",
    "groovy",
    "mellow",
    "upbeat",
    "melancholic",
    "uplifting",
    "relaxing",
    "aggressive",
    "playful",
    "warm",
    "bright",
]
_THINGS = [
    "beat",
    "piano",
    "guitar",
    "bass",
    "drums",
    "violin",
    "strings",
    "synth",
    "pad",
    "melody",
    "saxophone",
    "trumpet",
    "flute",
    "choir",
    "organ",
    "cello",
    "harp",
    "bells",
    "vocals",
    "808",
    "kick",
    "snare",
    "hi-hats",
    "arpeggio",
    "chords",
    "riff",
    "loop",
    "groove",
]
_PHRASES = [
    "with a slow tempo",
    "at 120 bpm",
    "at 90 bpm",
    "in a minor key",
    "in C major",
    "for a video game",
    "for studying",
    "with heavy reverb",
    "recorded live",
    "with a catchy hook",
    "and soft rain in the background",
    "with an acoustic feel",
    "with punchy drums",
    "for a film trailer",
    "in the style of the eighties",
    "with warm analog synths",
]


def corpus() -> list[str]:
    """Return the built-in training corpus: short music descriptions.

    Examples
    --------
    >>> len(corpus()) > 1000
    True
    """
    lines = [
        f"{mood} {genre} {thing} {phrase}"
        for (mood, genre), thing, phrase in product(
            product(_MOODS, _GENRES), _THINGS[::3], _PHRASES[::4]
        )
    ]
    lines += [f"a {g} track with {t}" for g, t in product(_GENRES, _THINGS)]
    lines += _PHRASES + _MOODS + _GENRES + _THINGS
    lines += list("abcdefghijklmnopqrstuvwxyz0123456789-'.,!?")
    return lines


def _unigram_vocab(lines: list[str]) -> list[tuple[str, float]]:
    """Count word pieces in ``lines`` and turn counts into Unigram log-probabilities."""
    counts = Counter()
    for line in lines:
        for word in line.lower().split():
            counts["\u2581" + word] += 1
            counts.update(word)
    counts["\u2581"] += len(lines)
    total = sum(counts.values())
    return [(piece, math.log(n / total)) for piece, n in sorted(counts.items())]


def build_tokenizer() -> T5TokenizerFast:
    """Build a Unigram tokenizer offline and wrap it as ``transformers.T5TokenizerFast``.

    The Unigram vocabulary (whole words plus single characters, so any text
    encodes) and its scores are counted from :func:`corpus`. Known words are one
    token each, which keeps attention plots readable.

    Returns
    -------
    transformers.T5TokenizerFast

    Examples
    --------
    >>> tok = build_tokenizer()
    >>> tok.convert_ids_to_tokens(tok("lo-fi beat").input_ids)
    ['\u2581lo-fi', '\u2581beat', '</s>']
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    specials = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    tok = Tokenizer(models.Unigram(specials + _unigram_vocab(corpus()), unk_id=2))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    return T5TokenizerFast(
        tokenizer_object=tok,
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_ids=0,
        model_max_length=512,
    )
