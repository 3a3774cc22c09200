"""Our decode engine: a static-KV-cache loop over transformers' MusicGen modules.

It runs the decoder layers of the loaded transformers model (their weights,
layer norms and embeddings) with a pre-allocated key/value cache, the guidance
branches stacked in one batch, and sampling done directly on the
delay-pattern steps. There is no per-step logits-processor chain and no
per-step reallocation. The sampling order matches transformers' ``generate``
(guidance on logits, then temperature, top-k, top-p, softmax, multinomial), so
the same seed gives the same tokens.

A decode step with batch 1 is bound by memory bandwidth: every weight is read
once per step for two rows (conditional and unconditional). So the step:

* looks every layer's weights up once per :class:`Decoder` and runs all the
  layers in one function compiled by TorchScript (:func:`_layers`): no
  ``nn.Module`` calls and no Python between the ~30 small ops of a layer;
* on the CPU runs an fp32 linear as ``W @ x.T``, which MKL serves from its
  matrix-vector path at ~30 GB/s where ``F.linear`` with 2 rows gets 7-10 GB/s
  (same arithmetic, so the same tokens as transformers in practice; the tests
  check it);
* with int8 weights (:mod:`musicgen_nb.quantize`) calls our C++ int8 linear
  (:func:`musicgen_nb._kernels.linear_int8`, with the layer norm before it, the
  GELU and the residual add after it inside the call) or, where it cannot be
  built, fbgemm; one fused GEMM for each self-attention's q/k/v and one for the
  four lm_heads;
* computes cross-attention keys and values once, with zero values for the
  rows that attend nowhere (the unconditional branch), instead of masking the
  output at every step.
* with int8 weights keeps int8 keys and values (one scale per position and
  head) and runs a single step's self-attention, and its cross-attention to the
  text, in one C++ call each (:mod:`musicgen_nb._kernels`; PyTorch where it
  cannot be built).
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from . import _kernels
from ._kernels import quantize_kv


@dataclass
class Conditioning:
    """What the decoder attends to, one row per guidance branch and batch item.

    Attributes
    ----------
    hidden : torch.Tensor
        ``[R, S, D]``: projected text states (cross-attention), or the prefix
        (chroma + text) prepended to the sequence for melody models.
    mask : torch.Tensor or None
        ``[R, S]`` bool, True where ``hidden`` may be attended (cross-attention only).
    prefix : bool
        True for melody models, whose conditioning is a prefix of the sequence.
    branches : int
        Number of guidance branches stacked along the batch (1, 2 or 3).
    """

    hidden: torch.Tensor
    mask: torch.Tensor | None
    prefix: bool
    branches: int


@dataclass
class Sampler:
    """Sampling settings, validated by the caller."""

    guidance_scale: float = 3.0
    temperature: float = 1.0
    top_k: int = 250
    top_p: float = 0.0
    do_sample: bool = True
    cfg_coef_beta: float | None = None


@dataclass
class StepRecord:
    """Per-step statistics kept when tracing (tensors on the device)."""

    entropy: list = field(default_factory=list)
    chosen_prob: list = field(default_factory=list)
    top_ids: list = field(default_factory=list)
    top_probs: list = field(default_factory=list)
    kl: list = field(default_factory=list)


def _fast_mm_ok(weight: torch.Tensor) -> bool:
    """True where ``W @ x.T`` beats ``F.linear`` for a few rows: fp32 on the CPU.

    MKL runs ``x @ W.T`` with 2-8 rows as a small GEMM at 7-10 GB/s on a 2-core
    CPU; ``W @ x.T`` (x row-major) takes its matrix-vector path at 30+ GB/s,
    near the memory bandwidth a decode step is bound by. (bf16 is the other way
    round: ``F.linear`` reads 17-20 GB/s there, ``W @ x.T`` 10.)
    """
    return weight.device.type == "cpu" and weight.dtype == torch.float32


def _linear_fn(module):
    """A fast callable ``f(x2d) -> y2d`` equivalent to ``module(x2d)``."""
    from .quantize import Int8Linear

    if isinstance(module, Int8Linear) and module.backend == "kernel":
        q, scale, bias = module.qweight, module.scale, module.bias
        kernel = torch.ops.musicgen_nb.linear_int8
        return lambda x: kernel(x.contiguous(), q, scale, bias, False)
    if isinstance(module, Int8Linear) and module.packed is not None:
        packed, reduce_range = module.packed, module.reduce_range
        op = torch.ops.quantized.linear_dynamic
        return lambda x: op(x, packed, reduce_range)
    if type(module) is torch.nn.Linear:
        w, b = module.weight, module.bias
        if not _fast_mm_ok(w):
            return lambda x: F.linear(x, w, b)
        if b is None:
            return lambda x: torch.mm(w, x.contiguous().t()).t().contiguous()
        col = b[:, None]
        return lambda x: torch.addmm(col, w, x.contiguous().t()).t().contiguous()
    return module


def _fused_parts(modules) -> object | None:
    """The fused int8 layer behind ``modules`` when they are its consecutive parts, in order."""
    from .quantize import Int8Part

    if not modules or not all(isinstance(m, Int8Part) for m in modules):
        return None
    fused = modules[0].fused
    edge = 0
    for m in modules:
        if m.fused is not fused or m.start != edge:
            return None
        edge = m.stop
    return fused if edge == fused.out_features else None


# How the layers' linears run (one mode for a whole decoder): fbgemm int8, fp32
# ``W @ x.T``, ``F.linear``, int8 weights dequantized at each call, or our C++
# int8 linear (:func:`musicgen_nb._kernels.linear_int8`).
_INT8, _MATVEC, _LINEAR, _DEQUANT, _KERNEL = 0, 1, 2, 3, 4
# The linears of one decoder layer, in the order of the weight table.
_SLOTS = ("q", "k", "v", "out", "cross_q", "cross_out", "fc1", "fc2")


def _linear(
    x: torch.Tensor,
    i: int,
    mode: int,
    packed: list[torch.classes.quantized.LinearPackedParamsBase],
    weights: list[torch.Tensor],
    biases: list[torch.Tensor | None],
    scales: list[torch.Tensor],
    reduce_range: bool,
    gelu: bool = False,
    residual: torch.Tensor | None = None,
) -> torch.Tensor:
    """Linear ``i`` of the weight table applied to ``x`` ``[rows, in]``, then GELU if
    ``gelu``, then ``+ residual``."""
    # The modes are written as literals: TorchScript reads no global constants.
    if mode == 4:  # _KERNEL: GELU and residual run inside the kernel, on its output
        return torch.ops.musicgen_nb.linear_int8(
            x, weights[i], scales[i], biases[i], gelu, None, None, 1e-5, residual
        )
    if mode == 0:  # _INT8 (fbgemm: the bias is packed with the weights)
        y = torch.ops.quantized.linear_dynamic(x, packed[i], reduce_range)
    elif mode == 1:  # _MATVEC
        b = biases[i]
        y = torch.mm(weights[i], x.t()) if b is None else torch.addmm(b, weights[i], x.t())
        y = y.t().contiguous()
    elif mode == 2:  # _LINEAR
        y = F.linear(x, weights[i], biases[i])
    else:  # _DEQUANT
        b = biases[i]
        y = F.linear(x, weights[i].to(x.dtype)) * scales[i]
        y = y if b is None else y + b
    y = F.gelu(y) if gelu else y
    return y if residual is None else residual + y


def _norm_linear(
    x: torch.Tensor,
    i: int,
    n: int,
    norms: list[torch.Tensor],
    eps: float,
    mode: int,
    packed: list[torch.classes.quantized.LinearPackedParamsBase],
    weights: list[torch.Tensor],
    biases: list[torch.Tensor | None],
    scales: list[torch.Tensor],
    reduce_range: bool,
    gelu: bool = False,
) -> torch.Tensor:
    """Linear ``i`` of ``layer_norm(x)`` with norm ``n`` of the table (fused in the kernel)."""
    if mode == 4:
        return torch.ops.musicgen_nb.linear_int8(
            x, weights[i], scales[i], biases[i], gelu, norms[2 * n], norms[2 * n + 1], eps, None
        )
    h = F.layer_norm(x, [x.shape[1]], norms[2 * n], norms[2 * n + 1], eps)
    return _linear(h, i, mode, packed, weights, biases, scales, reduce_range, gelu)


def _attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor | None,
    causal: bool,
    keep: bool,
    scaling: float,
    kept: list[torch.Tensor],
) -> torch.Tensor:
    """Attention of ``q`` over ``k``/``v``; when ``keep``, its weights are appended to ``kept``."""
    if not keep:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, is_causal=causal)
    scores = torch.matmul(q, k.transpose(-1, -2)) * scaling
    if bias is not None:
        scores = scores + bias
    if causal:
        n, m = q.shape[-2], k.shape[-2]
        mask = torch.ones(n, m, dtype=torch.bool, device=q.device).tril(m - n)
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.float().softmax(-1)
    kept.append(weights)
    return torch.matmul(weights.to(v.dtype), v)


def _layers(
    x: torch.Tensor,
    rows: int,
    start: int,
    heads: int,
    norms: list[torch.Tensor],
    eps: float,
    mode: int,
    fused_qkv: bool,
    packed: list[torch.classes.quantized.LinearPackedParamsBase],
    weights: list[torch.Tensor],
    biases: list[torch.Tensor | None],
    scales: list[torch.Tensor],
    reduce_range: bool,
    k_cache: list[torch.Tensor],
    v_cache: list[torch.Tensor],
    k_scale: list[torch.Tensor],
    v_scale: list[torch.Tensor],
    kernel: bool,
    cross_k: list[torch.Tensor],
    cross_v: list[torch.Tensor],
    cross_bias: torch.Tensor | None,
    self_bias: torch.Tensor | None,
    causal: bool,
    capture: list[int],
    scaling: float,
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """Every decoder layer on ``x`` ``[rows * n, dim]`` (pre-norm MusicGen layers).

    The keys and values of positions ``start .. start + n`` are written into
    ``k_cache``/``v_cache`` (``[rows, heads, positions, head_dim]`` per layer).
    When ``k_scale``/``v_scale`` are given (int8 mode), the caches are int8 with
    one scale per position and head (``[rows, heads, positions]``); with
    ``kernel``, a single step's self-attention runs in the fused C++ kernel
    (:mod:`musicgen_nb._kernels`), else in PyTorch on the dequantized cache.
    Returns the hidden states and the attention weights of the ``capture``
    layers (self, cross). TorchScript compiles this function (see
    :func:`_compiled`); it is plain Python too.
    """
    dim = x.shape[1]
    n = x.shape[0] // rows
    hd = dim // heads
    end = start + n
    kept_self: list[torch.Tensor] = []
    kept_cross: list[torch.Tensor] = []
    kv_int8 = len(k_scale) > 0
    for i in range(len(k_cache)):
        j = 8 * i
        if fused_qkv:
            qkv = _norm_linear(
                x, j, 3 * i, norms, eps, mode, packed, weights, biases, scales, reduce_range
            )
            q, k, v = qkv[:, :dim], qkv[:, dim : 2 * dim], qkv[:, 2 * dim :]
        else:
            h = F.layer_norm(x, [dim], norms[6 * i], norms[6 * i + 1], eps)
            q = _linear(h, j, mode, packed, weights, biases, scales, reduce_range)
            k = _linear(h, j + 1, mode, packed, weights, biases, scales, reduce_range)
            v = _linear(h, j + 2, mode, packed, weights, biases, scales, reduce_range)
        if kernel and n == 1 and i not in capture:
            # one call: int8 cache write, scores, softmax, weighted values
            o = torch.ops.musicgen_nb.attend_int8(
                q, k, v, k_cache[i], k_scale[i], v_cache[i], v_scale[i], start, scaling
            )
        else:
            q = q.reshape(rows, n, heads, hd).transpose(1, 2)
            k = k.reshape(rows, n, heads, hd).transpose(1, 2)
            v = v.reshape(rows, n, heads, hd).transpose(1, 2)
            if kv_int8:
                kq, ks = quantize_kv(k)
                vq, vs = quantize_kv(v)
                k_cache[i].narrow(2, start, n).copy_(kq)
                v_cache[i].narrow(2, start, n).copy_(vq)
                k_scale[i].narrow(2, start, n).copy_(ks)
                v_scale[i].narrow(2, start, n).copy_(vs)
                keys = (
                    k_cache[i].narrow(2, 0, end).to(q.dtype)
                    * k_scale[i].narrow(2, 0, end)[..., None]
                )
                values = (
                    v_cache[i].narrow(2, 0, end).to(q.dtype)
                    * v_scale[i].narrow(2, 0, end)[..., None]
                )
            else:
                k_cache[i].narrow(2, start, n).copy_(k)
                v_cache[i].narrow(2, start, n).copy_(v)
                keys, values = k_cache[i].narrow(2, 0, end), v_cache[i].narrow(2, 0, end)
            o = _attention(q, keys, values, self_bias, causal, i in capture, scaling, kept_self)
            o = o.transpose(1, 2).reshape(rows * n, dim)
        x = _linear(o, j + 3, mode, packed, weights, biases, scales, reduce_range, False, x)
        if len(cross_k) > 0:
            q = _norm_linear(
                x, j + 4, 3 * i + 1, norms, eps, mode, packed, weights, biases, scales, reduce_range
            )
            keep = i in capture
            if kernel and n == 1 and not keep:  # one query over the text: one C++ call
                o = torch.ops.musicgen_nb.attend_cross(
                    q, cross_k[i], cross_v[i], cross_bias, scaling
                )
            else:
                q = q.reshape(rows, n, heads, hd).transpose(1, 2)
                o = _attention(
                    q, cross_k[i], cross_v[i], cross_bias, False, keep, scaling, kept_cross
                )
                o = o.transpose(1, 2).reshape(rows * n, dim)
            x = _linear(o, j + 5, mode, packed, weights, biases, scales, reduce_range, False, x)
        h = _norm_linear(
            x,
            j + 6,
            3 * i + 2,
            norms,
            eps,
            mode,
            packed,
            weights,
            biases,
            scales,
            reduce_range,
            True,
        )
        x = _linear(h, j + 7, mode, packed, weights, biases, scales, reduce_range, False, x)
    return x, kept_self, kept_cross


@functools.cache
def _compiled():
    """:func:`_layers` compiled by TorchScript, or the Python function where that fails.

    A decode step calls ~30 small ops per layer; from TorchScript each costs
    ~1-2 us of dispatch instead of ~5-15 us from Python (~4 ms of a 20 ms int8
    step on musicgen-small). PyTorch marks TorchScript deprecated but ships it,
    and it is the one compiler that takes fbgemm's packed int8 weights
    (``torch.compile`` cannot trace them). :class:`Decoder` runs it with
    ``torch.jit.optimized_execution(False)``: the interpreter runs the ops as
    written, with no fusion passes, so the results are the Python function's.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.jit.script(_layers)
    except Exception:  # noqa: BLE001 - no TorchScript in this build: run it as Python
        return _layers


