"""Architectures we know, and the offline checkpoints built from them.

The real configurations (sizes, layers, heads) of every MusicGen checkpoint
live in ``musicgen_nb/configs/*.json``. ``tiny`` and ``tiny-melody`` are the same
architectures shrunk to a few MB, with seeded random weights, saved once with
``save_pretrained`` (safetensors) so that they load through the very same
``from_pretrained`` path as a hub checkpoint. ``tiny-stereo`` and
``tiny-stereo-melody`` are their stereo layouts (2 audio channels, 8 codebooks,
left/right interleaved), the offline stand-ins of the ``stereo-*`` checkpoints.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from functools import cache
from importlib import resources
from pathlib import Path

import torch

#: Bump when the offline recipe changes, so stale caches are rebuilt.
RECIPE_VERSION = 3
#: Seed of the offline weights.
SEED = 1234
#: Init scale of the decoder and projections of the offline checkpoints. At the
#: transformers default (0.02) conditioning barely moves the logits; at this
#: scale text, melody and negative prompts visibly change the sampled codes.
TINY_INIT_SCALE = 0.25

OFFLINE = ("tiny", "tiny-melody", "tiny-stereo", "tiny-stereo-melody")
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
    for entry in resources.files("musicgen_nb.configs").iterdir():
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
    """
    from ._tokenizer import build_tokenizer

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
    """The :func:`tiny_spec` of offline checkpoint ``name``.

    Examples
    --------
    >>> offline_spec("tiny-stereo-melody")["meta"]
    {'name': 'tiny-stereo-melody', 'checkpoint': 'tiny-stereo-melody', 'melody': True, 'stereo': True, 'max_duration': 4.0}
    """
    if name not in OFFLINE:
        raise ValueError(f"name must be one of {list(OFFLINE)}, got {name!r}")
    return tiny_spec(melody=name.endswith("-melody"), stereo="-stereo" in name)


def model_class(model_type: str):
    """The transformers class for a composite ``model_type``."""
    import transformers

    if model_type == "musicgen_melody":
        return transformers.MusicgenMelodyForConditionalGeneration
    if model_type == "musicgen":
        return transformers.MusicgenForConditionalGeneration
    raise ValueError(f"model_type must be 'musicgen' or 'musicgen_melody', got {model_type!r}")


def build_config(config: dict):
    """Turn a stored config dict into a transformers composite config."""
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


def _fill_codebooks(codec, generator: torch.Generator, sample_rate: int) -> None:
    """Give EnCodec's residual codebooks seeded random vectors.

    A freshly built EnCodec has all-zero codebooks: it encodes everything to code 0
    and decodes every code to the same audio. We draw each codebook at the scale of
    the residual it quantizes (measured on seeded noise), so that different sounds
    get different codes and different codes decode to different audio.
    """
    noise = torch.randn(2, 1, sample_rate, generator=generator)
    with torch.no_grad():
        residual = codec.encoder(noise)  # [B, D, frames]
        for layer in codec.quantizer.layers:
            book = layer.codebook
            std = residual.std().clamp_min(1e-3)
            embed = torch.randn(book.embed.shape, generator=generator) * std
            book.embed.copy_(embed)
            book.embed_avg.copy_(embed)
            book.cluster_size.fill_(1.0)
            book.inited.fill_(True)
            quantized = layer.decode(layer.encode(residual))
            residual = residual - quantized


def _fill_decoder(model, generator: torch.Generator, scale: float) -> None:
    """Seeded normal weights for the decoder and the conditioning projections."""
    modules = [model.decoder]
    for name in ("enc_to_dec_proj", "audio_enc_to_dec_proj"):
        if getattr(model, name, None) is not None:
            modules.append(getattr(model, name))
    with torch.no_grad():
        for module in modules:
            for pname, param in module.named_parameters():
                if "layer_norm" in pname or pname.endswith("bias"):
                    continue
                param.copy_(torch.randn(param.shape, generator=generator) * scale)


def build_random(spec: dict, *, seed: int = SEED, init_scale: float | None = None):
    """Build a model of ``spec``'s architecture with seeded random weights.

    Parameters
    ----------
    spec : dict
        An entry of :func:`known` or :func:`tiny_spec`.
    seed : int
        Seed of every random weight: the same seed builds the same model.
    init_scale : float, optional
        Standard deviation of the decoder weights; ``None`` keeps the
        transformers initialisation (0.02).

    Returns
    -------
    transformers.PreTrainedModel
        In eval mode, fp32, on the CPU, with filled EnCodec codebooks.
    """
    config = build_config(spec["config"])
    torch.manual_seed(seed)
    model = model_class(spec["config"]["model_type"])(config).eval()
    generator = torch.Generator().manual_seed(seed)
    _fill_codebooks(model.audio_encoder, generator, config.audio_encoder.sampling_rate)
    if init_scale is not None:
        _fill_decoder(model, generator, init_scale)
    frames = int(round(spec["meta"]["max_duration"] * model.config.audio_encoder.frame_rate))
    model.generation_config.max_length = frames
    model.generation_config.do_sample = True
    model.generation_config.guidance_scale = 3.0
    model.generation_config.top_k = 250
    return model


def cache_root() -> Path:
    """Where offline checkpoints are saved: ``$MUSICGEN_NB_CACHE`` or ``~/.cache/musicgen_nb``."""
    root = os.environ.get("MUSICGEN_NB_CACHE") or Path.home() / ".cache" / "musicgen_nb"
    return Path(root)


def offline_checkpoint(name: str, *, cache_dir: str | os.PathLike | None = None) -> Path:
    """Return the directory of offline checkpoint ``name``, building it once.

    The build writes into a temporary directory and renames it into place, so
    concurrent processes never see a half-written checkpoint.

    Parameters
    ----------
    name : {"tiny", "tiny-melody", "tiny-stereo", "tiny-stereo-melody"}
    cache_dir : path, optional
        Defaults to :func:`cache_root`.

    Examples
    --------
    >>> (offline_checkpoint("tiny") / "model.safetensors").exists()
    True
    """
    spec = offline_spec(name)
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    target = root / f"{name}-v{RECIPE_VERSION}"
    if (target / "config.json").exists():
        return target
    from transformers import EncodecFeatureExtractor, MusicgenProcessor

    from ._tokenizer import build_tokenizer

    root.mkdir(parents=True, exist_ok=True)
    model = build_random(spec, init_scale=TINY_INIT_SCALE)
    processor = MusicgenProcessor(
        feature_extractor=EncodecFeatureExtractor(feature_size=1, sampling_rate=32000),
        tokenizer=build_tokenizer(),
    )
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        processor.save_pretrained(tmp)
        (tmp / "musicgen_nb.json").write_text(json.dumps(spec["meta"] | {"seed": SEED}, indent=1))
        try:
            os.replace(tmp, target)
        except OSError:  # another process won the race: keep its copy
            if not (target / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
