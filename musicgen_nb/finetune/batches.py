"""Training batches on the delay pattern: targets, text states, teacher-forced logits, loss.

The training targets are transformers' own: position 0 of every codebook holds
the special token (BOS), codebook ``k``'s frame ``t`` sits at position
``t + delay[k] + 1``, step ``i`` predicts position ``i + 1``, and the loss skips
every position that holds the special token (delay padding and batch padding),
exactly as ``MusicgenForCausalLM`` does when given ``labels``.

Examples
--------
>>> import numpy as np, musicgen_nb as mg
>>> s = mg.load("tiny")
>>> x, y = sequences(s, [np.zeros((4, 3), dtype=np.int64)])
>>> tuple(x.shape), tuple(y.shape)
((1, 4, 6), (1, 4, 6))
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from ..conditioning import stack_states, text_states
from ..patterns import codebook_delays
from .data import Dataset
from .result import FineTune

if TYPE_CHECKING:
    from ..models import MusicGen
    from .data import Window


def sequences(s: MusicGen, codes_list: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-forcing inputs and labels on the delay pattern.

    Parameters
    ----------
    s : MusicGen
    codes_list : list of array ``[K, frames]``

    Returns
    -------
    inputs, labels : torch.Tensor
        int64 ``[B, K, L]`` each, ``L = max(frames) + max_delay``. ``inputs`` start
        with the special token; ``labels`` are ``inputs`` shifted left by one, with
        the special token wherever there is nothing to predict (delay and batch
        padding): those positions are masked out of the loss.

    Examples
    --------
    >>> import numpy as np, musicgen_nb as mg
    >>> s = mg.load("tiny")
    >>> x, y = sequences(s, [np.arange(8).reshape(4, 2)])
    >>> y[0].tolist()
    [[0, 1, 2048, 2048, 2048], [2048, 2, 3, 2048, 2048], [2048, 2048, 4, 5, 2048], [2048, 2048, 2048, 6, 7]]
    """
    delay = codebook_delays(s.num_codebooks, s.audio_channels)
    D = max(delay)
    K = s.num_codebooks
    length = max(int(c.shape[-1]) for c in codes_list) + D + 1
    seq = torch.full((len(codes_list), K, length), s.special_id, dtype=torch.long)
    for b, c in enumerate(codes_list):
        c = torch.as_tensor(np.asarray(c), dtype=torch.long)
        for k, d in enumerate(delay):
            seq[b, k, d + 1 : d + 1 + c.shape[-1]] = c[k]
    return seq[:, :, :-1].contiguous(), seq[:, :, 1:].contiguous()


def forward(decoder, inputs, hidden, mask) -> torch.Tensor:
    """Logits ``[B, K, L, V]`` of the transformers decoder, teacher-forced.

    Examples
    --------
    >>> import numpy as np, musicgen_nb as mg
    >>> s = mg.load("tiny")
    >>> x, _ = sequences(s, [np.zeros((4, 3), dtype=np.int64)])
    >>> h, m = stack_states(text_states(s, ["a"]), ["a"], s.device)
    >>> tuple(forward(s.model.decoder, x, h, m).shape)
    (1, 4, 6, 2048)
    """
    B, K, L = inputs.shape
    out = decoder(
        input_ids=inputs.reshape(B * K, L), encoder_hidden_states=hidden,
        encoder_attention_mask=mask.long(), use_cache=False,
    )  # fmt: skip
    return out.logits.view(B, K, L, -1)


