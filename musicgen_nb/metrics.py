"""The MusicGen model card's metrics: Fréchet distance, CLAP score, KL of tagger labels, chroma.

* :func:`frechet_distance` on embeddings ``[N, D]`` (Fréchet Audio Distance
  when they are audio embeddings), with a symmetric, eigenvalue-based matrix
  square root.
* :func:`embed` turns audio into embeddings: CLAP audio embeddings through
  transformers' ``ClapModel`` (the default; fadtk recommends CLAP for music),
  the MusicGen model's own EnCodec latents (``model="encodec"``, no extra
  weights), or any callable.
* :func:`clap_score`: cosine similarity of CLAP text and audio embeddings.
* :func:`kl_divergence`: KL between the label distributions an audio tagger
  gives a reference and a generated clip. The paper uses PaSST, which
  transformers does not ship; the default here is transformers' Audio
  Spectrogram Transformer (AST) fine-tuned on AudioSet, a stand-in with the
  same 527 AudioSet labels. Its numbers are not comparable with PaSST's.
* :func:`chroma_similarity`: the chroma cosine similarity of
  :func:`musicgen_nb.melody.similarity`.

Checkpoints load by name (``"laion/larger_clap_music"``,
``"MIT/ast-finetuned-audioset-10-10-0.4593"``, a local directory) for users
with internet access. ``"tiny-clap"`` and ``"tiny-ast"`` are small random
stand-ins built offline: every code path runs, and their numbers mean nothing.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from .melody import similarity as chroma_similarity

__all__ = [
    "DEFAULT_CLAP", "DEFAULT_CLASSIFIER", "frechet_distance", "gaussian_frechet", "embed",
    "clap_score", "label_distribution", "kl", "kl_divergence", "chroma_similarity", "metric",
    "row_metrics",
]  # fmt: skip

DEFAULT_CLAP = "laion/larger_clap_music"
DEFAULT_CLASSIFIER = "MIT/ast-finetuned-audioset-10-10-0.4593"


# --------------------------------------------------------------------------- Fréchet distance
def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (negative rounding clipped)."""
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def gaussian_frechet(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance between two Gaussians ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``.

    ``|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1^1/2 S2 S1^1/2)^1/2)``: the trace
    term equals ``tr((S1 S2)^1/2)`` but takes square roots of symmetric matrices
    only (eigendecompositions in float64), which stays real and stable where
    ``scipy.linalg.sqrtm(S1 @ S2)`` can return complex noise.

    Examples
    --------
    >>> import numpy as np
    >>> gaussian_frechet(np.zeros(1), np.eye(1) * 4, np.ones(1), np.eye(1))  # 1 + (2 - 1)^2
    2.0
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = (
        np.atleast_2d(np.asarray(sigma1, np.float64)),
        np.atleast_2d(np.asarray(sigma2, np.float64)),
    )
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(
            f"mu1/mu2 must be [D] and sigma1/sigma2 [D, D]; got {mu1.shape}, {mu2.shape}, {s1.shape}, {s2.shape}"
        )
    r1 = _sqrt_psd(s1)
    inner = r1 @ s2 @ r1
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0, None)).sum()
    d = float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt)
    return max(d, 0.0)


def _embeddings(x, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be embeddings [N, D], got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} holds NaN or inf")
    if arr.shape[0] < 2:
        raise ValueError(f"{name} has {arr.shape[0]} embedding(s); a covariance needs N >= 2")
    return arr


def frechet_distance(x, y, *, allow_singular: bool = False) -> float:
    """Fréchet distance between two sets of embeddings (FAD for audio embeddings).

    Fits a Gaussian to each set (mean, covariance with N - 1) and returns
    :func:`gaussian_frechet` of the two.

    Parameters
    ----------
    x, y : array_like
        Embeddings ``[N, D]`` and ``[M, D]``.
    allow_singular : bool
        With N <= D the covariance is singular (rank N - 1 < D) and the
        distance is biased and noisy; this raises unless you allow it.
        Published FAD uses thousands of clips.

    Returns
    -------
    float
        >= 0; 0 for a set against itself.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(200, 4))
    >>> round(frechet_distance(x, x), 9), frechet_distance(x, x + 1) > 3.9
    (0.0, True)
    """
    a, b = _embeddings(x, "x"), _embeddings(y, "y")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"x and y must have the same dimension, got {a.shape[1]} and {b.shape[1]}")
    dim = a.shape[1]
    for name, arr in (("x", a), ("y", b)):
        if arr.shape[0] <= dim and not allow_singular:
            raise ValueError(
                f"{name} has N={arr.shape[0]} embeddings of dimension D={dim}: with N <= D the covariance "
                f"is singular and the distance unreliable. Use more than {dim} clips, fewer dimensions "
                "(e.g. PCA, or embed(..., model='encodec', pool='frames')), or pass allow_singular=True"
            )
    cov = functools.partial(np.cov, rowvar=False)
    return gaussian_frechet(a.mean(0), cov(a), b.mean(0), cov(b))


