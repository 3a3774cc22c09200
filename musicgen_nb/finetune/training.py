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

import math
import sys
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ..checkpoints.adapter import CHECKPOINT, decoder_config, weights_file
from ..conditioning import stack_states, text_states
from .batches import batch_indices, data_fingerprint, forward, masked_loss, sequences, step_seed
from .data import Dataset, Window
from .options import TRAIN_PRECISIONS as TRAIN_PRECISIONS
from .options import Precision, auto_precision, check_session, check_train_args
from .result import FineTune, finish, write_history
from .runfolder import MARKER, check_out, check_run, mark_diverged, open_run, run_lock
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
    from pathlib import Path
    from typing import Any

    from ..models import MusicGen

# fp16 steps in a row skipped for overflowing gradients that count as a diverged run.
_MAX_SKIPPED = 20

# What must agree to resume a run in the same ``out`` (``steps`` may grow).
_RUN_KEYS = ("base", "decoder_config", "data", "lora_rank", "lora_alpha", "lr", "batch_size",
             "condition_dropout", "seed", "precision", "weight_decay", "targets")  # fmt: skip


# ------------------------------------------------------------------------- checks
# ------------------------------------------------------------------------- the run folder
def _run_config(s, *, steps, lr, batch_size, lora_rank, lora_alpha, condition_dropout,
                seed, precision, weight_decay, gradient_checkpointing) -> dict:  # fmt: skip
    """The run's settings; the caller adds ``data`` (the fingerprint of the encoded windows)."""
    return dict(
        base=s.name, checkpoint=s.meta.get("checkpoint", s.name), architecture=type(s.model).__name__,
        decoder_config=decoder_config(s.model),
        lora_rank=None if lora_rank is None else int(lora_rank), lora_alpha=lora_alpha,
        lr=float(lr), batch_size=int(batch_size), condition_dropout=float(condition_dropout),
        seed=int(seed), precision=precision, weight_decay=float(weight_decay),
        targets=LORA_TARGETS if lora_rank is not None else "all decoder weights",
        steps=int(steps), base_dtype=str(s.dtype).removeprefix("torch."),
        gradient_checkpointing=bool(gradient_checkpointing),
    )  # fmt: skip


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
    precision: Precision
    dtype: torch.dtype
    skipped: int = 0  # fp16: steps in a row whose gradients overflowed (the scaler skipped them)


class _Diverged(Exception):
    """The loss, the gradients or the new weights of step ``step`` are not finite."""

    def __init__(self, why: str, step: int) -> None:
        super().__init__(why)
        self.step = step


def _batch(run: _Run) -> tuple:
    """(inputs, labels, text states, mask) of step ``ft.step``, on the device."""
    ft, windows, device = run.ft, run.windows, run.ft.base.device
    step = ft.step
    idx = batch_indices(len(windows), run.batch_size, run.seed, step)
    g = torch.Generator().manual_seed(step_seed(run.seed, step, 3))
    drop = torch.rand(len(idx), generator=g) < run.condition_dropout
    texts = [None if d else windows[i].text for i, d in zip(idx, drop.tolist(), strict=True)]
    inputs, labels = sequences(ft.base, [windows[i].codes for i in idx])
    h, m = stack_states(run.states, texts, device)
    return inputs.to(device), labels.to(device), h.to(run.dtype), m


def _loss(run: _Run, batch: tuple) -> tuple:
    inputs, labels, h, m = batch
    with run.precision.autocast:
        lg = forward(run.ft.model, inputs, h, m)
    return masked_loss(lg, labels, run.ft.base.special_id)


