"""Training: LoRA (through ``peft``) or full fine-tuning of the decoder, resumable.

:func:`train` teaches the decoder the windows of a dataset on the delay pattern, with
a LoRA adapter (through ``peft``, the ``musicgen-nb[train]`` extra) or a full
fine-tune. Text conditioning is dropped at random (``condition_dropout``) so that the
unconditional branch, and so classifier-free guidance, keeps working. It checkpoints
into ``out``, stops cleanly on an interrupt and resumes: every random draw of a step
is seeded by the seed and the step alone, so a resumed run is the same run.

Examples
--------
>>> import tempfile, musicgen_nb as mg
>>> from musicgen_nb.finetune import dataset, synth_dataset
>>> data = dataset(synth_dataset(tempfile.mkdtemp(), seconds=1.0))
>>> train(mg.load("tiny"), data, steps=2, out=tempfile.mkdtemp(), progress=False).step
2
"""

from __future__ import annotations

import contextlib
import json
import numbers
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .._util.checks import check_int, check_number, check_positive
from .._util.files import write_atomic
from ..checkpoints.adapter import CHECKPOINT, CONFIG_FILE, decoder_config, weights_file
from ..conditioning import stack_states, text_states
from .batches import batch_indices, data_fingerprint, forward, masked_loss, sequences, step_seed
from .data import Dataset, Window
from .result import FineTune, finish, write_history
from .weights import (
    LORA_TARGETS,
    load_checkpoint,
    require_peft,
    save_checkpoint,
    trainable,
    trainable_decoder,
)

if TYPE_CHECKING:
    import os
    from collections.abc import Callable
    from typing import Any

    from ..models import MusicGen

TRAIN_PRECISIONS = ("auto", "fp32", "bf16")
# What must agree to resume a run in the same ``out`` (``steps`` may grow).
_RUN_KEYS = ("base", "decoder_config", "data", "lora_rank", "lora_alpha", "lr", "batch_size",
             "condition_dropout", "seed", "precision", "weight_decay", "targets")  # fmt: skip


# ------------------------------------------------------------------------- checks
def _check_session(s, data) -> None:
    from ..models import MusicGen

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


def _check_train_args(steps, lr, batch_size, lora_rank, condition_dropout, seed, precision):
    check_int(steps, "steps", minimum=1)
    check_int(batch_size, "batch_size", minimum=1)
    check_positive(lr, "lr")
    if lora_rank is not None and (
        isinstance(lora_rank, bool) or not isinstance(lora_rank, numbers.Integral) or lora_rank < 1
    ):
        raise ValueError(
            f"lora_rank must be an int >= 1, or None for a full fine-tune; got {lora_rank!r}"
        )
    check_number(condition_dropout, "condition_dropout", allowed="in [0, 1)")
    if not 0 <= condition_dropout < 1:
        raise ValueError(
            f"condition_dropout must be in [0, 1) (0.1 keeps guidance working), got {condition_dropout!r}"
        )
    check_int(seed, "seed", minimum=0)
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


# ------------------------------------------------------------------------- the run folder
def _run_config(s, windows, *, steps, lr, batch_size, lora_rank, lora_alpha, condition_dropout,
                seed, precision, weight_decay) -> dict:  # fmt: skip
    return dict(
        base=s.name, checkpoint=s.meta.get("checkpoint", s.name),
        decoder_config=decoder_config(s.model), data=data_fingerprint(windows),
        lora_rank=None if lora_rank is None else int(lora_rank),
        lora_alpha=None if lora_rank is None else float(lora_alpha or lora_rank),
        lr=float(lr), batch_size=int(batch_size), condition_dropout=float(condition_dropout),
        seed=int(seed), precision=precision, weight_decay=float(weight_decay),
        targets=LORA_TARGETS if lora_rank is not None else "all decoder weights",
        steps=int(steps),
    )  # fmt: skip


def _open_run(out, config: dict) -> Path:
    """The run folder, made if new; a folder of a different run is refused."""
    if out is None:
        import tempfile

        out = tempfile.mkdtemp(prefix="musicgen-finetune-")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    previous = out / CONFIG_FILE
    if previous.exists():
        old = json.loads(previous.read_text())
        differ = [k for k in _RUN_KEYS if old.get(k) != config.get(k)]
        if differ:
            raise ValueError(
                f"out={str(out)!r} holds a different run (it differs in {', '.join(differ)}); "
                "give a new folder, or delete this one to start over"
            )
        if old.get("status") == "done" and (old.get("steps_done") or 0) >= config["steps"]:
            return out  # finished, nothing more to train: the folder stays loadable as it is
    write_atomic(previous, json.dumps(config | dict(status="training"), indent=1), overwrite=True)
    return out


# ------------------------------------------------------------------------- the loop
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


@dataclass
class _Run:
    """What every step of one training run uses."""

    ft: FineTune
    opt: torch.optim.Optimizer
    params: list
    windows: list
    states: dict
    batch_size: int
    seed: int
    condition_dropout: float
    save_every: int
    autocast: object


