"""The result of a fine-tune: :class:`FineTune`, its run folder, model card and merged model.

:func:`finish` writes what a finished run leaves in its folder: the adapter (or the
full decoder weights), ``training_config.json``, a model card and ``history.csv``.
``mg.load(name, adapter=out)`` reads that folder (see
:mod:`musicgen_nb.checkpoints.adapter`); :meth:`FineTune.merge` gives the same plain
model without a round trip through the disk.

Examples
--------
>>> print(model_card(dict(base="tiny", checkpoint="tiny", lora_rank=16, data_files=2,
...     data_windows=2, data_seconds=2.0, steps_done=3, batch_size=2, lr=1e-3, seed=0,
...     final_loss=5.0, condition_dropout=0.1, precision="fp32", finished="now",
...     captions=["a"])).splitlines()[0])
# MusicGen fine-tune of `tiny`
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .._util.files import disk_error, remove_stale, write_atomic
from ..checkpoints.adapter import (
    CARD_FILE,
    CONFIG_FILE,
    FULL_WEIGHTS,
    HISTORY_FILE,
    adapter_provenance,
)

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

    from ..models import MusicGen


@dataclass
class FineTune:
    """The result of :func:`~musicgen_nb.finetune.train`.

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

    Examples
    --------
    >>> import tempfile, musicgen_nb as mg
    >>> from musicgen_nb import finetune
    >>> data = finetune.dataset(finetune.synth_dataset(tempfile.mkdtemp(), seconds=1.0))
    >>> ft = finetune.train(mg.load("tiny"), data, steps=2, out=tempfile.mkdtemp(), progress=False)
    >>> ft
    FineTune('tiny', LoRA r=16, 2 steps, loss ..., out=...)
    >>> ft.history_frame().columns.tolist()
    ['step', 'loss', 'accuracy']
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

    def history_frame(self) -> pd.DataFrame:
        """``history`` as a pandas.DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.history, columns=["step", "loss", "accuracy"])

    def loss_figure(self) -> go.Figure:
        """The loss curve, see :func:`musicgen_nb.viz.loss.loss_figure`.

        Examples
        --------
        >>> ft = FineTune(None, None, Path("."), {}, history=[dict(step=1, loss=9.5, accuracy=0.0)])
        >>> ft.loss_figure().data[0].y
        (9.5,)
        """
        from ..viz.loss import loss_figure

        return loss_figure(self.history)

    @property
    def provenance(self) -> dict:
        """What a sidecar records about this adapter.

        Examples
        --------
        >>> import tempfile, musicgen_nb as mg
        >>> from musicgen_nb import finetune
        >>> data = finetune.dataset(finetune.synth_dataset(tempfile.mkdtemp(), seconds=1.0))
        >>> ft = finetune.train(mg.load("tiny"), data, steps=1, out=tempfile.mkdtemp(), progress=False)
        >>> p = ft.provenance
        >>> p["kind"], p["base"], p["steps"], len(p["sha256"])
        ('lora', 'tiny', 1, 64)
        """
        return adapter_provenance(self.out)

    def merge(self, directory: str | os.PathLike | None = None) -> MusicGen:
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

        Examples
        --------
        >>> import tempfile, musicgen_nb as mg
        >>> from musicgen_nb import finetune
        >>> data = finetune.dataset(finetune.synth_dataset(tempfile.mkdtemp(), seconds=1.0))
        >>> ft = finetune.train(mg.load("tiny"), data, steps=1, out=tempfile.mkdtemp(), progress=False)
        >>> merged = ft.merge()
        >>> merged.generate("jazz", duration=0.5, seed=0, progress=False).audio.shape
        (1, 1, 16000)
        """
        from ..models import MusicGen

        if directory is not None and not isinstance(directory, (str, os.PathLike)):
            raise TypeError(
                f"directory must be a folder path to save the merged model in, or None; got "
                f"{type(directory).__name__} {directory!r}"
            )
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


def write_history(out: Path, history: list) -> None:
    """Write ``history.csv`` (step, loss, accuracy) into the run folder ``out``, atomically.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp())
    >>> write_history(out, [dict(step=1, loss=2.5, accuracy=0.0)])
    >>> (out / "history.csv").read_text().splitlines()
    ['step,loss,accuracy', '1,2.5,0.0']
    """
    lines = ["step,loss,accuracy"] + [
        f"{r['step']},{r['loss']!r},{r['accuracy']!r}" for r in history
    ]
    write_atomic(Path(out) / HISTORY_FILE, "\n".join(lines) + "\n", overwrite=True)


def _save_weights(ft: FineTune) -> None:
    """The adapter (peft ``save_pretrained``) or the full decoder weights, into ``ft.out``.

    Each file is written atomically through ``write_atomic``, so it follows the umask
    like every other file of the folder (safetensors alone would make it 0600), and a
    failure (a full disk) leaves no temporary file or folder behind.
    """
    from safetensors.torch import save

    out = ft.out
    if ft.config["lora_rank"] is None:
        sd = {k: v.detach().cpu().contiguous() for k, v in ft.model.state_dict().items()}
        write_atomic(out / FULL_WEIGHTS, save(sd), overwrite=True)
        return
    remove_stale(out, ".adapter.tmp")  # a killed process's (a live one's is kept)
    tmp = out / f".adapter.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        ft.model.save_pretrained(tmp, safe_serialization=True)
        for f in sorted(tmp.iterdir()):
            write_atomic(out / f.name, f.read_bytes(), overwrite=True)
    except OSError as err:
        raise disk_error(err, out) from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _summary(ft: FineTune, windows) -> dict:
    tail = [r["loss"] for r in ft.history[-10:]]
    secs = sum(w.codes.shape[-1] for w in windows) / ft.base.frame_rate
    files = len({w.file for w in windows})
    return dict(
        status="done", steps_done=ft.step, final_loss=float(np.mean(tail)) if tail else None,
        data_files=files, data_windows=len(windows), data_seconds=round(secs, 2),
        captions=sorted({w.text for w in windows})[:20],
        finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )  # fmt: skip


def finish(ft: FineTune, windows, *, write: bool) -> FineTune:
    """Write a finished run: weights, ``training_config.json``, model card and history.

    ``write=False`` (the run was already finished in that folder) writes nothing.

    Returns
    -------
    FineTune
        ``ft``, its ``config`` updated with the summary (status, steps, final loss, data).

    Examples
    --------
    >>> import tempfile, musicgen_nb as mg
    >>> from musicgen_nb import finetune
    >>> data = finetune.dataset(finetune.synth_dataset(tempfile.mkdtemp(), seconds=1.0))
    >>> ft = finetune.train(mg.load("tiny"), data, steps=1, out=tempfile.mkdtemp(), progress=False)
    >>> finish(ft, data.encode(ft.base), write=True).config["status"]
    'done'
    """
    if write:
        _save_weights(ft)
        ft.config.update(_summary(ft, windows))
        write_atomic(ft.out / CONFIG_FILE, json.dumps(ft.config, indent=1), overwrite=True)
        write_atomic(ft.out / CARD_FILE, model_card(ft.config), overwrite=True)
        write_history(ft.out, ft.history)
    return ft


def model_card(cfg: dict) -> str:
    """The README.md of a finished run folder (markdown), from its training config.

    Examples
    --------
    >>> "| kind | full fine-tune |" in model_card(dict(base="tiny", checkpoint="tiny",
    ...     lora_rank=None, data_files=1, data_windows=1, data_seconds=1.0, steps_done=1,
    ...     batch_size=1, lr=1e-3, seed=0, condition_dropout=0.1, precision="fp32",
    ...     finished="now"))
    True
    """
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