def _step(run: _Run, check: bool) -> dict:
    """One optimizer step; weights, ``ft.step`` and ``ft.history`` move together.

    A loss or (without loss scaling) a gradient norm that is not finite raises
    ``_Diverged`` before the weights change. ``check``: also compute the loss of the
    new weights on the same batch (before a checkpoint), so no checkpoint holds
    weights that give NaN.
    """
    ft = run.ft
    torch.manual_seed(step_seed(run.seed, ft.step, 2))  # decoder dropout, if any
    batch = _batch(run)
    loss, correct, count = _loss(run, batch)
    if not math.isfinite(value := float(loss.detach())):
        raise _Diverged(f"the loss is {value}", ft.step + 1)
    run.opt.zero_grad(set_to_none=True)
    run.precision.backward(loss, run.opt)
    norm = float(torch.nn.utils.clip_grad_norm_(run.params, 1.0))
    if not math.isfinite(norm) and run.precision.scaler is None:
        raise _Diverged(f"the gradient norm is {norm}", ft.step + 1)
    run.skipped = 0 if math.isfinite(norm) else run.skipped + 1
    if run.skipped >= _MAX_SKIPPED:
        raise _Diverged(f"the fp16 gradients overflowed {run.skipped} steps in a row", ft.step + 1)
    row = dict(loss=value, accuracy=int(correct) / max(1, int(count)))
    with _DeferInterrupt():  # weights, step and history move together
        run.precision.step(run.opt)
        ft.step += 1
        row = dict(step=ft.step, **row)
        ft.history.append(row)
    if check and not math.isfinite(after := _loss_after(run, batch)):
        raise _Diverged(f"its weights give a loss of {after}", ft.step)
    return row