@dataclass
class _Table:
    """The weights :func:`_layers` reads, flattened into lists (8 linears a layer)."""

    mode: int
    fused_qkv: bool
    packed: list
    weights: list
    biases: list
    scales: list
    reduce_range: bool
    norms: list
    eps: float


def _table(layers) -> _Table:
    """Look up every layer's weights once, in the order :func:`_layers` reads them."""
    from .quantize import Int8Linear

    first = layers[0]
    norm = first.self_attn_layer_norm
    fused = [
        _fused_parts([lyr.self_attn.q_proj, lyr.self_attn.k_proj, lyr.self_attn.v_proj])
        for lyr in layers
    ]
    fused_qkv = all(f is not None for f in fused)
    probe = first.fc1
    if isinstance(probe, Int8Linear):
        mode = {"kernel": _KERNEL, "fbgemm": _INT8}.get(probe.backend, _DEQUANT)
    elif type(probe) is torch.nn.Linear:
        mode = _MATVEC if _fast_mm_ok(probe.weight) else _LINEAR
    else:
        raise TypeError(
            f"the engine runs nn.Linear or Int8Linear layers, not {type(probe).__name__}"
        )
    t = _Table(
        mode, fused_qkv, [], [], [], [], bool(getattr(probe, "reduce_range", False)), [], norm.eps
    )
    for layer, qkv in zip(layers, fused, strict=True):
        act = layer.activation_fn
        if getattr(act, "act", act) is not F.gelu or getattr(act, "approximate", "none") != "none":
            raise TypeError(f"the engine runs MusicGen's exact GELU, not {act!r}")
        attn, cross = layer.self_attn, getattr(layer, "encoder_attn", None)
        linears = [attn.q_proj, attn.k_proj, attn.v_proj, attn.out_proj]
        if fused_qkv:
            linears[:3] = [qkv, qkv, qkv]
        linears += [cross.q_proj, cross.out_proj] if cross is not None else [attn.out_proj] * 2
        linears += [layer.fc1, layer.fc2]
        for slot, lin in zip(_SLOTS, linears, strict=True):
            _add(t, lin, slot)
        # Without cross-attention (melody) its slot holds the self-attention norm, unused.
        cross_norm = getattr(layer, "encoder_attn_layer_norm", layer.self_attn_layer_norm)
        for ln in (layer.self_attn_layer_norm, cross_norm, layer.final_layer_norm):
            if type(ln) is not torch.nn.LayerNorm or ln.eps != t.eps:
                raise TypeError(f"the engine runs LayerNorm(eps={t.eps}) layers, not {ln!r}")
            t.norms += [ln.weight, ln.bias]
    return t


