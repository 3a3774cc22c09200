"""Architectures we know: the stored configurations and the tiny offline layouts.

The real configurations (sizes, layers, heads) of every MusicGen checkpoint
live in ``musicgen_nb/checkpoints/configs/*.json``. ``tiny`` and ``tiny-melody``
are the same architectures shrunk to a few MB (:func:`tiny_spec`);
``tiny-stereo`` and ``tiny-stereo-melody`` are their stereo layouts (2 audio
channels, 8 codebooks, left/right interleaved), the offline stand-ins of the
``stereo-*`` checkpoints. :mod:`musicgen_nb.checkpoints.offline` builds and
saves them.

Examples
--------
>>> OFFLINE
('tiny', 'tiny-melody', 'tiny-stereo', 'tiny-stereo-melody')
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel

#: Bump when the offline recipe changes, so stale caches are rebuilt.
RECIPE_VERSION = 3
#: Seed of the offline weights.
SEED = 1234
#: Init scale of the decoder and projections of the offline checkpoints. At the
#: transformers default (0.02) conditioning barely moves the logits; at this
#: scale text, melody and negative prompts visibly change the sampled codes.
TINY_INIT_SCALE = 0.25

OFFLINE = ("tiny", "tiny-melody", "tiny-stereo", "tiny-stereo-melody")
#: The offline stand-ins of real checkpoints (:mod:`musicgen_nb.checkpoints.standins`): the tiny
#: layouts with the real window (30 s of positions), so a prompt or duration the real model
#: takes in one window also fits the stand-in's one window.
STANDIN_PRESETS = ("standin", "standin-melody", "standin-stereo", "standin-stereo-melody")
#: Display order of the known architectures.
ORDER = (
    "small", "medium", "large", "melody", "melody-large",
    "stereo-small", "stereo-medium", "stereo-large", "stereo-melody", "stereo-melody-large",
)  # fmt: skip


@cache
def known() -> dict[str, dict]:
    """Return the stored architectures, keyed by short name.

    Examples
    --------
    >>> list(known())[:3]
    ['small', 'medium', 'large']
    """
    out = {}
    for entry in (resources.files("musicgen_nb.checkpoints") / "configs").iterdir():
        if entry.name.endswith(".json"):
            spec = json.loads(entry.read_text())
            out[spec["meta"]["name"]] = spec
    rank = {name: i for i, name in enumerate(ORDER)}
    return dict(sorted(out.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])))


def tiny_spec(melody: bool = False, stereo: bool = False) -> dict:
    """The architecture of the offline checkpoints: real layout, tiny sizes.

    The context is short (4 s), so long-form generation runs over several
    windows in a test. ``stereo=True`` gives the stereo layout (8 codebooks,
    left/right interleaved), used to test the stereo code paths.

    Examples
    --------
    >>> spec = tiny_spec(stereo=True)
    >>> spec["meta"]["name"], spec["config"]["decoder"]["num_codebooks"]
    ('tiny-stereo', 8)
    """
    from .tokenizer import build_tokenizer

    vocab = len(build_tokenizer())
    text = dict(
        model_type="t5", vocab_size=vocab, d_model=32, d_kv=8, d_ff=64, num_layers=2,
        num_heads=4, relative_attention_num_buckets=32, dropout_rate=0.0,
        feed_forward_proj="relu", is_encoder_decoder=True,
    )  # fmt: skip
    audio = dict(known()["small"]["config"]["audio_encoder"])
    audio.update(hidden_size=32, num_filters=4, codebook_dim=32, num_lstm_layers=1)
    decoder = dict(known()["small"]["config"]["decoder"])
    decoder.update(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, ffn_dim=256,
        max_position_embeddings=512, dropout=0.0,
    )  # fmt: skip
    if stereo:
        decoder.update(num_codebooks=8, audio_channels=2)
    config = dict(
        model_type="musicgen_melody" if melody else "musicgen",
        text_encoder=text, audio_encoder=audio, decoder=decoder,
    )  # fmt: skip
    if melody:
        config.update(num_chroma=12, chroma_length=235)
    name = "tiny" + ("-stereo" if stereo else "") + ("-melody" if melody else "")
    meta = dict(name=name, checkpoint=name, melody=melody, stereo=stereo, max_duration=4.0)
    return dict(meta=meta, config=config)


def offline_spec(name: str) -> dict:
    """The :func:`tiny_spec` of offline checkpoint ``name`` (or of a stand-in preset).

    A stand-in preset (:data:`STANDIN_PRESETS`) is the tiny layout with the real
    checkpoints' window: 2048 positions and 30 s (1500 frames) per window.

    Examples
    --------
    >>> offline_spec("tiny-stereo-melody")["meta"]
    {'name': 'tiny-stereo-melody', 'checkpoint': 'tiny-stereo-melody', 'melody': True, 'stereo': True, 'max_duration': 4.0}
    >>> spec = offline_spec("standin-melody")
    >>> spec["meta"]["max_duration"], spec["config"]["decoder"]["max_position_embeddings"]
    (30.0, 2048)
    """
    if name not in OFFLINE + STANDIN_PRESETS:
        raise ValueError(f"name must be one of {list(OFFLINE + STANDIN_PRESETS)}, got {name!r}")
    spec = tiny_spec(melody=name.endswith("-melody"), stereo="-stereo" in name)
    if name in STANDIN_PRESETS:
        real = known()["small"]
        spec["config"]["decoder"]["max_position_embeddings"] = real["config"]["decoder"][
            "max_position_embeddings"
        ]
        spec["meta"].update(
            name=name, checkpoint=name, max_duration=real["meta"]["max_duration"], standin=True
        )
    return spec


def model_class(model_type: str) -> type[PreTrainedModel]:
    """The transformers class for a composite ``model_type``.

    Examples
    --------
    >>> model_class("musicgen_melody").__name__
    'MusicgenMelodyForConditionalGeneration'
    """
    import transformers

    if model_type == "musicgen_melody":
        return transformers.MusicgenMelodyForConditionalGeneration
    if model_type == "musicgen":
        return transformers.MusicgenForConditionalGeneration
    raise ValueError(f"model_type must be 'musicgen' or 'musicgen_melody', got {model_type!r}")


def build_config(config: dict) -> PretrainedConfig:
    """Turn a stored config dict into a transformers composite config.

    Examples
    --------
    >>> build_config(known()["small"]["config"]).decoder.hidden_size
    1024
    """
    import transformers

    text = transformers.T5Config(
        **{k: v for k, v in config["text_encoder"].items() if k != "model_type"}
    )
    audio = transformers.EncodecConfig(
        **{k: v for k, v in config["audio_encoder"].items() if k != "model_type"}
    )
    dec = {k: v for k, v in config["decoder"].items() if k != "model_type"}
    if config["model_type"] == "musicgen_melody":
        decoder = transformers.MusicgenMelodyDecoderConfig(**dec)
        return transformers.MusicgenMelodyConfig(
            text_encoder=text, audio_encoder=audio, decoder=decoder,
            num_chroma=config.get("num_chroma", 12), chroma_length=config.get("chroma_length", 235),
        )  # fmt: skip
    decoder = transformers.MusicgenDecoderConfig(**dec)
    return transformers.MusicgenConfig(text_encoder=text, audio_encoder=audio, decoder=decoder)


def short_name(name: str) -> str | None:
    """The short name of a known architecture given by short name or hub id, else None.

    Examples
    --------
    >>> short_name("facebook/musicgen-melody"), short_name("melody"), short_name("tiny")
    ('melody', 'melody', None)
    """
    table = known()
    if name in table:
        return name
    by_hub = {spec["meta"]["checkpoint"]: short for short, spec in table.items()}
    return by_hub.get(name)
