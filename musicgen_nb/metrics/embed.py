"""Audio embeddings: CLAP (the default), MusicGen's own EnCodec latents, or any callable."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .._util.checks import check_sr
from .clap import DEFAULT_CLAP, clap_audio
from .common import audio_input

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from numpy.typing import ArrayLike

    from ..generation import Generation
    from ..models import MusicGen


def encodec_latents(audio, sr: int, s, pool: str = "mean") -> np.ndarray:
    """The continuous EnCodec encoder latents of session ``s``: per clip (mean) or per frame.

    Parameters
    ----------
    audio : array_like
        Anything :func:`musicgen_nb.audio.as_batch` takes.
    sr : int
        Its sample rate (resampled to the model's, with a memory check first).
    s : MusicGen
        The session whose EnCodec encoder to use.
    pool : {"mean", "frames"}
        The mean over time per clip (``[N, D]``), or every frame as a row (``[N * T, D]``).

    Examples
    --------
    >>> import numpy as np, musicgen_nb as mg
    >>> s = mg.load("tiny")
    >>> encodec_latents(np.zeros((2, 1, 32000), np.float32), 32000, s).shape[0]
    2
    """
    import torch

    from ..audio import as_batch, match_channels, resample
    from ..tokens import encoder_bytes_per_sample

    enc = s.model.audio_encoder
    x = as_batch(audio)
    if check_sr(sr) != s.sample_rate:
        work = x.shape[0] * encoder_bytes_per_sample(enc.config)
        x = resample(x, sr, s.sample_rate, name="sr", work=("embedding it with EnCodec", work))
    x = match_channels(x, enc.config.audio_channels)
    param = next(enc.parameters())
    with torch.inference_mode():
        lat = enc.encoder(
            torch.as_tensor(x, dtype=param.dtype, device=param.device)
        ).float()  # [N, D, T]
    if pool == "mean":
        return lat.mean(-1).cpu().numpy()
    return lat.transpose(1, 2).reshape(-1, lat.shape[1]).cpu().numpy()


def embed(
    audio: ArrayLike | Generation,
    sr: int | None = None,
    *,
    model: str | MusicGen | Callable[..., Any] = "clap",
    musicgen: MusicGen | None = None,
    pool: str = "mean",
    device: str | None = None,
) -> np.ndarray:
    """Embed audio clips, one vector per clip (or per frame).

    Parameters
    ----------
    audio : array_like or Generation
        ``[N, C, samples]``, ``[C, samples]`` or ``[samples]``, or a :class:`Generation`.
    sr : int
        Sample rate of ``audio`` (a Generation's own rate when omitted).
    model : str, MusicGen or callable
        ``"clap"`` (:data:`DEFAULT_CLAP`), a CLAP checkpoint name or directory, or
        ``"tiny-clap"``: L2-normalised CLAP audio embeddings (audio resampled to
        48 kHz, mono). ``"encodec"`` (with ``musicgen=``) or a MusicGen session:
        the continuous EnCodec encoder latents of that model (128-dim for the
        released checkpoints), no extra weights. A callable ``f(audio [N, C, n],
        sr) -> [N, D]`` is called as is.
    musicgen : MusicGen, optional
        The session whose EnCodec ``model="encodec"`` uses.
    pool : {"mean", "frames"}
        EnCodec only: the mean over time per clip, or every frame as a row
        (many more rows for :func:`frechet_distance`, as fadtk does).
    device : str or torch.device, optional
        CLAP only: where it runs (None: CPU), e.g. a session's ``s.device``.
        EnCodec latents run where the session's model is.

    Returns
    -------
    np.ndarray
        float ``[N, D]`` (``[N * frames, D]`` with ``pool="frames"``).

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> s = mg.load("tiny")
    >>> g = s.generate(["jazz", "rock"], duration=1, seed=0, progress=False)
    >>> embed(g, model="encodec", musicgen=s).shape[0]
    2
    """
    audio, sr = audio_input(audio, sr)
    if pool not in ("mean", "frames"):
        raise ValueError(f"pool must be 'mean' or 'frames', got {pool!r}")
    if model == "encodec" or (hasattr(model, "model") and hasattr(model, "sample_rate")):
        s = musicgen if model == "encodec" else model
        if s is None or not hasattr(s, "model"):
            raise ValueError(
                "model='encodec' needs musicgen= (the MusicGen session whose EnCodec to use)"
            )
        return encodec_latents(audio, sr, s, pool)
    if pool != "mean":
        raise ValueError(f"pool={pool!r} is for EnCodec latents; CLAP gives one embedding per clip")
    if callable(model):
        return _call(model, audio, sr)
    if not isinstance(model, str):
        raise TypeError(
            f"model must be 'clap', a CLAP checkpoint name, 'encodec', a MusicGen or a callable; got {model!r}"
        )
    return clap_audio(audio, sr, DEFAULT_CLAP if model == "clap" else model, device)


def _call(model, audio, sr) -> np.ndarray:
    """The embeddings of a callable ``f(audio [N, C, n], sr) -> [N, D]``, shape checked."""
    from ..audio import as_batch

    out = np.asarray(model(as_batch(audio), sr))
    if out.ndim != 2 or out.shape[0] != as_batch(audio).shape[0]:
        raise ValueError(
            f"the embedding callable must return [N, D] for N clips, got shape {out.shape}"
        )
    return out