def masked_loss(
    lg: torch.Tensor, labels: torch.Tensor, special_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cross-entropy over the positions that hold a code; (loss, correct, count).

    Every codebook has the same number of coded positions on the delay pattern,
    so this mean equals transformers' per-codebook mean.

    Examples
    --------
    >>> import torch
    >>> labels = torch.tensor([[[1, 2048]]])
    >>> lg = torch.zeros(1, 1, 2, 2049)
    >>> loss, correct, count = masked_loss(lg, labels, 2048)
    >>> round(loss.item(), 3), int(correct), int(count)
    (7.625, 0, 1)
    """
    valid = labels != special_id
    target = labels.masked_fill(~valid, -100)
    loss = F.cross_entropy(lg.float().flatten(0, 2), target.flatten(), ignore_index=-100)
    correct = ((lg.argmax(-1) == labels) & valid).sum()
    return loss, correct, valid.sum()


def _as_decoder(model):
    """(decoder to run, session) for a MusicGen or a FineTune."""
    if isinstance(model, FineTune):
        return model.model, model.base
    return model.model.decoder, model


def _dtype(module):
    return next(p for p in module.parameters() if p.is_floating_point()).dtype


def logits(
    model: MusicGen | FineTune, codes_list: list[np.ndarray], texts: list[str | None]
) -> torch.Tensor:
    """Teacher-forced logits ``[B, K, L, V]`` of a MusicGen or a FineTune (fp32, eval mode).

    Parameters
    ----------
    model : MusicGen or FineTune
    codes_list : list of array ``[K, frames]``
    texts : list of str or None

    Examples
    --------
    >>> import numpy as np, musicgen_nb as mg
    >>> tuple(logits(mg.load("tiny"), [np.zeros((4, 3), dtype=np.int64)], ["a"]).shape)
    (1, 4, 6, 2048)
    """
    decoder, s = _as_decoder(model)
    inputs, _ = sequences(s, codes_list)
    h, m = stack_states(text_states(s, texts), list(texts), s.device)
    was = decoder.training
    decoder.eval()
    try:
        with torch.no_grad():
            return forward(decoder, inputs.to(s.device), h.to(_dtype(decoder)), m).float()
    finally:
        decoder.train(was)


def token_accuracy(
    model: MusicGen | FineTune, data: Dataset | list[Window], *, batch_size: int = 8
) -> float:
    """Teacher-forced token accuracy (argmax) over every code of the windows, with captions.

    Chance is about ``1 / codebook_size`` (1/2048).

    Parameters
    ----------
    model : MusicGen or FineTune
    data : Dataset or list of Window

    Examples
    --------
    >>> import tempfile, musicgen_nb as mg
    >>> from musicgen_nb.finetune import dataset, synth_dataset
    >>> s = mg.load("tiny")
    >>> data = dataset(synth_dataset(tempfile.mkdtemp(), seconds=1.0))
    >>> token_accuracy(s, data) < 0.05
    True
    """
    _, s = _as_decoder(model)
    windows = data.encode(s) if isinstance(data, Dataset) else list(data)
    correct = total = 0
    for a in range(0, len(windows), batch_size):
        chunk = windows[a : a + batch_size]
        lg = logits(model, [w.codes for w in chunk], [w.text for w in chunk])
        _, labels = sequences(s, [w.codes for w in chunk])
        _, c, n = masked_loss(lg, labels.to(lg.device), s.special_id)
        correct += int(c)
        total += int(n)
    return correct / max(1, total)


# ------------------------------------------------------------------------- the data order
def step_seed(seed: int, step: int, stream: int) -> int:
    """A 63-bit seed for one random stream of one step: the same on every run and resume.

    Examples
    --------
    >>> step_seed(0, 5, 1) == step_seed(0, 5, 1) != step_seed(0, 5, 2)
    True
    """
    return (
        int.from_bytes(hashlib.sha256(f"{seed}:{step}:{stream}".encode()).digest()[:8], "little")
        & 0x7FFFFFFFFFFFFFFF
    )


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> list[int]:
    """Items of step ``step``: a stateless stream of per-epoch shuffles (so resuming is exact).

    Examples
    --------
    >>> sorted(batch_indices(4, 4, seed=0, step=0))
    [0, 1, 2, 3]
    """
    out = []
    for i in range(step * batch_size, (step + 1) * batch_size):
        epoch, pos = divmod(i, n)
        g = torch.Generator().manual_seed(step_seed(seed, epoch, 1))
        out.append(int(torch.randperm(n, generator=g)[pos]))
    return out


def data_fingerprint(windows) -> str:
    """A short hash of the windows' captions and codes: a resumed run must train on the same data.

    Examples
    --------
    >>> import numpy as np
    >>> from musicgen_nb.finetune import Window
    >>> len(data_fingerprint([Window(np.zeros((4, 2), dtype=np.int64), "a", "a.wav", 0)]))
    16
    """
    h = hashlib.sha256()
    for w in windows:
        h.update(w.text.encode())
        h.update(np.ascontiguousarray(w.codes, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]
