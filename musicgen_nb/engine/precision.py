"""The precision policy: which dtype ``precision="auto"`` picks, and what stays in fp32.

* :func:`auto_dtype`: fp32 on the CPU; on CUDA, bf16 where the GPU runs it natively
  (compute capability 8.0 and up: A100, H100, RTX 30xx/40xx) and fp16 elsewhere (a
  T4 is sm75: ``torch.cuda.is_bf16_supported()`` says True there because it counts
  emulation, but bf16 has no tensor cores and no cuDNN convolutions on it); fp16 on MPS.
* The text encoder (T5) and the codec (EnCodec) stay in fp32 by default, as audiocraft
  keeps them: T5 overflows in fp16, and EnCodec's decode loses 20-50 dB of SNR in half
  precision. Only the decoder (and the conditioning projections) take the half dtype.
  ``mg.load(..., keep_fp32=())`` casts everything (:data:`KEEP_FP32` are the choices).
* Guidance and sampling always run in fp32 (:mod:`musicgen_nb.engine.sampling`).

Faking a device (tests and ``benchmarks/gpu_check.py``, no GPU needed): inside
``with fake_device("cuda", capability=(7, 5)):`` :func:`device_facts` (and so
:func:`auto_dtype` and the memory estimate of :mod:`musicgen_nb.engine.memory`)
answer for that device instead of asking CUDA. ``free_bytes=`` fakes the free memory
of any device type, the CPU included.

Examples
--------
>>> import torch
>>> auto_dtype(torch.device("cpu"))
torch.float32
>>> with fake_device("cuda", capability=(7, 5)):  # a T4
...     auto_dtype(torch.device("cuda"))
torch.float16
>>> with fake_device("cuda", capability=(8, 0)):  # an A100
...     auto_dtype(torch.device("cuda"))
torch.bfloat16
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

__all__ = [
    "DeviceFacts", "KEEP_FP32", "auto_dtype", "bridge", "describe", "device_facts", "exact_convolutions",
    "fake_device", "fp32_parts", "keep_fp32_names", "place", "resolve_precision",
]  # fmt: skip

#: The parts of a model ``keep_fp32=`` may name: they stay fp32 when the decoder is half.
KEEP_FP32 = ("text_encoder", "audio_encoder")
#: Precision names; int8/int4 are weight-only CPU quantizations of the decoder.
PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8", "int4")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
NAMES = {v: k for k, v in DTYPES.items()}


@dataclass(frozen=True)
class DeviceFacts:
    """What the precision and memory policies need to know about a device.

    Attributes
    ----------
    kind : str
        ``"cpu"``, ``"cuda"`` or ``"mps"``.
    capability : tuple of int or None
        CUDA compute capability, e.g. ``(7, 5)`` for a T4.
    bf16_native : bool
        True where bf16 runs natively (not emulated).
    free_bytes, total_bytes : int or None
        Device memory (None where unknown: the CPU's is the host's).
    faked : bool
        True inside :func:`fake_device`.

    Examples
    --------
    >>> DeviceFacts("cuda", (7, 5), False, None, None).bf16_native
    False
    """

    kind: str
    capability: tuple | None
    bf16_native: bool
    free_bytes: int | None
    total_bytes: int | None
    faked: bool = False


_FAKED: dict[str, DeviceFacts] = {}
_LOCK = threading.Lock()


@contextmanager
def fake_device(
    kind: str = "cuda",
    *,
    capability: tuple[int, int] | None = (7, 5),
    bf16_native: bool | None = None,
    free_bytes: int | None = None,
    total_bytes: int | None = None,
) -> Iterator[DeviceFacts]:
    """Pretend every ``kind`` device has these facts, for the ``with`` block.

    Parameters
    ----------
    kind : {"cuda", "cpu", "mps"}
    capability : (major, minor), optional
        CUDA compute capability; ``bf16_native`` defaults to ``capability >= (8, 0)``.
    bf16_native : bool, optional
    free_bytes, total_bytes : int, optional
        Device memory to report (``total_bytes`` defaults to ``free_bytes``).

    Examples
    --------
    >>> import torch
    >>> with fake_device("cpu", free_bytes=10**9) as facts:
    ...     device_facts(torch.device("cpu")).free_bytes
    1000000000
    """
    if kind not in ("cuda", "cpu", "mps"):
        raise ValueError(f"kind must be 'cuda', 'cpu' or 'mps', got {kind!r}")
    if bf16_native is None:
        bf16_native = kind == "cpu" or (capability is not None and tuple(capability) >= (8, 0))
    facts = DeviceFacts(
        kind, tuple(capability) if capability else None, bool(bf16_native), free_bytes,
        total_bytes if total_bytes is not None else free_bytes, faked=True,
    )  # fmt: skip
    with _LOCK:
        before = _FAKED.get(kind)
        _FAKED[kind] = facts
    try:
        yield facts
    finally:
        with _LOCK:
            if before is None:
                _FAKED.pop(kind, None)
            else:
                _FAKED[kind] = before


def device_facts(device: torch.device | str) -> DeviceFacts:
    """The facts of ``device``: faked inside :func:`fake_device`, else asked of torch.

    Examples
    --------
    >>> device_facts("cpu").kind, device_facts("cpu").capability
    ('cpu', None)
    """
    device = torch.device(device)
    faked = _FAKED.get(device.type)
    if faked is not None:
        return faked
    if device.type == "cuda" and torch.cuda.is_available():
        index = device.index if device.index is not None else torch.cuda.current_device()
        free, total = torch.cuda.mem_get_info(index)
        capability = torch.cuda.get_device_capability(index)  # native bf16 from sm80 (any torch)
        return DeviceFacts("cuda", capability, capability >= (8, 0), int(free), int(total))
    return DeviceFacts(device.type, None, device.type == "cpu", None, None)


def auto_dtype(device: torch.device) -> torch.dtype:
    """The dtype ``precision="auto"`` runs the decoder in on ``device``.

    fp32 on the CPU; bf16 on CUDA where it is native, fp16 on CUDA where it is not
    (compute capability 8.0 and up); fp16 on MPS.
    (Examples: see the module.)

    Examples
    --------
    >>> import torch
    >>> auto_dtype(torch.device("cpu"))
    torch.float32
    """
    facts = device_facts(device)
    if facts.kind == "cuda":
        return torch.bfloat16 if facts.bf16_native else torch.float16
    if facts.kind == "mps":
        return torch.float16
    return torch.float32


def resolve_precision(precision: str, device: torch.device) -> str:
    """Turn ``"auto"`` into a precision name with :func:`auto_dtype`; check the others.

    ``"int4"`` is refused up front when the C++ kernels are missing, and int8/int4
    off the CPU.

    Examples
    --------
    >>> import torch
    >>> resolve_precision("auto", torch.device("cpu"))
    'fp32'
    >>> with fake_device("cuda", capability=(7, 5)):
    ...     resolve_precision("auto", torch.device("cuda"))
    'fp16'
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        return NAMES[auto_dtype(device)]
    if precision in ("int8", "int4") and device.type != "cpu":
        raise ValueError(
            f"precision={precision!r} is weight-only {precision} for the CPU; on {device.type} use "
            "'fp16' or 'bf16'"
        )
    if precision == "int4":
        from .quantize import int4_unavailable, kernel_available

        if not kernel_available():  # refused before any weights load
            raise ValueError(int4_unavailable())
    return precision


