"""What the metric models share: audio inputs, seeded offline stand-ins, hub names under stand-ins."""

from __future__ import annotations

import numpy as np

from .._util.checks import check_sr


def audio_input(audio, sr):
    """Audio and rate from arrays or a Generation (whose rate is used when ``sr`` is None).

    Examples
    --------
    >>> import numpy as np
    >>> x, sr = audio_input(np.zeros(4), 16000)
    >>> x.shape, sr
    ((4,), 16000)
    """
    if hasattr(audio, "audio") and hasattr(audio, "sample_rate"):
        return audio.audio, audio.sample_rate if sr is None else sr
    if sr is None:
        raise ValueError("sr is required with an audio array (its sample rate in Hz)")
    return audio, sr


def mono_at(audio, sr, target: int, name: str = "audio") -> np.ndarray:
    """``[N, samples]`` mono float32 audio at ``target`` Hz, from anything :func:`as_batch` takes.

    Examples
    --------
    >>> import numpy as np
    >>> mono_at(np.zeros((2, 2, 32000), np.float32), 32000, 16000).shape
    (2, 16000)
    """
    from ..audio import as_batch, resample

    sr = check_sr(sr)
    batch = as_batch(audio, name=name).mean(axis=1)
    return resample(batch, sr, target, name="sr") if sr != target else batch


def seeded(build):
    """``build()`` with torch's global generator seeded to 0 (and restored), in eval mode.

    Examples
    --------
    >>> import torch
    >>> a = seeded(lambda: torch.nn.Linear(2, 2)).weight
    >>> torch.equal(a, seeded(lambda: torch.nn.Linear(2, 2)).weight)
    True
    """
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build().eval()


def standin(name: str, tiny: str) -> str:
    """With stand-ins on (``MUSICGEN_NB_STANDIN=1``), a hub checkpoint becomes ``tiny``.

    A local directory and ``tiny`` itself are kept as they are.

    Examples
    --------
    >>> standin("tiny-clap", "tiny-clap")
    'tiny-clap'
    """
    from pathlib import Path

    from ..checkpoints import standins

    if name == tiny or Path(name).is_dir() or not standins.enabled():
        return name
    standins.notify_once(
        f"musicgen-nb: {standins.ENV}=1, so the metric model {name!r} is replaced by the "
        f"offline stand-in {tiny!r} (random weights: its scores carry no meaning)."
    )
    return tiny
