"""The decode loop's state: a MusicGen decoder run step by step over a static key/value cache.

:class:`Decoder` looks every layer's weights up once (:mod:`musicgen_nb.engine.table`),
allocates the key/value cache once, computes the cross-attention keys and values
once, and runs all the layers of a step in one compiled function
(:mod:`musicgen_nb.engine.layers`).
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from .. import _kernels
from . import threads
from .cores import CoreMeter
from .layers import compiled, linear_fn
from .table import INT8, KERNEL, fused_parts, weight_table

if TYPE_CHECKING:
    from typing import Any

__all__ = ["Conditioning", "Decoder"]


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

    Examples
    --------
    >>> import torch
    >>> c = Conditioning(torch.zeros(2, 3, 8), torch.ones(2, 3, dtype=torch.bool), False, 2)
    >>> c.hidden.shape[0] // c.branches  # batch items
    1
    """

    hidden: torch.Tensor
    mask: torch.Tensor | None
    prefix: bool
    branches: int


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
    The layers run in :func:`~musicgen_nb.engine.layers.run_layers`, compiled by
    TorchScript, from a table of their weights looked up once here: on the CPU
    an fp32 linear is ``W @ x.T`` (MKL's fast matrix-vector path for a few
    rows), an :class:`~musicgen_nb.engine.quantize.Int8Linear` calls fbgemm
    directly. The keys and values of each step are written into a cache
    allocated once: in the model's dtype, or for int8 models as int8 with one
    scale per position and head (a quarter of the fp32 bytes; KL to fp32 stays
    < 0.01, see ``benchmarks/bench_generate.py``).

    Examples
    --------
    >>> import torch, musicgen_nb as mg
    >>> from musicgen_nb.conditioning import conditioning
    >>> s = mg.load("tiny")
    >>> cond = conditioning(s, ["jazz"], negative=None, guidance_scale=3.0)
    >>> dec = Decoder(s.model, cond, max_len=8)
    >>> bos = torch.full((2, 4, 1), s.special_id)
    >>> dec.step(bos).shape  # guidance rows, codebooks, vocabulary
    torch.Size([2, 4, 2048])
    """

    @torch.inference_mode()
    def __init__(
        self,
        model: Any,
        cond: Conditioning,
        max_len: int,
        capture: dict | None = None,
        kernels: bool | None = None,
    ) -> None:
        self.lm = model.decoder  # MusicgenForCausalLM
        dec = self.lm.model.decoder
        self.dec = dec
        self.layers = list(dec.layers)
        self.cond = cond
        first = self.layers[0].self_attn
        self.heads, self.head_dim = first.num_heads, first.head_dim
        self.scaling = first.scaling
        self.rows = cond.hidden.shape[0]
        param = next(p for p in self.lm.parameters() if p.is_floating_point())
        self.dtype = param.dtype
        self.device = cond.hidden.device
        self.offset = cond.hidden.shape[1] if cond.prefix else 0
        self.total = self.offset + max_len
        self.table = weight_table(self.layers)
        # int8 models (kernel or fbgemm) keep int8 keys/values, one scale per position
        # and head. (Dequantized int8 weights, where neither exists: no kernel either.)
        self.kv_int8 = self.table.mode in (INT8, KERNEL)
        self.kernels = self._use_kernels(kernels)
        self._allocate_cache()
        self.pos = 0
        self.positions = self._positions(self.total)
        self.embeddings = [e.weight for e in dec.embed_tokens]
        ln = dec.layer_norm
        self.final_norm = lambda x: F.layer_norm(x, ln.normalized_shape, ln.weight, ln.bias, ln.eps)
        fused = fused_parts(list(self.lm.lm_heads))
        self.heads_fused = linear_fn(fused) if fused is not None else None
        self.lm_heads = [linear_fn(h) for h in self.lm.lm_heads]
        self.capture = capture
        self.capture_layers = sorted(capture["layers"]) if capture is not None else []
        self.captured_self: dict[int, list] = {}
        self.captured_cross: dict[int, list] = {}
        # Melody models have no cross-attention: their conditioning is a prefix.
        self.cross_k, self.cross_v, self.cross_bias = (
            ([], [], None) if cond.prefix else self._cross_kv()
        )
        self.run = compiled()
        self.tuner = threads.tuner_for(self.lm, self.device)
        self.meter: CoreMeter | None = None  # set while counted in (see _enter)
        self.threads: int | None = None  # the count to put back, while this decode is counted in
        if cond.prefix:
            self._forward(cond.hidden.to(self.dtype), need_logits=False)

    def _use_kernels(self, kernels: bool | None) -> bool:
        """Whether a step's attention runs in the C++ kernels (checking an explicit request)."""
        if kernels is None:
            return bool(self.kv_int8 and self.device.type == "cpu" and _kernels.load())
        if kernels and not (self.kv_int8 and self.device.type == "cpu" and _kernels.load()):
            raise ValueError(
                f"kernels=True needs an int8 model on the CPU and a built kernel "
                f"(int8: {self.kv_int8}, device: {self.device.type}, kernel: {_kernels.status()['reason']})"
            )
        return bool(kernels)

    def _allocate_cache(self) -> None:
        """The key/value cache of every layer, and for int8 its scales, allocated once."""
        self._kv_cache(
            lambda name, shape, dtype: torch.zeros(shape, dtype=dtype, device=self.device)
        )

    def _kv_cache(self, allocate) -> None:
        """The cache from ``allocate(name, shape, dtype)`` (fresh zeros, or a pool's buffers)."""
        shape = (len(self.layers), self.rows, self.heads, self.total, self.head_dim)
        kv_dtype = torch.int8 if self.kv_int8 else self.dtype
        self.k_cache = allocate("k", shape, kv_dtype)
        self.v_cache = allocate("v", shape, kv_dtype)
        self.k_layers, self.v_layers = list(self.k_cache.unbind(0)), list(self.v_cache.unbind(0))
        self.k_scales: list[torch.Tensor] = []
        self.v_scales: list[torch.Tensor] = []
        if self.kv_int8:
            scales = allocate("scales", (2, *shape[:-1]), torch.float32)
            self.k_scales, self.v_scales = list(scales[0].unbind(0)), list(scales[1].unbind(0))

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
        """Sum of the per-codebook embeddings of ``tokens`` ``[R, K, n]``: ``[R, n, hidden]``.

        Examples
        --------
        >>> import torch, musicgen_nb as mg
        >>> from musicgen_nb.conditioning import conditioning
        >>> s = mg.load("tiny")
        >>> cond = conditioning(s, ["jazz"], negative=None, guidance_scale=3.0)
        >>> dec = Decoder(s.model, cond, max_len=8)
        >>> dec.embed(torch.zeros(2, 4, 3, dtype=torch.long)).shape  # tiny's hidden size: 64
        torch.Size([2, 3, 64])
        """
        w = self.embeddings
        x = F.embedding(tokens[:, 0], w[0])
        for k in range(1, tokens.shape[1]):
            x = x + F.embedding(tokens[:, k], w[k])
        return x.to(self.dtype)

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed ``tokens`` ``[R, K, n]`` at the next positions; return last logits ``[R, K, V]``.

        On the CPU a single position runs with the thread count of this decoder's
        :class:`~musicgen_nb.engine.threads.ThreadTuner`, which it feeds the step's
        time, while this is the only decode running (:func:`~musicgen_nb.engine.threads.steer`).
        The count stays set between steps (setting it around every step cost
        more than it saved: 27 against 165 steps/s on a busy machine); the window's
        last step, or :meth:`finish`, puts back the count read at the window's start.
        """
        tuner = self.tuner
        if tuner is None or tokens.shape[-1] != 1:
            return self._forward(self.embed(tokens), need_logits=True)
        if self.threads is None:
            self._enter()
        tuner = self.tuner
        acting = threads.steer(tuner.count)
        start = time.perf_counter()
        out = self._forward(self.embed(tokens), need_logits=True)
        if acting:
            seconds = time.perf_counter() - start
            meter = self.meter  # one read a step: the crowd since the last step, as CPU-seconds
            tuner.observe(seconds, None if meter is None else meter.rate() * seconds)
        if self.pos >= self.total - 1:  # the last position the loop feeds
            self.finish()
        return out

    def _enter(self) -> None:
        """Count this decode in; a tuner for the count read now, its baseline reset."""
        self.threads = threads.enter()
        self._leave = weakref.finalize(
            self, threads.leave
        )  # a decoder dropped unfinished leaves too
        self.tuner = threads.tuner_for(self.lm, self.device, self.threads) or self.tuner
        self.tuner.begin()
        self.meter = CoreMeter.open() if threads.metered() else None

    def finish(self) -> None:
        """The window is over (or stopped, or failed): put back the thread count it found.

        Idempotent; ``run_window`` calls it in a ``finally``.

        Examples
        --------
        >>> import torch, musicgen_nb as mg
        >>> from musicgen_nb.conditioning import conditioning
        >>> s = mg.load("tiny")
        >>> before = torch.get_num_threads()
        >>> dec = Decoder(s.model, conditioning(s, ["jazz"], negative=None, guidance_scale=3.0), max_len=8)
        >>> _ = dec.step(torch.full((2, 4, 1), s.special_id))
        >>> dec.finish(); dec.finish(); torch.get_num_threads() == before
        True
        """
        if self.threads is not None:
            self.threads = None
            self._leave()  # runs threads.leave once

    def _forward(self, x: torch.Tensor, *, need_logits: bool):
        rows, n, dim = x.shape
        start = self.pos
        end = start + n
        x = (x + self.positions[start:end]).reshape(rows * n, dim)
        causal = n > 1
        bias = None
        if causal and start > 0:  # a chunk after earlier positions: explicit mask
            bias, causal = self._chunk_bias(start, n, end, x.dtype), False
        layers, t = self.capture_layers, self.table
        with torch.jit.optimized_execution(False):  # the ops as written: no fusion passes
            x, kept_self, kept_cross = self.run(
                x, rows, start, self.heads, t.norms, t.eps, t.mode, t.fused_qkv, t.packed, t.weights,
                t.biases, t.scales, t.reduce_range, self.k_layers, self.v_layers, self.k_scales, self.v_scales,
                self.kernels, self.cross_k, self.cross_v,
                self.cross_bias, bias, causal, layers, self.scaling,
            )  # fmt: skip
        self._keep(kept_self, kept_cross)
        self.pos = end
        if not need_logits:
            return None
        h = self.final_norm(x.reshape(rows, n, dim)[:, -1])
        if self.heads_fused is not None:
            return self.heads_fused(h).view(rows, len(self.lm_heads), -1)
        return torch.stack([head(h) for head in self.lm_heads], dim=1)  # [R, K, V]

    def _chunk_bias(self, start: int, n: int, width: int, dtype) -> torch.Tensor:
        """``[n, width]`` additive mask: position ``start + r`` sees every position up to itself."""
        mask = torch.ones(n, width, dtype=torch.bool, device=self.device).tril(start)
        return _bias(mask, dtype)

    def _keep(self, kept_self: list, kept_cross: list) -> None:
        """Store the captured layers' attention weights of this step (head-averaged, fp16).

        They stay on the device: :func:`musicgen_nb.attention.collect` moves them all
        to the host in one transfer (no host sync per layer and step).
        """
        cap, layers = self.capture, self.capture_layers
        for store, kept in ((self.captured_self, kept_self), (self.captured_cross, kept_cross)):
            for i, w in zip(layers, kept, strict=False):
                w = w[: cap["rows"]]
                w = w[:, cap["heads"]] if cap.get("heads") is not None else w
                store.setdefault(i, []).append(w.mean(1).to(torch.float16))


def _bias(mask: torch.Tensor, dtype) -> torch.Tensor:
    bias = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
    return bias.masked_fill(~mask, torch.finfo(dtype).min)