def keep_fp32_names(keep_fp32: Any) -> tuple[str, ...]:
    """Check ``keep_fp32=``: a tuple of names from :data:`KEEP_FP32` (empty: cast everything).

    Examples
    --------
    >>> keep_fp32_names(["audio_encoder"]), keep_fp32_names(())
    (('audio_encoder',), ())
    """
    if isinstance(keep_fp32, str) or not isinstance(keep_fp32, (tuple, list, set, frozenset)):
        raise TypeError(
            f"keep_fp32 must be a tuple of names from {KEEP_FP32} (or () to cast everything), "
            f"got {keep_fp32!r}"
        )
    bad = [k for k in keep_fp32 if k not in KEEP_FP32]
    if bad:
        raise ValueError(f"keep_fp32 may name {KEEP_FP32}, got {bad[0]!r}")
    return tuple(k for k in KEEP_FP32 if k in keep_fp32)


def fp32_parts(keep_fp32: tuple) -> tuple[str, ...]:
    """The model's top-level modules that stay fp32 for ``keep_fp32``.

    The text encoder keeps its output projection (``enc_to_dec_proj``) with it:
    the projection then reads T5's fp32 states, and only its output is cast.

    Examples
    --------
    >>> fp32_parts(KEEP_FP32)
    ('text_encoder', 'enc_to_dec_proj', 'audio_encoder')
    """
    parts = {
        "text_encoder": ("text_encoder", "enc_to_dec_proj"),
        "audio_encoder": ("audio_encoder",),
    }
    return tuple(m for k in keep_fp32_names(keep_fp32) for m in parts[k])


