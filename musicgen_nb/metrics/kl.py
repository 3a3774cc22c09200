"""KL divergence between the label distributions an audio tagger gives a reference and a generated clip.

The paper uses PaSST, which transformers does not ship; the default here is
transformers' Audio Spectrogram Transformer (AST) fine-tuned on AudioSet, a
stand-in with the same 527 AudioSet labels. Its numbers are not comparable with
PaSST's. ``"tiny-ast"`` is a small random stand-in built offline.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np

from .._util.checks import check_sr
from .clap import on_model_device, torch_device
from .common import audio_input, mono_at, seeded, standin

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from ..generation import Generation

DEFAULT_CLASSIFIER = "MIT/ast-finetuned-audioset-10-10-0.4593"


def load_ast(name: str, device=None):
    """(ASTForAudioClassification, feature extractor) for a name, directory or ``"tiny-ast"``.

    Loaded once per name and device (cached), on ``device`` (None: CPU). With
    stand-ins on, a hub name loads ``"tiny-ast"``.

    Examples
    --------
    >>> model, fe = load_ast("tiny-ast")
    >>> model.config.num_labels, fe.sampling_rate, next(model.parameters()).device.type
    (10, 16000, 'cpu')
    """
    return _load_ast(name, str(torch_device(device)))


@functools.cache
def _load_ast(name: str, device: str):
    """The cached load of :func:`load_ast`."""
    from transformers import ASTFeatureExtractor, ASTForAudioClassification

    name = standin(name, "tiny-ast")
    if name == "tiny-ast":
        from transformers import ASTConfig

        labels = {i: f"label_{i}" for i in range(10)}
        cfg = ASTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
                        max_length=128, num_mel_bins=128, id2label=labels, label2id={v: k for k, v in labels.items()})  # fmt: skip
        model, fe = (
            seeded(lambda: ASTForAudioClassification(cfg)),
            ASTFeatureExtractor(max_length=128),
        )
    else:
        model = ASTForAudioClassification.from_pretrained(name).eval()
        fe = ASTFeatureExtractor.from_pretrained(name)
    return model.to(device), fe


load_ast.cache_clear = _load_ast.cache_clear  # type: ignore[attr-defined]


def label_distribution(
    audio: ArrayLike | Generation,
    sr: int | None = None,
    *,
    classifier: str = "ast",
    device: str | None = None,
) -> np.ndarray:
    """The audio tagger's label distribution (softmax over its labels) for each clip, ``[N, L]``.

    ``classifier``: ``"ast"`` (:data:`DEFAULT_CLASSIFIER`, the AST stand-in for
    PaSST), an ``ASTForAudioClassification`` checkpoint or ``"tiny-ast"``.
    ``device``: where the tagger runs (None: CPU), e.g. a session's ``s.device``.

    Examples
    --------
    >>> import numpy as np
    >>> p = label_distribution(np.zeros((2, 1, 16000), np.float32), 16000, classifier="tiny-ast")
    >>> p.shape, np.allclose(p.sum(-1), 1.0)
    ((2, 10), True)
    """
    import torch

    audio, sr = audio_input(audio, sr)
    name = DEFAULT_CLASSIFIER if classifier == "ast" else classifier
    if not isinstance(name, str):
        raise TypeError(f"classifier must be 'ast' or an AST checkpoint name, got {classifier!r}")
    model, fe = load_ast(name, device)
    mono = mono_at(audio, sr, fe.sampling_rate)
    inputs = fe(list(mono), sampling_rate=fe.sampling_rate, return_tensors="pt")
    with torch.inference_mode():
        logits = model(**on_model_device(inputs, model)).logits.float()
    return logits.softmax(-1).double().cpu().numpy()


def _distribution(x, name: str) -> np.ndarray:
    """``x`` as float64 distributions along the last axis; anything else raises naming ``name``."""
    arr = np.asarray(x)
    if arr.dtype == object or arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be real numbers (a distribution), got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if arr.ndim == 0 or arr.shape[-1] == 0 or arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); a distribution needs >= 1 value")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} holds NaN or inf; a distribution holds finite values >= 0")
    if (arr < 0).any():
        raise ValueError(f"{name} holds negative values ({arr.min():g}); probabilities are >= 0")
    with np.errstate(over="ignore"):
        sums = arr.sum(-1)
    if not np.isfinite(sums).all():
        raise ValueError(
            f"{name} holds values whose sum overflows float64 (up to {arr.max():.3g}); scale it down"
        )
    if (sums == 0).any():
        raise ValueError(f"{name} has a distribution that is all zeros; it cannot be normalised")
    return arr


def _named(name: str, audio, sr, classifier, device) -> np.ndarray:
    """:func:`label_distribution` whose input errors (and only those) name the argument."""
    from ..audio import as_batch

    try:
        check_sr(sr)
        as_batch(audio, name="audio")
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{name}: {exc}") from None
    return label_distribution(audio, sr, classifier=classifier, device=device)


def kl(p: ArrayLike, q: ArrayLike, *, eps: float = 1e-12) -> np.ndarray:
    """KL(p || q) along the last axis of two (batches of) distributions, in nats.

    ``p`` and ``q`` hold finite values >= 0 with a positive sum (each is
    normalised); zeros are raised to ``eps`` (a float in (0, 1)) first.

    Examples
    --------
    >>> kl([0.5, 0.5], [0.5, 0.5])
    0.0
    >>> kl([0.5, -0.5], [0.5, 0.5])
    Traceback (most recent call last):
    ...
    ValueError: p holds negative values (-0.5); probabilities are >= 0
    """
    import numbers

    if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
        raise TypeError(f"eps must be a float in (0, 1), e.g. 1e-12; got {eps!r}")
    if not 0 < eps < 1:
        raise ValueError(f"eps must be a float in (0, 1), e.g. 1e-12; got {eps!r}")
    p, q = _distribution(p, "p"), _distribution(q, "q")
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape, got {p.shape} and {q.shape}")
    p, q = np.clip(p, eps, None), np.clip(q, eps, None)
    p, q = p / p.sum(-1, keepdims=True), q / q.sum(-1, keepdims=True)
    out = (p * (np.log(p) - np.log(q))).sum(-1)
    return float(out) if out.ndim == 0 else out


def kl_divergence(
    gen: ArrayLike | Generation,
    ref: ArrayLike | Generation,
    sr: int | None = None,
    *,
    ref_sr: int | None = None,
    classifier: str = "ast",
    device: str | None = None,
) -> np.ndarray:
    """KL(p_ref || p_gen) between the tagger's label distributions of reference and generated clips.

    As in the MusicGen paper, lower means the generated clip carries the
    reference's sound concepts. The paper's tagger is PaSST; this uses
    transformers' AST AudioSet classifier instead (see the module notes).

    Parameters
    ----------
    gen, ref : array_like or Generation
        ``N`` generated and ``N`` reference clips, paired by index.
    sr, ref_sr : int
        Their sample rates (``ref_sr`` defaults to ``sr``).
    classifier : str
        ``"ast"``, an AST checkpoint name or directory, or ``"tiny-ast"``.
    device : str or torch.device, optional
        Where the tagger runs (None: CPU), e.g. a session's ``s.device``.

    Returns
    -------
    np.ndarray
        float ``[N]``, >= 0; 0 for identical clips.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(2, 1, 16000)).astype("float32") * 0.1
    >>> kl_divergence(x, x, 16000, classifier="tiny-ast")
    array([0., 0.])
    """
    gen, sr = audio_input(gen, sr)
    ref, ref_sr = audio_input(ref, ref_sr if ref_sr is not None else sr)
    p, q = (_named(name, x, rate, classifier, device)
            for name, x, rate in (("ref", ref, ref_sr), ("gen", gen, sr)))  # fmt: skip
    if p.shape != q.shape:
        raise ValueError(
            f"gen and ref must hold the same number of clips, got {len(q)} and {len(p)}"
        )
    return np.atleast_1d(kl(p, q))
