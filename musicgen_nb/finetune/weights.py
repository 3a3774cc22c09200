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
import io
import json
import os
import shutil
import warnings
from pathlib import Path

import torch

from .._util.files import disk_error, remove_stale, replace_dir, write_atomic
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


def save_checkpoint(
    out: Path, model, opt, step: int, history: list, scaler: dict | None = None
) -> None:
    """Write ``out/checkpoint`` atomically: trainable weights, optimizer, step, history (and scaler).

    The files are built in a hidden ``.checkpoint.tmp<pid>`` folder, then moved into
    place. Any failure (a full disk: an ``OSError`` naming the checkpoint) removes that
    folder first, so the previous checkpoint stays and nothing half-written is left.
    Files follow the umask, like every other file of the run folder.

    Examples
    --------
    >>> import tempfile, pathlib, torch
    >>> out, m = pathlib.Path(tempfile.mkdtemp()), torch.nn.Linear(2, 2)
    >>> opt = torch.optim.AdamW(m.parameters())
    >>> save_checkpoint(out, m, opt, 3, [])
    >>> load_checkpoint(out, m, opt)
    (3, [])
    """
    from safetensors.torch import save

    tmp = out / f".{CHECKPOINT}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        weights = {n: p.detach().cpu().contiguous() for n, p in trainable(model).items()}
        write_atomic(tmp / "trainable.safetensors", save(weights))  # each file fsynced
        optim = io.BytesIO()
        torch.save(opt.state_dict(), optim)
        write_atomic(tmp / "optimizer.pt", optim.getvalue())
        write_atomic(
            tmp / "state.json", json.dumps(dict(step=step, history=history, scaler=scaler))
        )
        replace_dir(tmp, out / CHECKPOINT)  # the folder fsynced, then renamed into place
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, OSError):
            raise disk_error(err, out / CHECKPOINT) from err
        raise


def _checkpoint_files(ck: Path) -> tuple[dict, dict, dict]:
    """(weights, optimizer state, state.json) of a checkpoint folder; a damaged one is named."""
    from safetensors.torch import load_file

    name = "trainable.safetensors"
    try:
        weights = load_file(ck / name)
        name = "optimizer.pt"
        optim = torch.load(ck / name, weights_only=True)
        name = "state.json"
        state = json.loads((ck / name).read_text())
        int(state["step"]), list(state["history"])
    except Exception as err:  # noqa: BLE001 - every reader's error means "damaged"
        raise ValueError(
            f"the checkpoint {ck} is damaged ({name}: {type(err).__name__}: {str(err)[:120]}); "
            "delete it to start the run over"
        ) from None
    return weights, optim, state


def load_checkpoint(out: Path, model, opt, precision=None) -> tuple[int, list]:
    """Restore the checkpoint of ``out`` into ``model`` and ``opt``; (step, history), or (0, []).

    ``precision`` (a :class:`~musicgen_nb.finetune.options.Precision`) gets its loss
    scaler's state back too.

    Examples
    --------
    >>> import tempfile, pathlib, torch
    >>> m = torch.nn.Linear(2, 2)
    >>> load_checkpoint(pathlib.Path(tempfile.mkdtemp()), m, torch.optim.AdamW(m.parameters()))
    (0, [])
    """
    remove_stale(out, f".{CHECKPOINT}.tmp")  # a killed process's (a live one's is kept)
    ck = out / CHECKPOINT
    if not ck.exists() and (out / f".{CHECKPOINT}.old").exists():
        ck = out / f".{CHECKPOINT}.old"  # killed between the two renames
    if not ck.exists():
        return 0, []
    weights, optim, state = _checkpoint_files(ck)
    params = trainable(model)
    if set(weights) != set(params):
        raise ValueError(f"the checkpoint in {ck} does not match this model's trainable weights")
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(weights[n])
    opt.load_state_dict(optim)
    if precision is not None:
        precision.load_state_dict(state.get("scaler"))
    return int(state["step"]), list(state["history"])


def trainable_decoder(s, lora_rank, lora_alpha, *, gradient_checkpointing: bool = False):
    """A copy of ``s``'s decoder with LoRA layers, or every weight (fp32), trainable.

    A full fine-tune copies every weight, in fp32. LoRA copies only the module
    tree: the frozen base weights are the session's own tensors, in the session's
    dtype (never written to, never copied or cast), and only the LoRA weights are
    new, in fp32 (peft's ``autocast_adapter_dtype``). So LoRA on ``large`` in fp16
    adds the adapter's few MB, not a 13 GB fp32 copy of the decoder.

    ``gradient_checkpointing`` recomputes each layer's activations in the backward
    pass instead of keeping them (transformers' non-reentrant checkpointing): less
    memory, the same loss and gradients, about a third more compute.

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
    else:
        peft = require_peft()
        shared = {id(t): t for t in [*src.parameters(), *src.buffers()]}
        decoder = copy.deepcopy(src, shared)
        cfg = peft.LoraConfig(
            r=int(lora_rank), lora_alpha=float(lora_alpha), target_modules=LORA_TARGETS,
            lora_dropout=0.0, bias="none",
        )  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # transformers' own deprecations
            decoder = peft.get_peft_model(decoder, cfg, autocast_adapter_dtype=True)
    if gradient_checkpointing:
        base = decoder if lora_rank is None else decoder.get_base_model()
        kwargs = {"use_reentrant": False}
        if hasattr(base, "activation_checkpointing_enable"):  # the newer name (transformers 5)
            base.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    return decoder
