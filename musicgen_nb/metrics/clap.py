"""CLAP: audio and text embeddings, and the CLAP score (their cosine similarity).

Checkpoints load by name (:data:`DEFAULT_CLAP`, a local directory) for users with
internet access. ``"tiny-clap"`` is a small random stand-in built offline: every
code path runs, and its numbers mean nothing. :func:`require` checks up front
that a checkpoint can load (cached, a directory, or the hub reachable), so a
grid does not find out after generating every clip. The model runs on the
``device`` asked for (a session's device in :func:`musicgen_nb.run_grid`).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np

from .common import audio_input, mono_at, seeded, standin

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from ..generation import Generation

DEFAULT_CLAP = "laion/larger_clap_music"


def _tiny_text_tokenizer():
    """An offline byte-level BPE tokenizer wrapped as ``RobertaTokenizerFast`` (CLAP's text side)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import RobertaTokenizerFast

    from ..checkpoints.tokenizer import corpus

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


def _tiny_clap():
    from transformers import (
        ClapAudioConfig,
        ClapConfig,
        ClapFeatureExtractor,
        ClapModel,
        ClapTextConfig,
    )

    tok = _tiny_text_tokenizer()
    text = ClapTextConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=37, max_position_embeddings=70, projection_dim=16)  # fmt: skip
    audio = ClapAudioConfig(depths=[1, 1], num_attention_heads=[2, 2], hidden_size=32,
                            patch_embeds_hidden_size=16, projection_dim=16)  # fmt: skip
    cfg = ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(), projection_dim=16)
    return seeded(lambda: ClapModel(cfg)), ClapFeatureExtractor(truncation="rand_trunc"), tok


def require(name: str, offline_name: str = "tiny-clap") -> str:
    """Check, fast and before any work, that checkpoint ``name`` can load; return the name to load.

    A local directory, the offline stand-in and a checkpoint in the Hugging Face
    cache pass. Otherwise the hub must answer within 3 s (and not be turned off
    with ``HF_HUB_OFFLINE``) and hold the checkpoint (one request: a misspelt
    name fails here), else a :class:`ModelUnavailableError` names the
    checkpoint and what to do, instead of transformers' retries for minutes.

    Examples
    --------
    >>> require("tiny-clap")
    'tiny-clap'
    """
    from pathlib import Path

    from .._util.hub import cached_or_reachable, in_hub_cache
    from ..checkpoints.loading import ModelUnavailableError

    if not isinstance(name, str) or not name.strip():
        raise TypeError(f"model must be a checkpoint name or directory, got {name!r}")
    name = standin(name, offline_name)
    if name == offline_name or Path(name).is_dir():
        return name
    if in_hub_cache(name):
        return name
    if not cached_or_reachable(name, timeout=3.0):
        raise ModelUnavailableError(
            f"the metric model {name!r} is not in the Hugging Face cache and the hub cannot be "
            f"reached; download it once where you have internet (huggingface-cli download {name}), "
            f"pass a local directory, or use {offline_name!r} (random weights) to try the code path"
        )
    if not _on_hub(name):
        raise ModelUnavailableError(
            f"the metric model {name!r} is neither cached nor on the Hugging Face hub (no "
            f"{name}/config.json there); check the name, pass a local directory, or use "
            f"{offline_name!r} (random weights)"
        )
    return name


def _on_hub(name: str) -> bool:
    """Whether the hub has ``name/config.json`` (one request, no retries); True if it cannot say."""
    from huggingface_hub import file_exists
    from huggingface_hub.errors import HFValidationError

    try:
        return file_exists(name, "config.json")
    except HFValidationError:  # not even a valid repo id
        return False
    except Exception:  # a network error: the hub answered hub_reachable a moment ago
        return True


def torch_device(device):
    """``device`` (None for CPU, a string or a torch.device) as a torch.device.

    ``"cuda"`` names the current CUDA device, so it becomes ``"cuda:<index>"``:
    the metric models are cached per device, and one GPU gets one copy.

    Examples
    --------
    >>> torch_device(None), torch_device("meta"), torch_device("cuda") == torch_device("cuda:0")
    (device(type='cpu'), device(type='meta'), True)
    """
    import torch

    if device is None:
        return torch.device("cpu")
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be None, a string or a torch.device, got {device!r}")
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device() if torch.cuda.is_available() else 0)
    return dev


