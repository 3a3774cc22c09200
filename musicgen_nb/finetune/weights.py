"""The trainable weights: a LoRA (or full) copy of the decoder, and its resumable checkpoint.

:func:`trainable_decoder` copies the decoder of a session for training (LoRA layers
through ``peft``, or every weight); :func:`save_checkpoint` writes the trainable
weights, the optimizer, the step and the history into ``out/checkpoint`` atomically,
and :func:`load_checkpoint` restores them, so a run stopped at any moment resumes.

Examples
--------
>>> import tempfile, pathlib, torch
>>> out, m = pathlib.Path(tempfile.mkdtemp()), torch.nn.Linear(2, 2)
>>> opt = torch.optim.AdamW(m.parameters())
>>> save_checkpoint(out, m, opt, 1, [dict(step=1, loss=2.0, accuracy=0.0)])
>>> load_checkpoint(out, m, opt)[0]
1
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import warnings
from pathlib import Path

import torch

from .._util.files import replace_dir
from ..checkpoints.adapter import CHECKPOINT

#: The linears of every decoder layer that get a LoRA adapter (peft regex, full match).
LORA_TARGETS = (
    r".*layers\.\d+\.(self_attn|encoder_attn)\.(q_proj|k_proj|v_proj|out_proj)"
    r"|.*layers\.\d+\.(fc1|fc2)|.*lm_heads\.\d+"
)


def require_peft():
    """The ``peft`` module, or an ImportError that says how to install it.

    Examples
    --------
    >>> require_peft().__name__
    'peft'
    """
    try:
        import peft
    except ImportError:
        raise ImportError(
            "LoRA fine-tuning needs peft: pip install 'musicgen-nb[train]' "
            "(or pass lora_rank=None for a full fine-tune)"
        ) from None
    return peft


def trainable(model) -> dict[str, torch.Tensor]:
    """The parameters of ``model`` that training changes, by name.

    Examples
    --------
    >>> import torch
    >>> m = torch.nn.Linear(2, 2); m.bias.requires_grad_(False)
    Parameter containing:
    ...
    >>> list(trainable(m))
    ['weight']
    """
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(out: Path, model, opt, step: int, history: list) -> None:
    """Write ``out/checkpoint`` atomically: trainable weights, optimizer, step and history.

    Examples
    --------
    >>> import tempfile, pathlib, torch
    >>> out, m = pathlib.Path(tempfile.mkdtemp()), torch.nn.Linear(2, 2)
    >>> opt = torch.optim.AdamW(m.parameters())
    >>> save_checkpoint(out, m, opt, 3, [])
    >>> load_checkpoint(out, m, opt)
    (3, [])
    """
    from safetensors.torch import save_file

    tmp = out / f".{CHECKPOINT}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(
        {n: p.detach().cpu().contiguous() for n, p in trainable(model).items()},
        tmp / "trainable.safetensors",
    )
    torch.save(opt.state_dict(), tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps(dict(step=step, history=history)))
    replace_dir(tmp, out / CHECKPOINT)


def load_checkpoint(out: Path, model, opt) -> tuple[int, list]:
    """Restore the checkpoint of ``out`` into ``model`` and ``opt``; (step, history), or (0, []).

    Examples
    --------
    >>> import tempfile, pathlib, torch
    >>> m = torch.nn.Linear(2, 2)
    >>> load_checkpoint(pathlib.Path(tempfile.mkdtemp()), m, torch.optim.AdamW(m.parameters()))
    (0, [])
    """
    from safetensors.torch import load_file

    ck = out / CHECKPOINT
    if not ck.exists() and (out / f".{CHECKPOINT}.old").exists():
        ck = out / f".{CHECKPOINT}.old"  # killed between the two renames
    if not ck.exists():
        return 0, []
    weights = load_file(ck / "trainable.safetensors")
    params = trainable(model)
    if set(weights) != set(params):
        raise ValueError(f"the checkpoint in {ck} does not match this model's trainable weights")
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(weights[n])
    opt.load_state_dict(torch.load(ck / "optimizer.pt", weights_only=True))
    state = json.loads((ck / "state.json").read_text())
    return int(state["step"]), list(state["history"])


def trainable_decoder(s, lora_rank, lora_alpha):
    """A copy of ``s``'s decoder (fp32) with LoRA layers, or every weight, trainable.

    A full fine-tune copies every weight. LoRA copies only the module tree: the
    frozen fp32 base weights are shared with ``s`` (never written to), so
    training ``small`` does not hold its decoder twice.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> s = mg.load("tiny")
    >>> lora, full = trainable_decoder(s, 4, 4.0), trainable_decoder(s, None, None)
    >>> def size(m):
    ...     return sum(p.numel() for p in trainable(m).values())
    >>> size(lora) < size(full) == sum(p.numel() for p in s.model.decoder.parameters())
    True
    """
    src = s.model.decoder
    if lora_rank is None:
        decoder = copy.deepcopy(src).float()
        for p in decoder.parameters():
            p.requires_grad_(True)
        return decoder
    peft = require_peft()
    shared = [*src.parameters(), *src.buffers()]
    decoder = copy.deepcopy(src, {id(t): t for t in shared if t.dtype == torch.float32}).float()
    cfg = peft.LoraConfig(
        r=int(lora_rank), lora_alpha=float(lora_alpha), target_modules=LORA_TARGETS,
        lora_dropout=0.0, bias="none",
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # transformers' own deprecations
        return peft.get_peft_model(decoder, cfg)