def _step(run: _Run) -> dict:
    """One optimizer step; weights, ``ft.step`` and ``ft.history`` move together."""
    ft, windows = run.ft, run.windows
    s, step, device = ft.base, ft.step, ft.base.device
    torch.manual_seed(step_seed(run.seed, step, 2))  # decoder dropout, if any
    idx = batch_indices(len(windows), run.batch_size, run.seed, step)
    g = torch.Generator().manual_seed(step_seed(run.seed, step, 3))
    drop = torch.rand(len(idx), generator=g) < run.condition_dropout
    texts = [None if d else windows[i].text for i, d in zip(idx, drop.tolist(), strict=True)]
    inputs, labels = sequences(s, [windows[i].codes for i in idx])
    h, m = stack_states(run.states, texts, device)
    with run.autocast:
        lg = forward(ft.model, inputs.to(device), h, m)
    loss, correct, count = masked_loss(lg, labels.to(device), s.special_id)
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(run.params, 1.0)
    row = dict(loss=float(loss.detach()), accuracy=int(correct) / max(1, int(count)))
    with _DeferInterrupt():  # weights, step and history move together
        run.opt.step()
        ft.step += 1
        row = dict(step=ft.step, **row)
        ft.history.append(row)
    return row


def _live_plot(plot, progress: bool, steps: int):
    """The live loss plot (imported only when one is drawn), or None."""
    if plot is not True and not (plot == "auto" and progress and "IPython" in sys.modules):
        return None  # a notebook kernel has always imported IPython
    from ..ui.live_plot import LivePlot, in_notebook

    if plot is not True and not in_notebook():
        return None
    return LivePlot(every=max(1, steps // 25))


def _loop(run: _Run, steps: int, *, progress: bool, plot, callback) -> None:
    """Steps until ``steps``; a KeyboardInterrupt (also from ``callback``) checkpoints and stops."""
    ft = run.ft
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, initial=ft.step, desc="fine-tuning", unit="step")
    plotter = _live_plot(plot, progress, steps)
    ft.model.train()
    try:
        while ft.step < steps:
            row = _step(run)
            if ft.step % run.save_every == 0 or ft.step == steps:
                save_checkpoint(ft.out, ft.model, run.opt, ft.step, ft.history)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{row['loss']:.3f}")
            if plotter is not None:
                plotter.update(ft.history)
            if callback is not None:
                callback(ft.step, row["loss"])
    except KeyboardInterrupt:
        ft.interrupted = True
        save_checkpoint(ft.out, ft.model, run.opt, ft.step, ft.history)
    finally:
        if bar is not None:
            bar.close()
        if plotter is not None:
            plotter.update(ft.history, final=True)
    ft.model.eval()


def _fit(s, windows, out: Path, config: dict, *, steps, save_every, progress, plot, callback):
    """Train from the checkpoint in ``out`` (if any) to ``steps``; finish the run folder."""
    device, lora_rank = s.device, config["lora_rank"]
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(step_seed(config["seed"], 0, 0))
        model = trainable_decoder(s, lora_rank, config["lora_alpha"])
        params = list(trainable(model).values())
        opt = torch.optim.AdamW(params, lr=config["lr"], weight_decay=config["weight_decay"])
        start, history = load_checkpoint(out, model, opt)
        ft = FineTune(base=s, model=model, out=out, config=config, history=history, step=start)
        if start >= steps:
            return finish(ft, windows, write=not (out / weights_file(lora_rank)).exists())
        bf16 = config["precision"] == "bf16"
        run = _Run(
            ft, opt, params, windows, text_states(s, sorted({w.text for w in windows}) + [None]),
            batch_size=config["batch_size"], seed=config["seed"],
            condition_dropout=config["condition_dropout"], save_every=save_every,
            autocast=torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext(),
        )  # fmt: skip
        _loop(run, steps, progress=progress, plot=plot, callback=callback)
    if ft.interrupted:
        warnings.warn(
            f"training stopped at step {ft.step}/{steps}; the checkpoint is in {out / CHECKPOINT}. "
            "Call train() again with the same out= to resume.",
            stacklevel=3,  # the caller of train()
        )
        write_history(out, ft.history)
        return ft
    return finish(ft, windows, write=True)


def train(
    s: MusicGen, data: Dataset | list[Window], *, steps: int=300, lr: float=2e-4, batch_size: int=4, lora_rank: int | None=16, lora_alpha: float | None=None,
    condition_dropout: float=0.1, out: str | os.PathLike | None=None, seed: int=0, precision: str="auto", weight_decay: float=0.0,
    save_every: int=50, progress: bool=True, plot: bool | str="auto", callback: Callable[..., Any] | None=None,
) -> FineTune:  # fmt: skip
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
    _check_session(s, data)
    _check_train_args(steps, lr, batch_size, lora_rank, condition_dropout, seed, precision)
    if lora_rank is not None:
        require_peft()
    save_every = max(1, int(save_every))
    prec = _resolve_train_precision(precision, s.device)
    windows = data.encode(s, progress=progress) if isinstance(data, Dataset) else list(data)
    config = _run_config(
        s, windows, steps=steps, lr=lr, batch_size=batch_size, lora_rank=lora_rank,
        lora_alpha=lora_alpha, condition_dropout=condition_dropout, seed=seed, precision=prec,
        weight_decay=weight_decay,
    )  # fmt: skip
    out = _open_run(out, config)
    return _fit(s, windows, out, config, steps=steps, save_every=save_every, progress=progress,
                plot=plot, callback=callback)  # fmt: skip