def _add(t: _Table, lin, slot: str) -> None:
    """Append one linear to the weight table in ``t.mode``."""
    from .quantize import Int8Linear

    kind = {
        _KERNEL: "Int8Linear (kernel)",
        _INT8: "Int8Linear (fbgemm)",
        _DEQUANT: "Int8Linear",
        _MATVEC: "nn.Linear",
        _LINEAR: "nn.Linear",
    }
    ok = (
        isinstance(lin, Int8Linear)
        if t.mode in (_INT8, _DEQUANT, _KERNEL)
        else type(lin) is torch.nn.Linear
    )
    backend = {_KERNEL: "kernel", _INT8: "fbgemm"}.get(t.mode, "dequantize")
    if not ok or (t.mode in (_INT8, _KERNEL) and lin.backend != backend):
        raise TypeError(
            f"{slot}: every linear of the decoder must be {kind[t.mode]}, got {type(lin).__name__}"
        )
    if t.mode == _INT8:
        t.packed.append(lin.packed)
        return
    if t.mode in (_DEQUANT, _KERNEL):
        t.weights.append(lin.qweight if t.mode == _KERNEL else lin.int8_weight())
        t.scales.append(lin.scale)
        t.biases.append(lin.bias)
        return
    t.weights.append(lin.weight)
    b = lin.bias
    t.biases.append(b[:, None] if b is not None and t.mode == _MATVEC else b)