def load_clap(name: str, device=None):
    """(ClapModel, feature extractor, tokenizer) for a checkpoint name, directory or ``"tiny-clap"``.

    Loaded once per name and device (cached), on ``device`` (None: CPU). With
    stand-ins on, a hub name loads ``"tiny-clap"``.

    Examples
    --------
    >>> model, fe, tok = load_clap("tiny-clap")
    >>> type(model).__name__, fe.sampling_rate, next(model.parameters()).device.type
    ('ClapModel', 48000, 'cpu')
    """
    return _load_clap(name, str(torch_device(device)))


@functools.cache
def _load_clap(name: str, device: str):
    """The cached load of :func:`load_clap`."""
    from transformers import ClapModel, ClapProcessor

    name = standin(name, "tiny-clap")
    if name == "tiny-clap":
        model, fe, tok = _tiny_clap()
    else:
        proc = ClapProcessor.from_pretrained(name)
        model, fe, tok = (
            ClapModel.from_pretrained(name).eval(),
            proc.feature_extractor,
            proc.tokenizer,
        )
    return model.to(device), fe, tok


load_clap.cache_clear = _load_clap.cache_clear  # type: ignore[attr-defined]


def features(out):
    """A transformers ``get_*_features`` result as a tensor (a tensor, or an output's pooler_output).

    Examples
    --------
    >>> import torch
    >>> from types import SimpleNamespace
    >>> t = torch.zeros(2, 3)
    >>> features(t) is t, features(SimpleNamespace(pooler_output=t)) is t
    (True, True)
    """
    return out if hasattr(out, "dim") else out.pooler_output


def clap_audio(audio: np.ndarray, sr: int, name: str, device=None) -> np.ndarray:
    """L2-normalised CLAP audio embeddings ``[N, D]`` (audio made mono at the model's rate).

    Examples
    --------
    >>> import numpy as np
    >>> clap_audio(np.zeros((2, 1, 48000), np.float32), 48000, "tiny-clap").shape
    (2, 16)
    """
    import torch

    model, fe, _ = load_clap(name, device)
    mono = mono_at(audio, sr, fe.sampling_rate)
    inputs = fe(list(mono), sampling_rate=fe.sampling_rate, return_tensors="pt")
    with torch.inference_mode():
        emb = features(model.get_audio_features(**on_model_device(inputs, model)))
    return torch.nn.functional.normalize(emb.float(), dim=-1).cpu().numpy()


def on_model_device(inputs, model) -> dict:
    """A processor's outputs (a mapping of tensors) moved to ``model``'s device.

    Examples
    --------
    >>> import torch
    >>> on_model_device({"x": torch.zeros(1), "n": 3}, torch.nn.Linear(1, 1))
    {'x': tensor([0.]), 'n': 3}
    """
    dev = next(model.parameters()).device
    return {k: v.to(dev) if hasattr(v, "to") else v for k, v in inputs.items()}


def clap_text(texts: list[str], name: str, device=None) -> np.ndarray:
    """L2-normalised CLAP text embeddings ``[N, D]``.

    Examples
    --------
    >>> clap_text(["jazz", "rock"], "tiny-clap").shape
    (2, 16)
    """
    import torch

    model, _, tok = load_clap(name, device)
    inputs = tok(texts, padding=True, truncation=True, return_tensors="pt")
    with torch.inference_mode():
        emb = features(model.get_text_features(**on_model_device(inputs, model)))
    return torch.nn.functional.normalize(emb.float(), dim=-1).cpu().numpy()


def clap_score(
    audio: ArrayLike | Generation,
    sr: int | None = None,
    texts: str | list[str] | None = None,
    *,
    model: str = "clap",
    device: str | None = None,
) -> np.ndarray:
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
    device : str or torch.device, optional
        Where CLAP runs (None: CPU); e.g. a session's ``s.device``.

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
    from ..audio import as_batch

    if texts is None and hasattr(audio, "prompts"):
        texts = audio.prompts
    audio, sr = audio_input(audio, sr)
    name = DEFAULT_CLAP if model == "clap" else model
    if not isinstance(name, str):
        raise TypeError(f"model must be 'clap' or a CLAP checkpoint name, got {model!r}")
    texts = _clap_texts(texts, as_batch(audio).shape[0])  # before any model runs
    a = clap_audio(audio, sr, name, device)
    t = clap_text(texts, name, device)
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
