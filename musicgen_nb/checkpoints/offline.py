"""Offline checkpoints: seeded random weights, built once and saved like a hub checkpoint.

``tiny`` and ``tiny-melody`` (and their stereo layouts) are the architectures of
:func:`musicgen_nb.checkpoints.specs.tiny_spec` with seeded random weights,
saved once with ``save_pretrained`` (safetensors) so that they load through the
very same ``from_pretrained`` path as a hub checkpoint. :func:`build_random`
also builds any known architecture at full size, for benchmarks and memory checks.

Examples
--------
>>> offline_checkpoint("tiny").name
'tiny-v3'
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from .._util.env import cache_root as env_cache_root
from .specs import RECIPE_VERSION, SEED, TINY_INIT_SCALE, build_config, model_class, offline_spec

if TYPE_CHECKING:  # torch loads with the first build, not with the package
    import torch
    from transformers import MusicgenProcessor, PreTrainedModel


def _fill_codebooks(codec, generator: torch.Generator, sample_rate: int) -> None:
    """Give EnCodec's residual codebooks seeded random vectors.

    A freshly built EnCodec has all-zero codebooks: it encodes everything to code 0
    and decodes every code to the same audio. We draw each codebook at the scale of
    the residual it quantizes (measured on seeded noise), so that different sounds
    get different codes and different codes decode to different audio.
    """
    import torch

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
    import torch

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


def build_random(
    spec: dict, *, seed: int = SEED, init_scale: float | None = None
) -> PreTrainedModel:
    """Build a model of ``spec``'s architecture with seeded random weights.

    Parameters
    ----------
    spec : dict
        An entry of :func:`~musicgen_nb.checkpoints.specs.known` or
        :func:`~musicgen_nb.checkpoints.specs.tiny_spec`.
    seed : int
        Seed of every random weight: the same seed builds the same model.
    init_scale : float, optional
        Standard deviation of the decoder weights; ``None`` keeps the
        transformers initialisation (0.02).

    Returns
    -------
    transformers.PreTrainedModel
        In eval mode, fp32, on the CPU, with filled EnCodec codebooks.

    Examples
    --------
    >>> from musicgen_nb.checkpoints.specs import tiny_spec
    >>> model = build_random(tiny_spec(), init_scale=TINY_INIT_SCALE)
    >>> model.generation_config.max_length
    200
    """
    import torch

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
    if spec["meta"].get("standin"):  # the marker every config loaded from a stand-in carries
        model.config.musicgen_nb_standin = spec["meta"]["name"]
    return model


def offline_processor() -> MusicgenProcessor:
    """The processor of the offline checkpoints.

    EnCodec's feature extractor and the offline tokenizer
    (:func:`~musicgen_nb.checkpoints.tokenizer.build_tokenizer`).

    Examples
    --------
    >>> type(offline_processor()).__name__
    'MusicgenProcessor'
    """
    from transformers import EncodecFeatureExtractor, MusicgenProcessor

    from .tokenizer import build_tokenizer

    return MusicgenProcessor(
        feature_extractor=EncodecFeatureExtractor(feature_size=1, sampling_rate=32000),
        tokenizer=build_tokenizer(),
    )


def cache_root() -> Path:
    """Where offline checkpoints are saved: ``$MUSICGEN_NB_CACHE`` or ``~/.cache/musicgen_nb``.

    Examples
    --------
    >>> isinstance(cache_root(), Path)
    True
    """
    return env_cache_root()  # refuses a MUSICGEN_NB_CACHE that is a file, by name


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
    root.mkdir(parents=True, exist_ok=True)
    model = build_random(spec, init_scale=TINY_INIT_SCALE)
    processor = offline_processor()
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