class Decoder:
    """Run a MusicGen decoder step by step with a static KV cache.

    Parameters
    ----------
    model : transformers MusicgenForConditionalGeneration or MusicgenMelodyForConditionalGeneration
    cond : Conditioning
    max_len : int
        Number of audio positions (BOS included) the cache must hold.
    capture : dict, optional
        ``{"layers": [...], "heads": [...] or None, "rows": int}`` to record
        attention weights of the first ``rows`` batch rows.
    kernels : bool, optional
        int8 models only: run a step's self-attention in the fused C++ kernel
        of :mod:`musicgen_nb._kernels` (True), or in PyTorch (False). The
        default uses the kernel where it builds.

    Notes
    -----
    The layers run in :func:`_layers`, compiled by TorchScript, from a table
    of their weights looked up once here: on the CPU an fp32 linear is
    ``W @ x.T`` (MKL's fast matrix-vector path for a few rows), an
    :class:`~musicgen_nb.quantize.Int8Linear` calls fbgemm directly. The keys
    and values of each step are written into a cache allocated once: in the
    model's dtype, or for int8 models as int8 with one scale per position and
    head (a quarter of the fp32 bytes; KL to fp32 stays < 0.01, see
    ``benchmarks/bench_generate.py``).

    Examples
    --------
    >>> import torch, musicgen_nb as mg
    >>> from musicgen_nb import generation as G
    >>> s = mg.load("tiny")
    >>> cond = G.conditioning(s, ["jazz"], negative=None, guidance_scale=3.0)
    >>> dec = Decoder(s.model, cond, max_len=8)
    >>> bos = torch.full((2, 4, 1), s.special_id)
    >>> dec.step(bos).shape  # guidance rows, codebooks, vocabulary
    torch.Size([2, 4, 2048])
    """

    @torch.inference_mode()
    def __init__(
        self,
        model,
        cond: Conditioning,
        max_len: int,
        capture: dict | None = None,
        kernels: bool | None = None,
    ):
        self.lm = model.decoder  # MusicgenForCausalLM
        dec = self.lm.model.decoder
        self.dec = dec
        self.layers = list(dec.layers)
        self.cond = cond
        first = self.layers[0].self_attn
        self.heads, self.head_dim = first.num_heads, first.head_dim
        self.scaling = first.scaling
        rows = cond.hidden.shape[0]
        self.rows = rows
        param = next(p for p in self.lm.parameters() if p.is_floating_point())
        self.dtype = param.dtype
        self.device = cond.hidden.device
        self.offset = cond.hidden.shape[1] if cond.prefix else 0
        total = self.offset + max_len
        self.total = total
        self.table = _table(self.layers)
        # int8 models (kernel or fbgemm) keep int8 keys/values, one scale per position
        # and head. (Dequantized int8 weights, where neither exists: no kernel either.)
        self.kv_int8 = self.table.mode in (_INT8, _KERNEL)
        if kernels is None:
            kernels = self.kv_int8 and self.device.type == "cpu" and _kernels.load()
        elif kernels and not (self.kv_int8 and self.device.type == "cpu" and _kernels.load()):
            raise ValueError(
                f"kernels=True needs an int8 model on the CPU and a built kernel "
                f"(int8: {self.kv_int8}, device: {self.device.type}, kernel: {_kernels.status()['reason']})"
            )
        self.kernels = bool(kernels)
        shape = (len(self.layers), rows, self.heads, total, self.head_dim)
        kv_dtype = torch.int8 if self.kv_int8 else self.dtype
        self.k_cache = torch.zeros(shape, dtype=kv_dtype, device=self.device)
        self.v_cache = torch.zeros(shape, dtype=kv_dtype, device=self.device)
        self.k_layers, self.v_layers = list(self.k_cache.unbind(0)), list(self.v_cache.unbind(0))
        self.k_scales: list[torch.Tensor] = []
        self.v_scales: list[torch.Tensor] = []
        if self.kv_int8:
            scales = torch.zeros(2, *shape[:-1], device=self.device)
            self.k_scales, self.v_scales = list(scales[0].unbind(0)), list(scales[1].unbind(0))
        self.pos = 0
        self.positions = self._positions(total)
        self.embeddings = [e.weight for e in dec.embed_tokens]
        ln = dec.layer_norm
        self.final_norm = lambda x: F.layer_norm(x, ln.normalized_shape, ln.weight, ln.bias, ln.eps)
        fused = _fused_parts(list(self.lm.lm_heads))
        self.heads_fused = _linear_fn(fused) if fused is not None else None
        self.lm_heads = [_linear_fn(h) for h in self.lm.lm_heads]
        self.capture = capture
        self.capture_layers = sorted(capture["layers"]) if capture is not None else []
        self.captured_self: dict[int, list] = {}
        self.captured_cross: dict[int, list] = {}
        # Melody models have no cross-attention: their conditioning is a prefix.
        self.cross_k, self.cross_v, self.cross_bias = (
            ([], [], None) if cond.prefix else self._cross_kv()
        )
        self.run = _compiled()
        if cond.prefix:
            self._forward(cond.hidden.to(self.dtype), need_logits=False)

    def _positions(self, total: int) -> torch.Tensor:
        emb = self.dec.embed_positions
        if emb.weights.shape[0] < total:
            emb.make_weights(total, emb.embedding_dim)
        return emb.weights[:total].to(device=self.device, dtype=self.dtype)

    def _cross_kv(self) -> tuple[list, list, torch.Tensor]:
        """Every layer's cross-attention keys and values, computed once, and their mask bias."""
        h = self.cond.hidden.to(self.dtype)
        rows, length, _ = h.shape
        mask = self.cond.mask
        # A row with nothing to attend to (the unconditional branch) attends nowhere:
        # its output is 0. Zero values give exactly that (uniform weights times 0),
        # without a masked_fill per layer and step.
        empty = ~mask.any(dim=1)
        keys, values = [], []
        for layer in self.layers:
            attn = layer.encoder_attn
            k = attn.k_proj(h).view(rows, length, self.heads, self.head_dim).transpose(1, 2)
            v = attn.v_proj(h).view(rows, length, self.heads, self.head_dim).transpose(1, 2)
            if self.kernels:  # the C++ cross-attention reads them row-major
                k, v = k.contiguous(), v.contiguous()
            keys.append(k)
            values.append(
                v.masked_fill(empty[:, None, None, None], 0.0) if bool(empty.any()) else v
            )
        return keys, values, _bias(mask[:, None, None, :], self.dtype)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """Sum of the per-codebook embeddings of ``tokens`` ``[R, K, n]``."""
        w = self.embeddings
        x = F.embedding(tokens[:, 0], w[0])
        for k in range(1, tokens.shape[1]):
            x = x + F.embedding(tokens[:, k], w[k])
        return x.to(self.dtype)

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed ``tokens`` ``[R, K, n]`` at the next positions; return last logits ``[R, K, V]``."""
        return self._forward(self.embed(tokens), need_logits=True)

    def _forward(self, x: torch.Tensor, *, need_logits: bool):
        rows, n, dim = x.shape
        start = self.pos
        end = start + n
        x = (x + self.positions[start:end]).reshape(rows * n, dim)
        causal = n > 1
        bias = None
        if causal and start > 0:  # a chunk after earlier positions: explicit mask
            mask = torch.ones(n, end, dtype=torch.bool, device=x.device).tril(start)
            bias, causal = _bias(mask, x.dtype), False
        cap, layers, t = self.capture, self.capture_layers, self.table
        with torch.jit.optimized_execution(False):  # the ops as written: no fusion passes
            x, kept_self, kept_cross = self.run(
                x, rows, start, self.heads, t.norms, t.eps, t.mode, t.fused_qkv, t.packed, t.weights,
                t.biases, t.scales, t.reduce_range, self.k_layers, self.v_layers, self.k_scales, self.v_scales,
                self.kernels, self.cross_k, self.cross_v,
                self.cross_bias, bias, causal, layers, self.scaling,
            )  # fmt: skip
        for store, kept in ((self.captured_self, kept_self), (self.captured_cross, kept_cross)):
            for i, w in zip(layers, kept, strict=False):
                w = w[: cap["rows"]]
                w = w[:, cap["heads"]] if cap.get("heads") is not None else w
                store.setdefault(i, []).append(w.mean(1).to(torch.float16).cpu())
        self.pos = end
        if not need_logits:
            return None
        h = self.final_norm(x.reshape(rows, n, dim)[:, -1])
        if self.heads_fused is not None:
            return self.heads_fused(h).view(rows, len(self.lm_heads), -1)
        return torch.stack([head(h) for head in self.lm_heads], dim=1)  # [R, K, V]


def _bias(mask: torch.Tensor, dtype) -> torch.Tensor:
    bias = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
    return bias.masked_fill(~mask, torch.finfo(dtype).min)


#: Above this guidance scale (or cfg_coef_beta), or below this temperature, the
#: guided logits or their tempering are computed in float64 around each row's
#: maximum, so that no finite setting overflows: the limit is the argmax.
EXTREME_SCALE = 1e4
EXTREME_TEMPERATURE = 1e-4


def guide(
    logits: torch.Tensor, batch: int, sampler: Sampler
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Combine the guidance branches of ``logits`` ``[branches*B, K, V]``.

    Two branches (conditional, unconditional): ``u + s * (c - u)``, as in
    transformers. Three branches (text+melody, melody only, none; audiocraft's
    double CFG): ``u + s * (m + beta * (c - m) - u)``.

    Half-precision logits are combined in float32. Past :data:`EXTREME_SCALE`
    the result is returned shifted so that each row's maximum is 0 (softmax does
    not change), which no finite scale can overflow.

    Returns the guided logits ``[B, K, V]`` and the conditional and unconditional
    logits (None without guidance).
    """
    branches = logits.shape[0] // batch
    if branches == 1:
        return logits, None, None
    cond, *rest = logits.split(batch)
    uncond = rest[-1]
    beta = sampler.cfg_coef_beta
    if sampler.guidance_scale > EXTREME_SCALE or (branches == 3 and beta > EXTREME_SCALE):
        return _guide_extreme([cond, *rest], sampler), cond, uncond
    if cond.dtype in (torch.float16, torch.bfloat16):
        cond, rest = cond.float(), [r.float() for r in rest]
        uncond = rest[-1]
    if branches == 3:
        melody_only = rest[0]
        target = melody_only + beta * (cond - melody_only)
        return uncond + sampler.guidance_scale * (target - uncond), cond, uncond
    return uncond + (cond - uncond) * sampler.guidance_scale, cond, uncond