def _loss_after(run: _Run, batch: tuple | None = None) -> float:
    """The loss of the current weights on ``batch`` (default: the next step's batch)."""
    with torch.no_grad():
        return float(_loss(run, _batch(run) if batch is None else batch)[0])


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
            due = (ft.step + 1) % run.save_every == 0 or ft.step + 1 == steps
            row = _step(run, check=due)
            if due:
                save_checkpoint(ft.out, ft.model, run.opt, ft.step, ft.history,
                                run.precision.state_dict())  # fmt: skip
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{row['loss']:.3f}")
            if plotter is not None:
                plotter.update(ft.history)
            if callback is not None:
                callback(ft.step, row["loss"])
    except KeyboardInterrupt:
        ft.interrupted = True
        if math.isfinite(loss := _loss_after(run)):  # the check a due step gets
            save_checkpoint(ft.out, ft.model, run.opt, ft.step, ft.history,
                            run.precision.state_dict())  # fmt: skip
        else:
            warnings.warn(f"the weights of step {ft.step} give a loss of {loss}: not saved, "
                          "the previous checkpoint is kept", stacklevel=4)  # fmt: skip
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
        model = trainable_decoder(s, lora_rank, config["lora_alpha"],
                                  gradient_checkpointing=config["gradient_checkpointing"])  # fmt: skip
        params = list(trainable(model).values())
        opt = torch.optim.AdamW(params, lr=config["lr"], weight_decay=config["weight_decay"])
        precision = Precision(config["precision"], device)
        start, history = load_checkpoint(out, model, opt, precision)
        for group in opt.param_groups:  # a diverged run resumes with a lower lr
            group["lr"] = config["lr"]
        ft = FineTune(base=s, model=model, out=out, config=config, history=history, step=start)
        if start >= steps:
            return finish(ft, windows, write=not (out / weights_file(lora_rank)).exists())
        run = _Run(
            ft, opt, params, windows, text_states(s, sorted({w.text for w in windows}) + [None]),
            batch_size=config["batch_size"], seed=config["seed"],
            condition_dropout=config["condition_dropout"], save_every=save_every,
            precision=precision, dtype=next(model.parameters()).dtype if lora_rank is None else s.dtype,
        )  # fmt: skip
        try:
            _loop(run, steps, progress=progress, plot=plot, callback=callback)
        except _Diverged as err:
            raise mark_diverged(ft, str(err), err.step) from None
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
    save_every: int=50, progress: bool=True, plot: bool | str="auto", callback: Callable[..., Any] | None=None, gradient_checkpointing: bool=False,
) -> FineTune:  # fmt: skip
    """Fine-tune the decoder of ``s`` on ``data``; write an adapter into ``out``.

    ``s`` itself is never changed: training runs on a copy of its decoder. Text
    states come from ``s``'s frozen text encoder, computed once per caption.

    What is guaranteed: every argument is checked before anything is written; ``out``
    must be new, empty or a run folder of ours, else it is refused naming its files
    and nothing in it is touched; every file is written atomically and follows the
    umask; a run whose loss or gradients stop being finite is stopped, marked
    ``"diverged"``, and never saved as an adapter; the checkpoint is never one whose
    weights give a non-finite loss.

    Parameters
    ----------
    s : MusicGen
        A text-only model (fp32, or bf16/fp16 on a GPU); not int8/int4.
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
        (needs peft). The frozen base weights stay the session's own, in its dtype;
        the LoRA weights train in fp32. None trains every decoder weight in fp32
        (a full fine-tune: a copy of the decoder).
    lora_alpha : float, optional
        LoRA scale numerator, a finite number > 0; default ``lora_rank`` (scale 1).
    condition_dropout : float
        Share of items trained without their caption (unconditional), in [0, 1).
        It keeps the unconditional branch alive so guidance still works.
    out : path, optional
        Run folder: checkpoint, adapter, config, model card, history. It must be new,
        empty or one this function wrote (it holds a hidden ``.musicgen-nb-run``).
        A folder that holds a checkpoint of the same run resumes from it; one of a
        different run is refused. Default: a new temporary folder.
    seed : int
        Seeds the LoRA init, data order, condition dropout and decoder dropout:
        on the CPU the same seed gives the same adapter, resumed or not.
    precision : {"auto", "fp32", "bf16", "fp16"}
        Autocast precision of the forward pass. "fp16" scales the loss (a
        ``torch.amp.GradScaler``: steps whose gradients overflow are skipped).
        "auto" is fp32 on a CPU, bf16 on a GPU with native bf16, else fp16.
    weight_decay : float
        AdamW weight decay, a finite number >= 0.
    save_every : int
        Steps between checkpoints, >= 1 (an interrupt also writes one).
    progress : bool
        A tqdm bar with the running loss.
    plot : bool or "auto"
        A live loss plot (plotly) redrawn in place; "auto" draws it in notebooks
        when ``progress`` is on.
    callback : callable, optional
        ``callback(step, loss)`` after each step. Raising KeyboardInterrupt
        there stops training like Ctrl-C: the checkpoint is written first.
    gradient_checkpointing : bool
        Recompute activations in the backward pass instead of keeping them: less
        memory for long windows or big batches, the same loss and gradients.

    Returns
    -------
    FineTune
        ``interrupted`` is True when it stopped early; call ``train`` again with
        the same ``out`` to resume.

    Raises
    ------
    FloatingPointError
        The run diverged (a NaN or infinite loss or gradient): the message gives the
        step, the last good checkpoint kept in ``out``, and how to resume.

    Examples
    --------
    >>> import tempfile, musicgen_nb as mg
    >>> s = mg.load("tiny")
    >>> data = mg.finetune.dataset(mg.finetune.synth_dataset(tempfile.mkdtemp(), seconds=1.0))
    >>> ft = mg.finetune.train(s, data, steps=3, out=tempfile.mkdtemp(), progress=False)
    >>> len(ft.history), sorted(p.name for p in ft.out.iterdir() if not p.name.startswith("."))[:3]
    (3, ['README.md', 'adapter_config.json', 'adapter_model.safetensors'])
    """
    check_session(s, data)
    args = check_train_args(
        steps=steps, lr=lr, batch_size=batch_size, lora_rank=lora_rank, lora_alpha=lora_alpha,
        condition_dropout=condition_dropout, seed=seed, precision=precision,
        weight_decay=weight_decay, save_every=save_every, progress=progress, plot=plot,
        callback=callback, gradient_checkpointing=gradient_checkpointing, out=out,
    )  # fmt: skip
    if lora_rank is not None:
        require_peft()
    folder = check_out(out)  # before the (slow) encoding; nothing is written yet
    marked = folder is not None and (folder / MARKER).is_file()
    prec = auto_precision(s.device) if precision == "auto" else precision
    config = _run_config(
        s, steps=steps, lr=lr, batch_size=batch_size, lora_rank=lora_rank,
        lora_alpha=args["lora_alpha"], condition_dropout=condition_dropout, seed=seed,
        precision=prec, weight_decay=args["weight_decay"],
        gradient_checkpointing=gradient_checkpointing,
    )  # fmt: skip
    check_run(folder, config, tuple(k for k in _RUN_KEYS if k != "data"))  # before the encoding
    windows = data.encode(s, progress=progress) if isinstance(data, Dataset) else list(data)
    config["data"] = data_fingerprint(windows)
    out = open_run(folder, config, _RUN_KEYS, marked=marked)
    with run_lock(out):  # one run at a time writes the folder
        return _fit(s, windows, out, config, steps=steps, save_every=args["save_every"],
                    progress=progress, plot=plot, callback=callback)  # fmt: skip
