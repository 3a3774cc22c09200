"""Fine-tune MusicGen on your own audio: a captioned dataset, LoRA training, adapters.

Three steps:

1. :func:`dataset` reads a folder of audio with captions, checks every file and
   names the bad ones. :meth:`Dataset.encode` resamples, encodes each file to
   EnCodec codes once (cached on disk, keyed by the file's hash and the codec)
   and cuts the codes into windows of at most the model's window.
2. :func:`train` teaches the decoder those windows on the delay pattern, with a
   LoRA adapter (through ``peft``, the ``musicgen-nb[train]`` extra) or a full
   fine-tune. Text conditioning is dropped at random (``condition_dropout``) so
   that the unconditional branch, and so classifier-free guidance, keeps working.
   It checkpoints into ``out``, stops cleanly on an interrupt and resumes.
3. ``mg.load(name, adapter=out)`` loads base plus adapter, merged into plain
   weights (so every precision, int8 included, runs it), and every saved clip's
   sidecar names the adapter. :meth:`FineTune.merge` gives the same plain model.

The training targets are transformers' own: position 0 of every codebook holds
the special token (BOS), codebook ``k``'s frame ``t`` sits at position
``t + delay[k] + 1``, step ``i`` predicts position ``i + 1``, and the loss skips
every position that holds the special token (delay padding and batch padding),
exactly as ``MusicgenForCausalLM`` does when given ``labels``.

Examples
--------
>>> import tempfile, musicgen_nb as mg
>>> from musicgen_nb import finetune
>>> folder = finetune.synth_dataset(tempfile.mkdtemp(), seconds=1.0)
>>> data = finetune.dataset(folder)
>>> len(data), data.layout
(2, 'metadata.csv')
>>> s = mg.load("tiny")
>>> ft = finetune.train(s, data, steps=2, out=tempfile.mkdtemp(), progress=False)
>>> ft.step
2
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import math
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "DataError",
    "Dataset",
    "Window",
    "FineTune",
    "dataset",
    "train",
    "token_accuracy",
    "logits",
    "sequences",
    "masked_loss",
    "codec_key",
    "apply_adapter",
    "adapter_provenance",
    "synth_dataset",
    "loss_figure",
]

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff")
#: The linears of every decoder layer that get a LoRA adapter (peft regex, full match).
LORA_TARGETS = (
    r".*layers\.\d+\.(self_attn|encoder_attn)\.(q_proj|k_proj|v_proj|out_proj)"
    r"|.*layers\.\d+\.(fc1|fc2)|.*lm_heads\.\d+"
)
TRAIN_PRECISIONS = ("auto", "fp32", "bf16")
CONFIG_FILE = "training_config.json"
CARD_FILE = "README.md"
HISTORY_FILE = "history.csv"
FULL_WEIGHTS = "decoder.safetensors"
LORA_WEIGHTS = "adapter_model.safetensors"
CHECKPOINT = "checkpoint"
# What must agree to resume a run in the same ``out`` (``steps`` may grow).
_RUN_KEYS = ("base", "decoder_config", "data", "lora_rank", "lora_alpha", "lr", "batch_size",
             "condition_dropout", "seed", "precision", "weight_decay", "targets")  # fmt: skip


class DataError(ValueError):
    """A file of a fine-tuning dataset that cannot be used; the message names the file."""


# ============================================================================ data
@dataclass
class Item:
    """One usable audio file and its caption."""

    file: Path
    text: str
    sha256: str
    duration: float
    sample_rate: int


@dataclass
class Window:
    """A stretch of one file's codes, at most the model's window long.

    Attributes
    ----------
    codes : np.ndarray
        int64 ``[num_codebooks, frames]``.
    text : str
    file : str
        The file's name inside the dataset folder.
    start : int
        First frame of the window in the file's codes.
    """

    codes: np.ndarray
    text: str
    file: str
    start: int


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _captions(folder: Path) -> tuple[str, dict[str, str | None], list[Path]]:
    """(layout, {relative file name: caption or None}, audio files without a caption entry)."""
    audio = sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file()
    )
    rel = {p.relative_to(folder).as_posix(): p for p in audio}
    meta_csv, meta_jsonl = folder / "metadata.csv", folder / "metadata.jsonl"
    if meta_csv.exists() and meta_jsonl.exists():
        raise ValueError(
            f"folder {str(folder)!r} holds both metadata.csv and metadata.jsonl; keep one"
        )
    if meta_csv.exists() or meta_jsonl.exists():
        meta = meta_csv if meta_csv.exists() else meta_jsonl
        rows = []
        if meta is meta_csv:
            with open(meta, newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
        else:
            for n, line in enumerate(meta.read_text(encoding="utf-8").splitlines(), 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as err:
                        raise ValueError(f"{meta}: line {n} is not JSON ({err})") from None
        if rows and not {"file_name", "text"} <= set(rows[0]):
            raise ValueError(
                f"{meta} must have the columns 'file_name' and 'text' (the audiofolder "
                f"convention), got {sorted(rows[0])}"
            )
        captions = {}
        for row in rows:
            name = str(row["file_name"]).strip()
            text = row.get("text")
            captions[name] = text.strip() if isinstance(text, str) and text.strip() else None
        missing = [p for name, p in rel.items() if name not in captions]
        return meta.name, captions, missing
    captions = {}
    for name, p in rel.items():
        txt = p.with_suffix(".txt")
        text = txt.read_text(encoding="utf-8").strip() if txt.exists() else ""
        captions[name] = text or None
    return "txt", captions, []


def _check_file(folder, name, text, *, min_duration, silence_db) -> Item:
    from . import audio as audio_io

    path = folder / name
    if not path.exists():
        raise DataError(f"{name}: listed in the metadata but there is no such file in {folder}")
    if text is None:
        raise DataError(
            f"{name}: no caption (give it a 'text' in the metadata, or a {Path(name).stem}.txt)"
        )
    try:
        wav, sr = audio_io.load(path)
    except Exception as err:  # noqa: BLE001 - any reader failure is 'unreadable'
        raise DataError(f"{name}: unreadable audio ({err})") from None
    duration = wav.shape[-1] / sr
    if duration < min_duration:
        raise DataError(f"{name}: too short ({duration:.2f} s; min_duration is {min_duration:g} s)")
    peak = float(np.abs(wav).max())
    if not np.isfinite(peak) or peak <= 10.0 ** (silence_db / 20.0):
        level = -math.inf if peak == 0 else 20 * math.log10(peak)
        raise DataError(f"{name}: silent (peak {level:.1f} dBFS; the threshold is {silence_db:g})")
    return Item(path, text, _sha256(path), duration, int(sr))


def _positive(value, name, *, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number > 0, got {value!r}")
    if not math.isfinite(float(value)) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


class Dataset:
    """A folder of captioned audio, checked, ready to encode.

    Make one with :func:`dataset`.

    Attributes
    ----------
    folder : Path
    layout : str
        ``"metadata.csv"``, ``"metadata.jsonl"`` or ``"txt"``.
    items : list of Item
        The usable files: ``file``, ``text``, ``sha256``, ``duration``, ``sample_rate``.
    skipped : list of (str, str)
        Files left out, with the reason.
    window, hop : float or None
        Window length and hop in seconds (None: the model's window, hop = window).
    """

    def __init__(self, folder, layout, items, skipped, *, window=None, hop=None, cache_dir=None):
        self.folder = Path(folder)
        self.layout = layout
        self.items = list(items)
        self.skipped = list(skipped)
        self.window = window
        self.hop = hop
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._encoded: dict[tuple, list[Window]] = {}

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        secs = sum(i.duration for i in self.items)
        skip = f", {len(self.skipped)} skipped" if self.skipped else ""
        return f"Dataset({str(self.folder)!r}, {len(self)} files, {secs:.1f} s, layout={self.layout!r}{skip})"

    def to_frame(self):
        """One row per usable file: file, text, duration, sample_rate, sha256."""
        import pandas as pd

        return pd.DataFrame(
            [dict(file=i.file.relative_to(self.folder).as_posix(), text=i.text,
                  duration=round(i.duration, 3), sample_rate=i.sample_rate, sha256=i.sha256[:12])
             for i in self.items]
        )  # fmt: skip

    def encode(self, s, *, cache: bool = True, progress: bool = False) -> list[Window]:
        """Encode every file with ``s``'s codec once and cut the codes into windows.

        Codes are cached on disk (``cache_dir``, by default ``$MUSICGEN_NB_CACHE/codes``)
        under the file's SHA-256 and a hash of the codec, so a second call (or a second
        session) reads them back instead of running EnCodec again.

        Parameters
        ----------
        s : MusicGen
        cache : bool
            Read and write the disk cache.
        progress : bool
            A tqdm bar over files.

        Returns
        -------
        list of Window
            Windows of at most ``window`` seconds (default ``s.max_duration``) every
            ``hop`` seconds (default: the window); the last one ends at the file's end.
        """
        from . import audio as audio_io

        key = codec_key(s)
        frames = int(round((self.window or s.max_duration) * s.frame_rate))
        if frames > s.max_frames:
            raise ValueError(
                f"window must be at most the model's window ({s.max_duration:g} s), got {self.window!r}"
            )
        hop = int(round(self.hop * s.frame_rate)) if self.hop else frames
        hop = max(1, hop)
        memo = (key, frames, hop)
        if memo in self._encoded:
            return self._encoded[memo]
        root = (self.cache_dir or _cache_root()) / key
        windows = []
        items = self.items
        if progress:
            from tqdm.auto import tqdm

            items = tqdm(items, desc="encoding", unit="file", leave=False)
        for item in items:
            path = root / f"{item.sha256}.npy"
            codes = np.load(path) if cache and path.exists() else None
            if codes is None:
                wav, _ = audio_io.load(item.file, sr=s.sample_rate)
                codes = s.encode(wav, s.sample_rate)[0].astype(np.int16)
                if cache:
                    root.mkdir(parents=True, exist_ok=True)
                    tmp = root / f".{item.sha256}.{os.getpid()}.npy"
                    np.save(tmp, codes)
                    os.replace(tmp, path)
            codes = codes.astype(np.int64)
            total = codes.shape[-1]
            starts = list(range(0, max(1, total - frames + 1), hop))
            if starts[-1] + frames < total:
                starts.append(total - frames)
            name = item.file.relative_to(self.folder).as_posix()
            for a in starts:
                windows.append(Window(codes[:, a : a + frames], item.text, name, a))
        self._encoded[memo] = windows
        return windows


def _cache_root() -> Path:
    from .checkpoints import cache_root

    return cache_root() / "codes"


def codec_key(s) -> str:
    """A short hash of ``s``'s codec: its config and every weight (the disk cache key).

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> len(codec_key(mg.load("tiny")))
    16
    """
    codec = s.model.audio_encoder
    h = hashlib.sha256(json.dumps(codec.config.to_dict(), sort_keys=True, default=str).encode())
    h.update(str(s.audio_channels).encode())
    for name, t in sorted(codec.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def dataset(
    folder, *, window=None, hop=None, min_duration=1.0, silence_db=-60.0, strict=False,
    cache_dir=None,
) -> Dataset:  # fmt: skip
    """Read a folder of audio with captions for fine-tuning.

    Two layouts are accepted:

    - Hugging Face's *audiofolder*: a ``metadata.csv`` or ``metadata.jsonl`` with the
      columns ``file_name`` (relative to the folder) and ``text``;
    - same-stem text files: ``song.wav`` with its caption in ``song.txt``.

    Every file is read once to check it. A file that is unreadable, silent, too
    short, or has no caption raises :class:`DataError` naming it when ``strict``;
    otherwise it is skipped with a warning (and listed in ``skipped``).

    Parameters
    ----------
    folder : path
    window : float, optional
        Window length in seconds; default (None) the model's window (30 s for the
        real checkpoints). Longer files are cut into several windows.
    hop : float, optional
        Seconds between window starts; default the window (no overlap).
    min_duration : float
        Shorter files are "too short".
    silence_db : float
        Files whose peak is at or below this level (dBFS) are "silent".
    strict : bool
        Raise on the first bad file instead of skipping it.
    cache_dir : path, optional
        Where encoded codes are cached; default ``$MUSICGEN_NB_CACHE/codes``.

    Returns
    -------
    Dataset

    Examples
    --------
    >>> import tempfile
    >>> data = dataset(synth_dataset(tempfile.mkdtemp(), seconds=1.0))
    >>> data.to_frame()[["file", "duration"]]
            file  duration
    0  tune0.wav       1.0
    1  tune1.wav       1.0
    """
    if not isinstance(folder, (str, os.PathLike)):
        raise TypeError(f"folder must be a path, got {type(folder).__name__}")
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"folder must be a directory of audio files, got {str(folder)!r}")
    window = _positive(window, "window", allow_none=True)
    hop = _positive(hop, "hop", allow_none=True)
    if window is not None and hop is not None and hop > window:
        raise ValueError(f"hop must be at most the window ({window:g} s), got {hop!r}")
    min_duration = _positive(min_duration, "min_duration")
    if not isinstance(strict, bool):
        raise TypeError(f"strict must be True or False, got {strict!r}")
    layout, captions, uncaptioned = _captions(folder)
    names = list(captions) + [p.relative_to(folder).as_posix() for p in uncaptioned]
    if not names:
        raise ValueError(
            f"folder {str(folder)!r} holds no audio files ({', '.join(AUDIO_EXTENSIONS)})"
        )
    items, skipped = [], []
    for name in names:
        try:
            items.append(
                _check_file(folder, name, captions.get(name), min_duration=min_duration,
                            silence_db=float(silence_db))
            )  # fmt: skip
        except DataError as err:
            if strict:
                raise
            warnings.warn(f"skipping {err}", stacklevel=2)
            skipped.append((name, str(err).split(": ", 1)[1]))
    if not items:
        reasons = "; ".join(f"{n}: {r}" for n, r in skipped)
        raise ValueError(f"folder {str(folder)!r} holds no usable file: {reasons}")
    return Dataset(folder, layout, items, skipped, window=window, hop=hop, cache_dir=cache_dir)


def synth_dataset(folder, *, seconds: float = 2.0, sr: int = 32000, per_style: int = 1) -> Path:
    """Write a small captioned dataset of two "styles" of tunes (audiofolder layout).

    Style 0 is a bright rising arpeggio in C major, style 1 a low falling one in
    A minor; ``per_style`` tunes of each, transposed by a tone each time.

    Returns
    -------
    Path
        ``folder``, with ``tune<i>.wav`` files and a ``metadata.csv``.

    Examples
    --------
    >>> import tempfile
    >>> sorted(p.name for p in synth_dataset(tempfile.mkdtemp()).iterdir())
    ['metadata.csv', 'tune0.wav', 'tune1.wav']
    """
    from . import audio as audio_io

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    styles = [
        ([60, 64, 67, 72], "bright rising arpeggio in C major, quick plucked notes"),
        ([57, 53, 50, 45], "dark falling arpeggio in A minor, slow low notes"),
    ]
    rows = []
    for i in range(per_style):
        for j, (notes, text) in enumerate(styles):
            note = 0.125 if j == 0 else 0.25
            n = max(1, int(round(seconds / note)))
            seq = [notes[k % len(notes)] + 2 * i for k in range(n)]
            wav = audio_io.melody_tone(seq, note, sr)
            wav = np.pad(wav, (0, max(0, int(round(seconds * sr)) - wav.shape[-1])))
            name = f"tune{len(rows)}.wav"
            target = folder / name
            if target.exists():
                raise FileExistsError(f"{target} exists; give synth_dataset an empty folder")
            audio_io.write(target, wav[: int(round(seconds * sr))], sr)
            rows.append(dict(file_name=name, text=text))
    with open(folder / "metadata.csv", "x", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["file_name", "text"])
        w.writeheader()
        w.writerows(rows)
    return folder


# ============================================================================ batches
def _delays(s) -> list[int]:
    from .generation import delays

    return delays(s)


def sequences(s, codes_list) -> tuple[torch.Tensor, torch.Tensor]:
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
    delay = _delays(s)
    D = max(delay)
    K = s.num_codebooks
    length = max(int(c.shape[-1]) for c in codes_list) + D + 1
    seq = torch.full((len(codes_list), K, length), s.special_id, dtype=torch.long)
    for b, c in enumerate(codes_list):
        c = torch.as_tensor(np.asarray(c), dtype=torch.long)
        for k, d in enumerate(delay):
            seq[b, k, d + 1 : d + 1 + c.shape[-1]] = c[k]
    return seq[:, :, :-1].contiguous(), seq[:, :, 1:].contiguous()


def _text_states(s, texts) -> dict:
    """Projected text states and masks of each caption (None: unconditional), computed once."""
    from .generation import encode_text

    out = {}
    with torch.no_grad():
        for t in texts:
            if t not in out:
                h, m = encode_text(s, [t])
                out[t] = (h.float().cpu(), m.cpu())
    return out


def _conditioning(states, texts, device):
    from .generation import F_pad

    width = max(states[t][0].shape[1] for t in texts)
    h = torch.cat([F_pad(states[t][0], width) for t in texts]).to(device)
    m = torch.cat([F_pad(states[t][1], width) for t in texts]).to(device)
    return h, m


def _forward(decoder, inputs, hidden, mask):
    """Logits ``[B, K, L, V]`` of the transformers decoder, teacher-forced."""
    B, K, L = inputs.shape
    out = decoder(
        input_ids=inputs.reshape(B * K, L), encoder_hidden_states=hidden,
        encoder_attention_mask=mask.long(), use_cache=False,
    )  # fmt: skip
    return out.logits.view(B, K, L, -1)


def masked_loss(lg, labels, special_id) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cross-entropy over the positions that hold a code; (loss, correct, count).

    Every codebook has the same number of coded positions on the delay pattern,
    so this mean equals transformers' per-codebook mean.
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


def logits(model, codes_list, texts) -> torch.Tensor:
    """Teacher-forced logits ``[B, K, L, V]`` of a MusicGen or a FineTune (fp32, eval mode).

    Parameters
    ----------
    model : MusicGen or FineTune
    codes_list : list of array ``[K, frames]``
    texts : list of str or None
    """
    decoder, s = _as_decoder(model)
    inputs, _ = sequences(s, codes_list)
    states = _text_states(s, texts)
    h, m = _conditioning(states, list(texts), s.device)
    was = decoder.training
    decoder.eval()
    try:
        with torch.no_grad():
            return _forward(decoder, inputs.to(s.device), h.to(_dtype(decoder)), m).float()
    finally:
        decoder.train(was)


def _dtype(module):
    return next(p for p in module.parameters() if p.is_floating_point()).dtype


def token_accuracy(model, data, *, batch_size: int = 8) -> float:
    """Teacher-forced token accuracy (argmax) over every code of the windows, with captions.

    Chance is about ``1 / codebook_size`` (1/2048).

    Parameters
    ----------
    model : MusicGen or FineTune
    data : Dataset or list of Window

    Examples
    --------
    >>> import tempfile, musicgen_nb as mg
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