def _guide_extreme(parts: list[torch.Tensor], sampler: Sampler) -> torch.Tensor:
    """Guided logits for a huge scale, shifted so each row's maximum is exactly 0.

    The guided logits are a weighted sum of the branches; the weights are written
    as ``R * w`` with every ``|w| <= 1``, so ``y = sum(w * branch)`` is finite. Then
    ``R * (y - max(y))`` is at most 0 and overflows only to ``-inf`` (probability 0).
    """
    s, beta = sampler.guidance_scale, sampler.cfg_coef_beta
    if len(parts) == 2:  # (1 - s) u + s c
        weights, scale = [1.0, 1.0 / s - 1.0], s
    elif beta >= 1:  # (1 - s) u + s (1 - beta) m + s beta c
        weights, scale = [1.0, 1.0 / beta - 1.0, (1.0 / s - 1.0) / beta], s * beta
    else:
        weights, scale = [beta, 1.0 - beta, 1.0 / s - 1.0], s
    y = sum(w * p.double() for w, p in zip(weights, parts, strict=True))
    y = y - y.amax(-1, keepdim=True)
    return torch.where(y == 0, y, y * scale)  # scale may be inf: keep the maxima at 0


def warp(logits: torch.Tensor, sampler: Sampler) -> torch.Tensor:
    """Temperature, then top-k, then top-p (nucleus), like transformers' warpers.

    Below :data:`EXTREME_TEMPERATURE` the logits are shifted to a row maximum of
    0 in float64 first, so that dividing by any positive temperature gives at most
    0 and never NaN; as the temperature goes to 0 this tends to the argmax.
    """
    if sampler.temperature < EXTREME_TEMPERATURE:
        logits = logits.double()
        logits = (logits - logits.amax(-1, keepdim=True)) / sampler.temperature
    elif sampler.temperature != 1.0:
        logits = logits / sampler.temperature
    vocab = logits.shape[-1]
    if sampler.top_k and sampler.top_k < vocab:
        kth = torch.topk(logits, sampler.top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if 0.0 < sampler.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=False, dim=-1)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        remove = cum <= (1 - sampler.top_p)
        remove[..., -1:] = False  # keep at least one token
        remove = remove.scatter(-1, order, remove)
        logits = logits.masked_fill(remove, float("-inf"))
    return logits