# --------------------------------------------------------------------------- models
def _tiny_text_tokenizer():
    """An offline byte-level BPE tokenizer wrapped as ``RobertaTokenizerFast`` (CLAP's text side)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import RobertaTokenizerFast

    from ._tokenizer import corpus

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    tok.train_from_iterator(corpus(), trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    return RobertaTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                unk_token="<unk>", mask_token="<mask>", model_max_length=64)  # fmt: skip


def _seeded(build):
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build().eval()


def _standin(name: str, tiny: str) -> str:
    """With stand-ins on (``MUSICGEN_NB_STANDIN=1``), a hub checkpoint becomes ``tiny``."""
    from pathlib import Path

    from . import testing

    if name == tiny or Path(name).is_dir() or not testing.enabled():
        return name
    testing.notify_once(
        f"musicgen-nb: {testing.ENV}=1, so the metric model {name!r} is replaced by the "
        f"offline stand-in {tiny!r} (random weights: its scores carry no meaning)."
    )
    return tiny


@functools.cache
def _clap(name: str):
    """(ClapModel, feature extractor, tokenizer) for a checkpoint name, directory or ``"tiny-clap"``."""
    from transformers import ClapFeatureExtractor, ClapModel, ClapProcessor

    name = _standin(name, "tiny-clap")
    if name == "tiny-clap":
        from transformers import ClapAudioConfig, ClapConfig, ClapTextConfig

        tok = _tiny_text_tokenizer()
        text = ClapTextConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                              intermediate_size=37, max_position_embeddings=70, projection_dim=16)  # fmt: skip
        audio = ClapAudioConfig(depths=[1, 1], num_attention_heads=[2, 2], hidden_size=32,
                                patch_embeds_hidden_size=16, projection_dim=16)  # fmt: skip
        cfg = ClapConfig(
            text_config=text.to_dict(), audio_config=audio.to_dict(), projection_dim=16
        )
        return _seeded(lambda: ClapModel(cfg)), ClapFeatureExtractor(truncation="rand_trunc"), tok
    proc = ClapProcessor.from_pretrained(name)
    return ClapModel.from_pretrained(name).eval(), proc.feature_extractor, proc.tokenizer


@functools.cache
def _ast(name: str):
    """(ASTForAudioClassification, feature extractor) for a name, directory or ``"tiny-ast"``."""
    from transformers import ASTFeatureExtractor, ASTForAudioClassification

    name = _standin(name, "tiny-ast")
    if name == "tiny-ast":
        from transformers import ASTConfig

        labels = {i: f"label_{i}" for i in range(10)}
        cfg = ASTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
                        max_length=128, num_mel_bins=128, id2label=labels, label2id={v: k for k, v in labels.items()})  # fmt: skip
        return _seeded(lambda: ASTForAudioClassification(cfg)), ASTFeatureExtractor(max_length=128)
    return ASTForAudioClassification.from_pretrained(
        name
    ).eval(), ASTFeatureExtractor.from_pretrained(name)


def _mono_at(audio, sr, target: int, name: str = "audio") -> np.ndarray:
    """``[N, samples]`` mono float32 audio at ``target`` Hz, from anything :func:`as_batch` takes."""
    from .audio import _check_sr, as_batch, resample

    sr = _check_sr(sr)
    batch = as_batch(audio, name=name).mean(axis=1)
    return resample(batch, sr, target, name="sr") if sr != target else batch


def _audio_input(audio, sr):
    """Audio and rate from arrays or a Generation (whose rate is used when ``sr`` is None)."""
    if hasattr(audio, "audio") and hasattr(audio, "sample_rate"):
        return audio.audio, audio.sample_rate if sr is None else sr
    if sr is None:
        raise ValueError("sr is required with an audio array (its sample rate in Hz)")
    return audio, sr


def _features(out):
    """A transformers ``get_*_features`` result as a tensor (a tensor, or an output's pooler_output)."""
    return out if hasattr(out, "dim") else out.pooler_output


def _clap_audio(audio: np.ndarray, sr: int, name: str) -> np.ndarray:
    import torch

    model, fe, _ = _clap(name)
    mono = _mono_at(audio, sr, fe.sampling_rate)
    inputs = fe(list(mono), sampling_rate=fe.sampling_rate, return_tensors="pt")
    with torch.inference_mode():
        emb = _features(model.get_audio_features(**inputs))
    return torch.nn.functional.normalize(emb.float(), dim=-1).numpy()


def _clap_text(texts: list[str], name: str) -> np.ndarray:
    import torch

    model, _, tok = _clap(name)
    inputs = tok(texts, padding=True, truncation=True, return_tensors="pt")
    with torch.inference_mode():
        emb = _features(model.get_text_features(**inputs))
    return torch.nn.functional.normalize(emb.float(), dim=-1).numpy()


def _encodec(audio: np.ndarray, sr: int, s, pool: str) -> np.ndarray:
    import torch

    enc = s.model.audio_encoder
    channels = enc.config.audio_channels
    from .audio import _check_sr, as_batch, match_channels, resample
    from .tokens import encoder_bytes_per_sample

    x = as_batch(audio)
    if _check_sr(sr) != s.sample_rate:
        work = x.shape[0] * encoder_bytes_per_sample(enc.config)
        x = resample(x, sr, s.sample_rate, name="sr", work=("embedding it with EnCodec", work))
    x = match_channels(x, channels)
    param = next(enc.parameters())
    with torch.inference_mode():
        lat = enc.encoder(
            torch.as_tensor(x, dtype=param.dtype, device=param.device)
        ).float()  # [N, D, T]
    if pool == "mean":
        return lat.mean(-1).cpu().numpy()
    return lat.transpose(1, 2).reshape(-1, lat.shape[1]).cpu().numpy()


def embed(audio, sr=None, *, model="clap", musicgen=None, pool="mean") -> np.ndarray:
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
    audio, sr = _audio_input(audio, sr)
    if pool not in ("mean", "frames"):
        raise ValueError(f"pool must be 'mean' or 'frames', got {pool!r}")
    if model == "encodec" or (hasattr(model, "model") and hasattr(model, "sample_rate")):
        s = musicgen if model == "encodec" else model
        if s is None or not hasattr(s, "model"):
            raise ValueError(
                "model='encodec' needs musicgen= (the MusicGen session whose EnCodec to use)"
            )
        return _encodec(audio, sr, s, pool)
    if pool != "mean":
        raise ValueError(f"pool={pool!r} is for EnCodec latents; CLAP gives one embedding per clip")
    if callable(model):
        from .audio import as_batch

        out = np.asarray(model(as_batch(audio), sr))
        if out.ndim != 2 or out.shape[0] != as_batch(audio).shape[0]:
            raise ValueError(
                f"the embedding callable must return [N, D] for N clips, got shape {out.shape}"
            )
        return out
    if not isinstance(model, str):
        raise TypeError(
            f"model must be 'clap', a CLAP checkpoint name, 'encodec', a MusicGen or a callable; got {model!r}"
        )
    return _clap_audio(audio, sr, DEFAULT_CLAP if model == "clap" else model)


def clap_score(audio, sr=None, texts=None, *, model="clap") -> np.ndarray:
    """CLAP score: cosine similarity of each clip's CLAP audio embedding and its text's.

    Parameters
    ----------
    audio : array_like or Generation
        ``N`` clips (a Generation's prompts are the default texts).
    sr : int
    texts : str or list of str
        One text for every clip (a string or a one-item list), or one per clip.
        Checked before any model runs.
    model : str
        ``"clap"`` (:data:`DEFAULT_CLAP`), a CLAP checkpoint or ``"tiny-clap"``.

    Returns
    -------
    np.ndarray
        float ``[N]`` in [-1, 1].

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(2, 1, 48000)).astype("float32") * 0.1
    >>> score = clap_score(x, 48000, ["noise", "jazz"], model="tiny-clap")
    >>> score.shape, bool((np.abs(score) <= 1).all())
    ((2,), True)
    """
    from .audio import as_batch

    if texts is None and hasattr(audio, "prompts"):
        texts = audio.prompts
    audio, sr = _audio_input(audio, sr)
    name = DEFAULT_CLAP if model == "clap" else model
    if not isinstance(name, str):
        raise TypeError(f"model must be 'clap' or a CLAP checkpoint name, got {model!r}")
    texts = _clap_texts(texts, as_batch(audio).shape[0])  # before any model runs
    a = _clap_audio(audio, sr, name)
    t = _clap_text(texts, name)
    return np.clip((a * t).sum(-1), -1.0, 1.0).astype(np.float64)


def _clap_texts(texts, n: int) -> list[str]:
    """One text per clip, from one string or a list of 1 or ``n`` strings."""
    allowed = f"one string, or a list of 1 or {n} strings (one per clip, for {n} clips)"
    if texts is None:
        raise ValueError(f"texts is required with an audio array: {allowed}")
    if isinstance(texts, str):
        return [texts] * n
    if isinstance(texts, (bytes, dict, set)) or not hasattr(texts, "__iter__"):
        raise TypeError(f"texts must be {allowed}, got {type(texts).__name__} {texts!r:.60}")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            why = " (an unconditional clip has no text to score)" if text is None else ""
            raise TypeError(
                f"texts[{i}] must be a string, got {type(text).__name__} {text!r:.60}{why}"
            )
    if len(texts) not in (1, n):
        raise ValueError(f"texts must be {allowed}, got {len(texts)} texts")
    return texts * n if len(texts) == 1 else texts


def label_distribution(audio, sr=None, *, classifier="ast") -> np.ndarray:
    """The audio tagger's label distribution (softmax over its labels) for each clip, ``[N, L]``.

    ``classifier``: ``"ast"`` (:data:`DEFAULT_CLASSIFIER`, the AST stand-in for
    PaSST), an ``ASTForAudioClassification`` checkpoint or ``"tiny-ast"``.
    """
    import torch

    audio, sr = _audio_input(audio, sr)
    name = DEFAULT_CLASSIFIER if classifier == "ast" else classifier
    if not isinstance(name, str):
        raise TypeError(f"classifier must be 'ast' or an AST checkpoint name, got {classifier!r}")
    model, fe = _ast(name)
    mono = _mono_at(audio, sr, fe.sampling_rate)
    inputs = fe(list(mono), sampling_rate=fe.sampling_rate, return_tensors="pt")
    with torch.inference_mode():
        logits = model(**inputs).logits.float()
    return logits.softmax(-1).double().numpy()


def kl(p, q, *, eps: float = 1e-12) -> np.ndarray:
    """KL(p || q) along the last axis of two (batches of) distributions, in nats.

    Examples
    --------
    >>> kl([0.5, 0.5], [0.5, 0.5])
    0.0
    """
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape, got {p.shape} and {q.shape}")
    p, q = np.clip(p, eps, None), np.clip(q, eps, None)
    p, q = p / p.sum(-1, keepdims=True), q / q.sum(-1, keepdims=True)
    out = (p * (np.log(p) - np.log(q))).sum(-1)
    return float(out) if out.ndim == 0 else out


def kl_divergence(gen, ref, sr=None, *, ref_sr=None, classifier="ast") -> np.ndarray:
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

    Returns
    -------
    np.ndarray
        float ``[N]``, >= 0; 0 for identical clips.
    """
    gen, sr = _audio_input(gen, sr)
    ref, ref_sr = _audio_input(ref, ref_sr if ref_sr is not None else sr)
    p = label_distribution(ref, ref_sr, classifier=classifier)
    q = label_distribution(gen, sr, classifier=classifier)
    if p.shape != q.shape:
        raise ValueError(
            f"gen and ref must hold the same number of clips, got {len(q)} and {len(p)}"
        )
    return np.atleast_1d(kl(p, q))


# --------------------------------------------------------------------------- per-clip metrics for run_grid
def metric(name: str, **kwargs):
    """A per-clip metric ``f(audio [C, n], sr, prompt) -> float`` for ``run_grid(metrics=[...])``.

    ``"clap_score"`` (kwargs: ``model=``; NaN for an unconditional clip) or
    ``"loudness"`` (integrated LUFS).

    Examples
    --------
    >>> metric("clap_score", model="tiny-clap").__name__
    'clap_score'
    """
    if name == "clap_score":
        model = kwargs.pop("model", "clap")

        def fn(audio, sr, prompt):
            return (
                math.nan
                if prompt is None
                else float(clap_score(audio[None], sr, [prompt], model=model)[0])
            )

    elif name == "loudness":
        from .audio import loudness

        def fn(audio, sr, prompt):
            return float(loudness(audio, sr))

    else:
        raise ValueError(f"unknown metric {name!r}; use 'clap_score', 'loudness' or a callable")
    if kwargs:
        raise TypeError(f"metric {name!r} takes no {sorted(kwargs)}")
    fn.__name__ = name
    return fn


def row_metrics(metrics) -> dict:
    """``{column: f(audio, sr, prompt)}`` from a list of names/callables or a dict."""
    if metrics is None:
        return {}
    if isinstance(metrics, dict):
        items = list(metrics.items())
    elif isinstance(metrics, (list, tuple)):
        items = [(m if isinstance(m, str) else getattr(m, "__name__", None), m) for m in metrics]
    else:
        raise TypeError(
            f"metrics must be a list of names/callables or a dict, got {type(metrics).__name__}"
        )
    out = {}
    for col, m in items:
        fn = metric(m) if isinstance(m, str) else m
        if not callable(fn) or not isinstance(col, str) or col in ("", "<lambda>"):
            raise ValueError(
                f"metrics entries must be names or named callables (or a dict name -> callable), got {m!r}"
            )
        out[col] = fn
    return out
