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

What is guaranteed:

- :func:`dataset` reads nothing outside its folder: a metadata path that is absolute,
  uses ``..`` or resolves outside through a symlink (and any audio or caption file
  that is such a symlink) raises :class:`DataError` naming the metadata file, the
  line and the path, in strict and non-strict mode alike.
- :func:`train` checks every argument before it writes anything, and writes only
  into an ``out`` folder that is new, empty or one of its own run folders (marked by
  a hidden ``.musicgen-nb-run``); any other folder is refused before training,
  naming its files, and nothing in it is touched. Files are written atomically and
  follow the umask. A run that diverges (a NaN or infinite loss or gradient) stops
  with a ``FloatingPointError``, keeps its last good checkpoint, is marked
  ``"diverged"`` and is never saved as an adapter.
- ``mg.load(name, adapter=out)`` refuses, naming the folder and the file, a damaged
  ``training_config.json`` or weights file, an unfinished or diverged run, and a
  model other than the one the adapter was trained on.

The training targets are transformers' own: position 0 of every codebook holds
the special token (BOS), codebook ``k``'s frame ``t`` sits at position
``t + delay[k] + 1``, step ``i`` predicts position ``i + 1``, and the loss skips
every position that holds the special token (delay padding and batch padding),
exactly as ``MusicgenForCausalLM`` does when given ``labels``.

Modules: :mod:`~musicgen_nb.finetune.data` (datasets, windows, the code cache),
:mod:`~musicgen_nb.finetune.options` (argument checks, precisions),
:mod:`~musicgen_nb.finetune.runfolder` (the run folder: claimed, compared, marked),
:mod:`~musicgen_nb.finetune.folder` (captions, file checks), :mod:`~musicgen_nb.finetune.batches` (targets,
loss, logits), :mod:`~musicgen_nb.finetune.weights` (the trainable copy, checkpoints),
:mod:`~musicgen_nb.finetune.training` (:func:`train`), :mod:`~musicgen_nb.finetune.result`
(:class:`FineTune`). The adapter folder format lives in :mod:`musicgen_nb.checkpoints.adapter`.

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

from ..checkpoints.adapter import CARD_FILE as CARD_FILE
from ..checkpoints.adapter import CHECKPOINT as CHECKPOINT
from ..checkpoints.adapter import CONFIG_FILE as CONFIG_FILE
from ..checkpoints.adapter import FULL_WEIGHTS as FULL_WEIGHTS
from ..checkpoints.adapter import HISTORY_FILE as HISTORY_FILE
from ..checkpoints.adapter import LORA_WEIGHTS as LORA_WEIGHTS
from ..checkpoints.adapter import adapter_provenance, apply_adapter
from .batches import logits, masked_loss, sequences, token_accuracy
from .data import Dataset, Window, codec_key, dataset
from .folder import AUDIO_EXTENSIONS as AUDIO_EXTENSIONS
from .folder import DataError, synth_dataset
from .folder import Item as Item
from .result import FineTune
from .training import TRAIN_PRECISIONS as TRAIN_PRECISIONS
from .training import train
from .weights import LORA_TARGETS as LORA_TARGETS

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


def __getattr__(name: str) -> object:
    # The loss figure needs plotly: it loads on first use, so training scripts do not pay for it.
    if name == "loss_figure":
        from ..viz.loss import loss_figure

        return loss_figure
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
