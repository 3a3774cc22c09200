"""The arguments of :func:`~musicgen_nb.finetune.train`, checked up front, and its precision.

Every argument is checked up front, by name, so a bad call fails before the data is
encoded or the run folder is touched, and a corrected call is never locked out.

Precision: ``"fp32"`` trains without autocast; ``"bf16"`` under bf16 autocast;
``"fp16"`` under fp16 autocast with a :class:`torch.amp.GradScaler` (loss scaling: a
step whose gradients overflow is skipped and the scale lowered). ``"auto"`` is decided
in one place, :func:`auto_precision`.

Examples
--------
>>> import torch
>>> auto_precision(torch.device("cpu"))
'fp32'
>>> check_lora_alpha(0, 16)
Traceback (most recent call last):
...
ValueError: lora_alpha must be a finite number > 0, or None for lora_rank (16); got 0
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os

import torch

from .._util.checks import check_bool, check_int, check_number, check_positive
from ..engine.precision import NAMES, auto_dtype

#: The values of ``precision`` that :func:`~musicgen_nb.finetune.train` takes.
TRAIN_PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def auto_precision(device: torch.device) -> str:
    """What ``precision="auto"`` trains in on ``device``: the session-wide policy.

    fp32 on a CPU; on CUDA, what :func:`musicgen_nb.engine.precision.auto_dtype`
    picks: bf16 where the GPU has it natively (Ampere and newer), else fp16, which
    trains with loss scaling (a T4). Other devices train in fp32.

    Examples
    --------
    >>> import torch
    >>> auto_precision(torch.device("cpu"))
    'fp32'
    >>> from musicgen_nb.engine.precision import fake_device
    >>> with fake_device("cuda", capability=(7, 5)):
    ...     auto_precision(torch.device("cuda"))
    'fp16'
    """
    if device.type != "cuda":
        return "fp32"
    return NAMES[auto_dtype(device)]


def check_lora_alpha(lora_alpha, lora_rank) -> float | None:
    """``lora_alpha`` as float (None: ``lora_rank``), or an error naming it; 0 is refused.

    Examples
    --------
    >>> check_lora_alpha(None, 8), check_lora_alpha(32, 8)
    (8.0, 32.0)
    """
    if lora_rank is None:
        return None
    if lora_alpha is None:
        return float(lora_rank)
    allowed = f"a finite number > 0, or None for lora_rank ({lora_rank})"
    if isinstance(lora_alpha, bool) or not isinstance(lora_alpha, numbers.Real):
        raise TypeError(f"lora_alpha must be {allowed}; got {lora_alpha!r}")
    if not (math.isfinite(lora_alpha) and lora_alpha > 0):
        raise ValueError(f"lora_alpha must be {allowed}; got {lora_alpha!r}")
    return float(lora_alpha)


def _check_rank(lora_rank) -> None:
    if lora_rank is not None and (
        isinstance(lora_rank, bool) or not isinstance(lora_rank, numbers.Integral) or lora_rank < 1
    ):
        raise ValueError(
            f"lora_rank must be an int >= 1, or None for a full fine-tune; got {lora_rank!r}"
        )


def check_train_args(*, steps, lr, batch_size, lora_rank, lora_alpha, condition_dropout, seed, precision, weight_decay, save_every, progress, plot, callback, gradient_checkpointing, out) -> dict:  # fmt: skip
    """Every argument of :func:`~musicgen_nb.finetune.train` but the session and data, checked.

    Returns
    -------
    dict
        The values to use (``lora_alpha`` resolved, numbers as float or int).

    Examples
    --------
    >>> kw = dict(steps=10, lr=1e-3, batch_size=2, lora_rank=4, lora_alpha=None,
    ...           condition_dropout=0.1, seed=0, precision="auto", weight_decay=0.0,
    ...           save_every=5, progress=False, plot=False, callback=None,
    ...           gradient_checkpointing=False, out=None)
    >>> check_train_args(**kw)["lora_alpha"]
    4.0
    >>> check_train_args(**(kw | dict(callback=5)))
    Traceback (most recent call last):
    ...
    TypeError: callback must be a callable callback(step, loss) or None, got int 5
    """
    check_int(steps, "steps", minimum=1)
    check_int(batch_size, "batch_size", minimum=1)
    check_positive(lr, "lr")
    _check_rank(lora_rank)
    alpha = check_lora_alpha(lora_alpha, lora_rank)
    check_number(condition_dropout, "condition_dropout", allowed="in [0, 1)")
    if not 0 <= condition_dropout < 1:
        raise ValueError(
            f"condition_dropout must be in [0, 1) (0.1 keeps guidance working), got {condition_dropout!r}"
        )
    check_int(seed, "seed", minimum=0)
    if precision not in TRAIN_PRECISIONS:
        raise ValueError(f"precision must be one of {TRAIN_PRECISIONS}, got {precision!r}")
    wd = check_number(weight_decay, "weight_decay", allowed=">= 0")
    if wd < 0:
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")
    check_int(save_every, "save_every", minimum=1)
    check_bool(progress, "progress")
    if plot != "auto":
        check_bool(plot, "plot")
    if callback is not None and not callable(callback):
        raise TypeError(
            f"callback must be a callable callback(step, loss) or None, got "
            f"{type(callback).__name__} {callback!r}"
        )
    check_bool(gradient_checkpointing, "gradient_checkpointing")
    if out is not None and not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"out must be a folder path or None, got {type(out).__name__} {out!r}")
    return dict(lora_alpha=alpha, weight_decay=wd, save_every=int(save_every))


def check_session(s, data) -> None:
    """Refuse a session that cannot be trained, or data that is not a dataset, by name.

    Examples
    --------
    >>> check_session("tiny", [])
    Traceback (most recent call last):
    ...
    TypeError: s must be a MusicGen from mg.load(), got str
    """
    from ..models import MusicGen
    from .data import Dataset, Window

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


def _grad_scaler(device: torch.device):
    """A loss scaler for fp16 on ``device``; torch < 2.3 has only ``torch.cuda.amp``'s (CUDA)."""
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler(device.type)
    return torch.cuda.amp.GradScaler(enabled=device.type == "cuda")