def place(model: Any, device: torch.device, dtype: torch.dtype, keep_fp32: tuple = KEEP_FP32):
    """Move ``model`` to ``device`` in ``dtype``, the ``keep_fp32`` parts in fp32.

    Parts already in their dtype and on their device are not copied (see
    :func:`fp32_parts` for what each name keeps).

    Examples
    --------
    >>> import torch, musicgen_nb as mg
    >>> m = place(mg.load("tiny").model, torch.device("cpu"), torch.bfloat16)
    >>> m.decoder.dtype, m.text_encoder.dtype, m.audio_encoder.dtype
    (torch.bfloat16, torch.float32, torch.float32)
    """
    kept = fp32_parts(keep_fp32)
    for name, module in model.named_children():
        want = torch.float32 if name in kept else dtype
        module.to(device=device, dtype=want)
    return bridge(model)


def bridge(model: Any) -> Any:
    """Hooks that let transformers' own ``forward``/``generate`` run fp32 parts beside a half decoder.

    The text projection's output is cast to the decoder's dtype (it reads T5's
    fp32 states in fp32), and the melody projection casts its input (transformers
    makes the null chroma in ``model.dtype``, the fp32 T5's) to its weights' dtype.
    Each cast reads the dtypes at call time, so a later ``model.to(...)`` stays
    consistent. Added once per model.

    Examples
    --------
    >>> import torch, musicgen_nb as mg
    >>> s = mg.load("tiny", precision="bf16")
    >>> s.model.enc_to_dec_proj(torch.zeros(1, 32)).dtype
    torch.bfloat16
    """
    if getattr(model, "_musicgen_nb_bridged", False):
        return model
    decoder = model.decoder

    def to_decoder(module, args, out):
        return out.to(next(decoder.parameters()).dtype)

    def to_weights(module, args):
        dtype = module.weight.dtype
        return tuple(
            a.to(dtype) if torch.is_tensor(a) and a.is_floating_point() else a for a in args
        )

    if getattr(model, "enc_to_dec_proj", None) is not None:
        model.enc_to_dec_proj.register_forward_hook(to_decoder)
    if getattr(model, "audio_enc_to_dec_proj", None) is not None:
        model.audio_enc_to_dec_proj.register_forward_pre_hook(to_weights)
    model._musicgen_nb_bridged = True
    return model


_EXACT_LOCK = threading.Lock()
_EXACT_DEPTH, _EXACT_SAVED = 0, (True, False)


@contextmanager
def exact_convolutions() -> Iterator[None]:
    """Turn TF32 off for cuDNN convolutions and CUDA matmuls inside the block.

    TF32 keeps 10 mantissa bits: an EnCodec decode then differs from fp32 by
    far more than the ChunkDecoder's >= 100 dB promise allows. On the CPU it
    changes nothing. Thread-safe: the flags stay off while any thread is inside.

    Examples
    --------
    >>> import torch
    >>> with exact_convolutions():
    ...     torch.backends.cudnn.allow_tf32
    False
    """
    global _EXACT_DEPTH, _EXACT_SAVED
    with _EXACT_LOCK:  # the flags are global: the first block in saves them, the last out restores
        if _EXACT_DEPTH == 0:
            _EXACT_SAVED = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        _EXACT_DEPTH += 1
    try:
        yield
    finally:
        with _EXACT_LOCK:
            _EXACT_DEPTH -= 1
            if _EXACT_DEPTH == 0:
                torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = (
                    _EXACT_SAVED
                )


def describe(device: torch.device | str) -> dict:
    """What ``auto`` picks on ``device`` and why, as a dict (for ``gpu_check.py``).

    Examples
    --------
    >>> with fake_device("cuda", capability=(7, 5)):
    ...     describe("cuda")["auto"]
    'fp16'
    """
    facts = device_facts(device)
    return dict(asdict(facts), auto=NAMES[auto_dtype(torch.device(device))])