def sample(logits: torch.Tensor, sampler: Sampler, generator):
    """Draw one token per row of ``logits`` ``[B, K, V]``; return tokens and probs.

    ``generator`` is one ``torch.Generator`` for the whole batch (as transformers'
    generate draws), or a list of B generators, one per batch item: item b then
    draws from its own stream, so its tokens never depend on its batch-mates.
    """
    probs = logits.float().softmax(-1)
    b, k, v = probs.shape
    if sampler.do_sample and isinstance(generator, (list, tuple)):
        tokens = torch.cat(
            [torch.multinomial(p, 1, generator=g) for p, g in zip(probs, generator, strict=True)]
        )
        tokens = tokens.view(b, k)
    elif sampler.do_sample:
        tokens = torch.multinomial(probs.view(b * k, v), 1, generator=generator).view(b, k)
    else:
        tokens = probs.argmax(-1)
    return tokens, probs


def _tempered_log_softmax(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    if temperature < EXTREME_TEMPERATURE:
        x = logits.double()
        return ((x - x.amax(-1, keepdim=True)) / temperature).log_softmax(-1)
    return (logits.float() / temperature).log_softmax(-1)


def record(rec: StepRecord, probs, tokens, cond, uncond, temperature: float, top: int = 5) -> None:
    """Append one step's trace statistics: entropy, chosen prob, top-k, KL(cond || uncond)."""
    logp = probs.clamp_min(1e-30).log()
    rec.entropy.append(-(probs * logp).sum(-1))
    # Forced steps hold the special id (== vocab size): their rows are dropped later.
    vocab = probs.shape[-1]
    chosen = probs.gather(-1, tokens.clamp(max=vocab - 1)[..., None])[..., 0]
    rec.chosen_prob.append(torch.where(tokens < vocab, chosen, torch.zeros_like(chosen)))
    tp, ti = probs.topk(top, dim=-1)
    rec.top_probs.append(tp)
    rec.top_ids.append(ti)
    if cond is not None:
        lc = _tempered_log_softmax(cond, temperature)
        lu = _tempered_log_softmax(uncond, temperature)
        pc = lc.exp()
        rec.kl.append(torch.where(pc > 0, pc * (lc - lu), 0.0).sum(-1).float())


# --------------------------------------------------------------------------- memory
_SMALLER = {
    "large": "medium", "medium": "small", "melody-large": "melody", "melody": "small",
    "stereo-large": "stereo-medium", "stereo-medium": "stereo-small",
    "stereo-melody-large": "stereo-melody", "stereo-melody": "stereo-small",
}  # fmt: skip


def cache_bytes(model, rows: int, positions: int, dtype: torch.dtype) -> int:
    """Bytes of the static key/value cache for ``rows`` batch rows and ``positions`` positions."""
    cfg = model.config.decoder
    return (
        2
        * cfg.num_hidden_layers
        * rows
        * cfg.hidden_size
        * positions
        * torch.empty((), dtype=dtype).element_size()
    )


def oom_message(s, batch: int = 1, duration: float | None = None) -> str:
    """A clear out-of-memory message naming a smaller model or dtype to try.

    Parameters
    ----------
    s : MusicGen
        The session that ran out of memory.
    batch : int
        Prompts in the failed call.
    duration : float, optional
        Seconds requested in the failed call.

    Returns
    -------
    str
        What the model's weights and this call's cache need, what the device
        has, and the next things to try (half precision, a smaller model,
        fewer prompts, a shorter duration).

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> from musicgen_nb.engine import oom_message
    >>> "out of memory" in oom_message(mg.load("tiny"), batch=2, duration=8.0)
    True
    """
    model = s.model
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    weights += sum(b.numel() * b.element_size() for b in model.buffers())
    dtype = getattr(s, "dtype", torch.float32)
    frames = round((duration or getattr(s, "max_duration", 30.0)) * getattr(s, "frame_rate", 50))
    frames = min(frames, getattr(s, "max_frames", frames))
    rows = 2 * batch  # guidance: conditional + unconditional rows
    kv = cache_bytes(model, rows, frames + getattr(s, "num_codebooks", 4), dtype)
    device = getattr(s, "device", torch.device("cpu"))
    have = ""
    if device.type == "cuda" and torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info(device)
        have = f"; the GPU has {total / 1e9:.1f} GB ({free / 1e9:.1f} GB free now)"
    name = str(getattr(s, "name", "this model")).removeprefix("facebook/musicgen-")
    precision = getattr(s, "precision", "fp32")
    tips = []
    if precision == "fp32":
        half = "fp16" if device.type == "cuda" else "bf16"
        tips.append(f"half precision (mg.load({name!r}, precision={half!r}) halves the weights)")
    if name in _SMALLER:
        tips.append(f"a smaller model (mg.load({_SMALLER[name]!r}))")
    if batch > 1:
        tips.append(f"fewer prompts per call (now {batch})")
    if duration is not None:
        tips.append(f"a shorter duration (now {duration:g} s)")
    if device.type == "cuda":
        tips.append("device='cpu' (slow, but bounded by RAM)")
    return (
        f"out of memory running {name!r} in {precision} on {device.type}: weights {weights / 1e9:.2f} GB "
        f"+ key/value cache {kv / 1e9:.2f} GB for {batch} prompt(s) x {frames} frames{have}. Try "
        + ", or ".join(tips)
        + "."
    )