class Precision:
    """Autocast and loss scaling of one training precision (``"fp32"``, ``"bf16"`` or ``"fp16"``).

    Attributes
    ----------
    name : str
    autocast : context manager
        Around the forward pass.
    scaler : torch.amp.GradScaler or None
        fp16 only: the loss is scaled before ``backward``, the gradients unscaled
        before clipping, and a step with inf/NaN gradients is skipped.

    Examples
    --------
    >>> import torch
    >>> p = Precision("fp16", torch.device("cpu"))
    >>> p.scaler is not None, Precision("fp32", torch.device("cpu")).scaler
    (True, None)
    """

    def __init__(self, name: str, device: torch.device) -> None:
        self.name = name
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(name)
        self.autocast = (
            torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()
        )
        self.scaler = _grad_scaler(device) if name == "fp16" else None

    def backward(self, loss: torch.Tensor, opt: torch.optim.Optimizer) -> None:
        """``loss.backward()`` (scaled for fp16), leaving true-scale gradients for clipping."""
        if self.scaler is None:
            loss.backward()
            return
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(opt)

    def step(self, opt: torch.optim.Optimizer) -> None:
        """The optimizer step (for fp16: skipped when the gradients overflowed; scale updated)."""
        if self.scaler is None:
            opt.step()
            return
        self.scaler.step(opt)
        self.scaler.update()

    def state_dict(self) -> dict | None:
        """The loss scaler's state (saved in the checkpoint), or None."""
        return None if self.scaler is None else self.scaler.state_dict()

    def load_state_dict(self, state: dict | None) -> None:
        """Restore the loss scaler's state from a checkpoint (nothing to do without one)."""
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