# ============================================================================ training
def _require_peft():
    try:
        import peft
    except ImportError:
        raise ImportError(
            "LoRA fine-tuning needs peft: pip install 'musicgen-nb[train]' "
            "(or pass lora_rank=None for a full fine-tune)"
        ) from None
    return peft


def _step_seed(seed: int, step: int, stream: int) -> int:
    return (
        int.from_bytes(hashlib.sha256(f"{seed}:{step}:{stream}".encode()).digest()[:8], "little")
        & 0x7FFFFFFFFFFFFFFF
    )


def _batch_indices(n: int, batch_size: int, seed: int, step: int) -> list[int]:
    """Items of step ``step``: a stateless stream of per-epoch shuffles (so resuming is exact)."""
    out = []
    for i in range(step * batch_size, (step + 1) * batch_size):
        epoch, pos = divmod(i, n)
        g = torch.Generator().manual_seed(_step_seed(seed, epoch, 1))
        out.append(int(torch.randperm(n, generator=g)[pos]))
    return out


def _data_fingerprint(windows) -> str:
    h = hashlib.sha256()
    for w in windows:
        h.update(w.text.encode())
        h.update(np.ascontiguousarray(w.codes, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


def _check_train_args(
    s, data, steps, lr, batch_size, lora_rank, condition_dropout, seed, precision
):
    from .models import MusicGen

    if not isinstance(s, MusicGen):
        raise TypeError(f"s must be a MusicGen from mg.load(), got {type(s).__name__}")
    if s.precision in ("int8", "int4"):
        raise ValueError(
            f"s was loaded with precision={s.precision!r}, which cannot be trained; load it with "
            "precision='fp32' (or 'auto'), then load the result at any precision"
        )
    if s.is_melody:
        raise ValueError(
            f"fine-tuning supports the text-only checkpoints; {s.name!r} is a melody model"
        )
    if not isinstance(data, Dataset) and not (
        isinstance(data, (list, tuple)) and data and all(isinstance(w, Window) for w in data)
    ):
        raise TypeError(
            f"data must be a Dataset from mg.finetune.dataset() or a list of Window, got {type(data).__name__}"
        )
    for name, value in (("steps", steps), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    _positive(lr, "lr")
    if lora_rank is not None and (
        isinstance(lora_rank, bool) or not isinstance(lora_rank, (int, np.integer)) or lora_rank < 1
    ):
        raise ValueError(
            f"lora_rank must be an int >= 1, or None for a full fine-tune; got {lora_rank!r}"
        )
    if isinstance(condition_dropout, bool) or not isinstance(condition_dropout, (int, float)):
        raise TypeError(f"condition_dropout must be a number in [0, 1), got {condition_dropout!r}")
    if not 0 <= condition_dropout < 1:
        raise ValueError(
            f"condition_dropout must be in [0, 1) (0.1 keeps guidance working), got {condition_dropout!r}"
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    if precision not in TRAIN_PRECISIONS:
        raise ValueError(
            f"precision must be one of {TRAIN_PRECISIONS} (fp16 training needs loss scaling; "
            f"use bf16), got {precision!r}"
        )


def _resolve_train_precision(precision, device) -> str:
    if precision != "auto":
        return precision
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _trainable(model) -> dict[str, torch.Tensor]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def _save_checkpoint(out: Path, model, opt, step: int, history: list) -> None:
    """Write ``out/checkpoint`` atomically: trainable weights, optimizer, step and history."""
    from safetensors.torch import save_file

    tmp = out / f".{CHECKPOINT}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(
        {n: p.detach().cpu().contiguous() for n, p in _trainable(model).items()},
        tmp / "trainable.safetensors",
    )
    torch.save(opt.state_dict(), tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps(dict(step=step, history=history)))
    final, old = out / CHECKPOINT, out / f".{CHECKPOINT}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def _load_checkpoint(out: Path, model, opt) -> tuple[int, list]:
    from safetensors.torch import load_file

    ck = out / CHECKPOINT
    if not ck.exists() and (out / f".{CHECKPOINT}.old").exists():
        ck = out / f".{CHECKPOINT}.old"  # killed between the two renames
    if not ck.exists():
        return 0, []
    weights = load_file(ck / "trainable.safetensors")
    params = _trainable(model)
    if set(weights) != set(params):
        raise ValueError(f"the checkpoint in {ck} does not match this model's trainable weights")
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(weights[n])
    opt.load_state_dict(torch.load(ck / "optimizer.pt", weights_only=True))
    state = json.loads((ck / "state.json").read_text())
    return int(state["step"]), list(state["history"])


class _LivePlot:
    """A loss curve redrawn in place in a notebook (plotly, imported only here).

    The figure goes out as a raw mime bundle under one display id, so each redraw
    replaces the last one (a plotly figure displayed as an object would append).
    """

    def __init__(self, every: int):
        from IPython.display import display

        self.every = every
        self.handle = display(self._bundle([]), raw=True, display_id=True)

    @staticmethod
    def _bundle(history) -> dict:
        fig = loss_figure(history)
        return {
            "application/vnd.plotly.v1+json": json.loads(fig.to_json()),  # JupyterLab
            "text/html": fig.to_html(full_html=False, include_plotlyjs="cdn"),  # Colab, exports
            "text/plain": f"loss plot, {len(history)} steps",
        }

    def update(self, history, final=False):
        step = history[-1]["step"] if history else 0
        if history and (final or step % self.every == 0):
            self.handle.update(self._bundle(history), raw=True)


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def loss_figure(history):
    """A plotly figure of the training loss (and teacher-forced accuracy) per step.

    Parameters
    ----------
    history : list of dict or pandas.DataFrame
        Rows with ``step``, ``loss`` and ``accuracy`` (``FineTune.history``).
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    rows = history.to_dict("records") if hasattr(history, "to_dict") else list(history)
    steps = [r["step"] for r in rows]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=steps, y=[r["loss"] for r in rows], name="loss", mode="lines"))
    fig.add_trace(
        go.Scatter(x=steps, y=[r["accuracy"] for r in rows], name="token accuracy (batch)",
                   mode="lines", line=dict(dash="dot")),
        secondary_y=True,
    )  # fmt: skip
    fig.update_layout(
        title="Fine-tuning", xaxis_title="step", height=320, margin=dict(l=50, r=50, t=40, b=40)
    )
    fig.update_yaxes(title_text="cross-entropy", secondary_y=False)
    fig.update_yaxes(title_text="accuracy", range=[0, 1], secondary_y=True)
    return fig


def train(
    s, data, *, steps=300, lr=2e-4, batch_size=4, lora_rank=16, lora_alpha=None,
    condition_dropout=0.1, out=None, seed=0, precision="auto", weight_decay=0.0,
    save_every=50, progress=True, plot="auto", callback=None,
):  # fmt: skip
    """Fine-tune the decoder of ``s`` on ``data``; write an adapter into ``out``.

    ``s`` itself is never changed: training runs on a copy of its decoder. Text
    states come from ``s``'s frozen text encoder, computed once per caption.

    Parameters
    ----------
    s : MusicGen
        A text-only model loaded in fp32 (or bf16/fp16 on a GPU); not int8.
    data : Dataset or list of Window
        From :func:`dataset` (encoded here with ``s``'s codec, once).
    steps : int
        Optimizer steps in total (a resumed run counts the steps already done).
    lr : float
        AdamW learning rate, constant.
    batch_size : int
        Windows per step.
    lora_rank : int or None
        LoRA rank on every attention and feed-forward linear of the decoder
        (needs peft). None trains every decoder weight (a full fine-tune).
    lora_alpha : float, optional
        LoRA scale numerator; default ``lora_rank`` (scale 1).
    condition_dropout : float
        Share of items trained without their caption (unconditional), in [0, 1).
        It keeps the unconditional branch alive so guidance still works.
    out : path, optional
        Run folder: checkpoint, adapter, config, model card, history. A folder
        that holds a checkpoint of the same run resumes from it; one of a
        different run is refused. Default: a new temporary folder.
    seed : int
        Seeds the LoRA init, data order, condition dropout and decoder dropout:
        on the CPU the same seed gives the same adapter, resumed or not.
    precision : {"auto", "fp32", "bf16"}
        Autocast precision (weights stay fp32); "auto" is bf16 on a CUDA GPU that
        has it, else fp32.
    weight_decay : float
        AdamW weight decay.
    save_every : int
        Steps between checkpoints (an interrupt also writes one).
    progress : bool
        A tqdm bar with the running loss.
    plot : bool or "auto"
        A live loss plot (plotly) redrawn in place; "auto" draws it in notebooks
        when ``progress`` is on.
    callback : callable, optional
        ``callback(step, loss)`` after each step. Raising KeyboardInterrupt
        there stops training like Ctrl-C: the checkpoint is written first.

    Returns
    -------
    FineTune
        ``interrupted`` is True when it stopped early; call ``train`` again with
        the same ``out`` to resume.

    Examples
    --------
    >>> import tempfile, musicgen_nb as mg
    >>> s = mg.load("tiny")
    >>> data = mg.finetune.dataset(mg.finetune.synth_dataset(tempfile.mkdtemp(), seconds=1.0))
    >>> ft = mg.finetune.train(s, data, steps=3, out=tempfile.mkdtemp(), progress=False)
    >>> len(ft.history), sorted(p.name for p in ft.out.iterdir() if not p.name.startswith("."))[:3]
    (3, ['README.md', 'adapter_config.json', 'adapter_model.safetensors'])
    """
    _check_train_args(s, data, steps, lr, batch_size, lora_rank, condition_dropout, seed, precision)
    if lora_rank is not None:
        _require_peft()
    save_every = max(1, int(save_every))
    prec = _resolve_train_precision(precision, s.device)
    windows = data.encode(s, progress=progress) if isinstance(data, Dataset) else list(data)
    if out is None:
        import tempfile

        out = tempfile.mkdtemp(prefix="musicgen-finetune-")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = dict(
        base=s.name, checkpoint=s.meta.get("checkpoint", s.name),
        decoder_config=_decoder_config(s), data=_data_fingerprint(windows),
        lora_rank=None if lora_rank is None else int(lora_rank),
        lora_alpha=None if lora_rank is None else float(lora_alpha or lora_rank),
        lr=float(lr), batch_size=int(batch_size), condition_dropout=float(condition_dropout),
        seed=int(seed), precision=prec, weight_decay=float(weight_decay),
        targets=LORA_TARGETS if lora_rank is not None else "all decoder weights",
        steps=int(steps),
    )  # fmt: skip
    previous = out / CONFIG_FILE
    if previous.exists():
        old = json.loads(previous.read_text())
        differ = [k for k in _RUN_KEYS if old.get(k) != config.get(k)]
        if differ:
            raise ValueError(
                f"out={str(out)!r} holds a different run (it differs in {', '.join(differ)}); "
                "give a new folder, or delete this one to start over"
            )
    _write_atomic(previous, json.dumps(config | dict(status="training"), indent=1))

    device = s.device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(_step_seed(seed, 0, 0))
        model = _trainable_decoder(s, lora_rank, config["lora_alpha"])
        params = list(_trainable(model).values())
        opt = torch.optim.AdamW(params, lr=float(lr), weight_decay=float(weight_decay))
        start, history = _load_checkpoint(out, model, opt)
        ft = FineTune(base=s, model=model, out=out, config=config, history=history)
        if start >= steps:
            ft.step = start
            return ft._finish(windows, write=not (out / _weights_file(lora_rank)).exists())
        states = _text_states(s, sorted({w.text for w in windows}) + [None])
        bar = plotter = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=steps, initial=start, desc="fine-tuning", unit="step")
        if plot is True or (plot == "auto" and progress and _in_notebook()):
            plotter = _LivePlot(every=max(1, steps // 25))
        autocast = torch.autocast(device.type, dtype=torch.bfloat16) if prec == "bf16" else _Null()
        step = start
        model.train()
        try:
            while step < steps:
                torch.manual_seed(_step_seed(seed, step, 2))  # decoder dropout, if any
                idx = _batch_indices(len(windows), batch_size, seed, step)
                g = torch.Generator().manual_seed(_step_seed(seed, step, 3))
                drop = torch.rand(len(idx), generator=g) < condition_dropout
                texts = [
                    None if d else windows[i].text for i, d in zip(idx, drop.tolist(), strict=True)
                ]
                inputs, labels = sequences(s, [windows[i].codes for i in idx])
                h, m = _conditioning(states, texts, device)
                with autocast:
                    lg = _forward(model, inputs.to(device), h, m)
                loss, correct, count = masked_loss(lg, labels.to(device), s.special_id)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                row = dict(loss=float(loss.detach()), accuracy=int(correct) / max(1, int(count)))
                with _DeferInterrupt():  # weights, step and history move together
                    opt.step()
                    step += 1
                    row = dict(step=step, **row)
                    history.append(row)
                if step % save_every == 0 or step == steps:
                    _save_checkpoint(out, model, opt, step, history)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{row['loss']:.3f}")
                if plotter is not None:
                    plotter.update(history)
                if callback is not None:
                    callback(step, row["loss"])
        except KeyboardInterrupt:
            ft.interrupted = True
            _save_checkpoint(out, model, opt, step, history)
        finally:
            if bar is not None:
                bar.close()
            if plotter is not None:
                plotter.update(history, final=True)
        ft.step = step
        model.eval()
        if ft.interrupted:
            warnings.warn(
                f"training stopped at step {step}/{steps}; the checkpoint is in {out / CHECKPOINT}. "
                "Call train() again with the same out= to resume.",
                stacklevel=2,
            )
            _write_history(out, history)
            return ft
        return ft._finish(windows, write=True)


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _DeferInterrupt:
    """Hold a Ctrl-C (SIGINT) that arrives inside the block until its end (main thread only)."""

    def __enter__(self):
        import signal
        import threading

        self.old = None
        self.hit = False
        if threading.current_thread() is threading.main_thread():
            self.old = signal.signal(signal.SIGINT, self._hold)
        return self

    def _hold(self, signum, frame):
        self.hit = True

    def __exit__(self, *exc):
        import signal

        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)
            if self.hit:
                raise KeyboardInterrupt
        return False


def _decoder_config(s) -> dict:
    cfg = s.model.config.decoder.to_dict()
    keep = ("hidden_size", "num_hidden_layers", "num_attention_heads", "ffn_dim", "num_codebooks",
            "vocab_size", "audio_channels", "max_position_embeddings")  # fmt: skip
    return {k: cfg.get(k) for k in keep}


def _weights_file(lora_rank) -> str:
    return FULL_WEIGHTS if lora_rank is None else LORA_WEIGHTS


def _trainable_decoder(s, lora_rank, lora_alpha):
    """A copy of ``s``'s decoder (fp32) with LoRA layers, or every weight, trainable.

    A full fine-tune copies every weight. LoRA copies only the module tree: the
    frozen fp32 base weights are shared with ``s`` (never written to), so
    training ``small`` does not hold its decoder twice.
    """
    src = s.model.decoder
    if lora_rank is None:
        decoder = copy.deepcopy(src).float()
        for p in decoder.parameters():
            p.requires_grad_(True)
        return decoder
    peft = _require_peft()
    shared = [*src.parameters(), *src.buffers()]
    decoder = copy.deepcopy(src, {id(t): t for t in shared if t.dtype == torch.float32}).float()
    cfg = peft.LoraConfig(
        r=int(lora_rank), lora_alpha=float(lora_alpha), target_modules=LORA_TARGETS,
        lora_dropout=0.0, bias="none",
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # transformers' own deprecations
        return peft.get_peft_model(decoder, cfg)


def _write_history(out: Path, history: list) -> None:
    lines = ["step,loss,accuracy"] + [
        f"{r['step']},{r['loss']!r},{r['accuracy']!r}" for r in history
    ]
    _write_atomic(out / HISTORY_FILE, "\n".join(lines) + "\n")


# ============================================================================ result
@dataclass
class FineTune:
    """The result of :func:`train`.

    Attributes
    ----------
    base : MusicGen
        The model it was trained from (unchanged).
    model : torch.nn.Module
        The trained decoder: a peft model (LoRA) or a plain decoder (full).
    out : Path
        The run folder (adapter, config, model card, history, checkpoint).
    config : dict
        The training configuration.
    history : list of dict
        ``step``, ``loss``, ``accuracy`` (teacher-forced, on the batch) per step.
    step : int
        Steps done.
    interrupted : bool
    """

    base: object
    model: object
    out: Path
    config: dict
    history: list = field(default_factory=list)
    step: int = 0
    interrupted: bool = False

    def __repr__(self) -> str:
        kind = "full" if self.config["lora_rank"] is None else f"LoRA r={self.config['lora_rank']}"
        loss = f", loss {self.history[-1]['loss']:.3f}" if self.history else ""
        state = ", interrupted" if self.interrupted else ""
        return f"FineTune({self.config['base']!r}, {kind}, {self.step} steps{loss}, out={str(self.out)!r}{state})"

    def history_frame(self):
        """``history`` as a pandas.DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.history, columns=["step", "loss", "accuracy"])

    def loss_figure(self):
        """The loss curve, see :func:`loss_figure`."""
        return loss_figure(self.history)

    @property
    def provenance(self) -> dict:
        """What a sidecar records about this adapter."""
        return adapter_provenance(self.out)

    def _finish(self, windows, *, write: bool):
        out, cfg = self.out, self.config
        if write:
            from safetensors.torch import save_file

            if cfg["lora_rank"] is None:
                tmp = out / f".{FULL_WEIGHTS}.tmp{os.getpid()}"
                sd = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
                save_file(sd, tmp)
                os.replace(tmp, out / FULL_WEIGHTS)
            else:
                self.model.save_pretrained(out, safe_serialization=True)
            tail = [r["loss"] for r in self.history[-10:]]
            secs = sum(w.codes.shape[-1] for w in windows) / self.base.frame_rate
            files = len({w.file for w in windows})
            summary = dict(
                status="done", steps_done=self.step, final_loss=float(np.mean(tail)) if tail else None,
                data_files=files, data_windows=len(windows), data_seconds=round(secs, 2),
                captions=sorted({w.text for w in windows})[:20], finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            )  # fmt: skip
            cfg.update(summary)
            _write_atomic(out / CONFIG_FILE, json.dumps(cfg, indent=1))
            _write_atomic(out / CARD_FILE, _model_card(cfg))
            _write_history(out, self.history)
        return self

    def merge(self, directory=None):
        """The fine-tuned model with plain weights (LoRA merged in), as a new MusicGen.

        The base session is not changed. Plain ``nn.Linear`` weights run on the
        engine at every precision: quantize or cast the merged model, e.g. save it
        with ``directory`` and ``mg.load(directory, precision="int8")``.

        Parameters
        ----------
        directory : path, optional
            Also save the merged model there (``save_pretrained``, safetensors), as a
            checkpoint ``mg.load`` reads. It must not exist yet.

        Returns
        -------
        MusicGen
        """
        from .models import MusicGen

        decoder = copy.deepcopy(self.model)
        if self.config["lora_rank"] is not None:
            decoder = decoder.merge_and_unload()
        decoder = decoder.to(self.base.dtype).eval()
        for p in decoder.parameters():
            p.requires_grad_(False)
        base = self.base.model
        model = copy.deepcopy(base, memo={id(base.decoder): decoder})
        meta = dict(self.base.meta, adapter=self.provenance)
        s = MusicGen(
            model,
            self.base.processor,
            name=self.base.name,
            precision=self.base.precision,
            meta=meta,
        )
        if directory is not None:
            _save_merged(s, Path(directory))
        return s


def _save_merged(s, directory: Path) -> None:
    if directory.exists():
        raise FileExistsError(f"directory={str(directory)!r} exists; give a new folder")
    tmp = directory.with_name(f".{directory.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        s.model.save_pretrained(tmp, safe_serialization=True)
        s.processor.save_pretrained(tmp)
        (tmp / "musicgen_nb.json").write_text(json.dumps(s.meta | dict(name=s.name), indent=1))
        os.replace(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _model_card(cfg: dict) -> str:
    kind = "full fine-tune" if cfg["lora_rank"] is None else f"LoRA, rank {cfg['lora_rank']}"
    loss = "n/a" if cfg.get("final_loss") is None else f"{cfg['final_loss']:.4f}"
    captions = "\n".join(f"- {t}" for t in cfg.get("captions", []))
    return f"""# MusicGen fine-tune of `{cfg["base"]}`

Made with musicgen-nb (`mg.finetune.train`).

| | |
|---|---|
| base model | `{cfg["checkpoint"]}` |
| kind | {kind} |
| data | {cfg["data_files"]} files, {cfg["data_windows"]} windows, {cfg["data_seconds"]} s |
| steps | {cfg["steps_done"]} (batch size {cfg["batch_size"]}, lr {cfg["lr"]:g}, seed {cfg["seed"]}) |
| final loss | {loss} (mean of the last 10 steps) |
| condition dropout | {cfg["condition_dropout"]:g} |
| precision | {cfg["precision"]} |
| finished | {cfg["finished"]} |

Captions:
{captions}

Use it:

```python
import musicgen_nb as mg
s = mg.load({cfg["checkpoint"]!r}, adapter="path/to/this/folder")
```
"""


# ============================================================================ loading
def adapter_provenance(directory) -> dict:
    """What sidecars record about an adapter folder: path, hash, kind, base, steps."""
    directory = Path(directory)
    cfg = json.loads((directory / CONFIG_FILE).read_text())
    weights = directory / _weights_file(cfg["lora_rank"])
    return dict(
        path=str(directory.resolve()), sha256=_sha256(weights) if weights.exists() else None,
        kind="full" if cfg["lora_rank"] is None else "lora", lora_rank=cfg["lora_rank"],
        base=cfg["checkpoint"], steps=cfg.get("steps_done"), final_loss=cfg.get("final_loss"),
        data=cfg["data"],
    )  # fmt: skip


def apply_adapter(model, adapter, meta: dict) -> tuple[object, dict]:
    """Merge a fine-tune from ``adapter`` into ``model`` (fp32, in place); return (model, meta).

    Called by ``mg.load(..., adapter=DIR)`` before any cast or int8 quantization,
    so the engine sees plain ``nn.Linear`` weights at every precision. ``meta``
    gains ``"adapter"``: the provenance that every sidecar records.
    """
    if not isinstance(adapter, (str, os.PathLike)):
        raise TypeError(f"adapter must be a folder written by mg.finetune.train, got {adapter!r}")
    directory = Path(adapter)
    cfg_file = directory / CONFIG_FILE
    if not cfg_file.exists():
        raise ValueError(
            f"adapter={str(adapter)!r} is not a fine-tune folder (no {CONFIG_FILE}); "
            "give the out= folder of mg.finetune.train"
        )
    cfg = json.loads(cfg_file.read_text())
    weights = directory / _weights_file(cfg["lora_rank"])
    if cfg.get("status") != "done" or not weights.exists():
        raise ValueError(
            f"adapter={str(adapter)!r} holds an unfinished run (no {weights.name}); resume it "
            "with mg.finetune.train(..., out=...) first"
        )
    probe = type("S", (), {"model": model})
    mine = _decoder_config(probe)
    if mine != cfg["decoder_config"]:
        raise ValueError(
            f"adapter={str(adapter)!r} was trained on {cfg['checkpoint']!r}, whose decoder "
            f"differs from this model's ({mine} vs {cfg['decoder_config']})"
        )
    if cfg["lora_rank"] is None:
        from safetensors.torch import load_file

        model.decoder.load_state_dict(load_file(weights))
    else:
        from peft import PeftModel

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wrapped = PeftModel.from_pretrained(model.decoder, directory)
        model.decoder = wrapped.merge_and_unload()
    model.decoder.eval()
    return model, dict(meta, adapter=adapter_provenance(directory))
