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

* looks every layer's weights up once per :class:`Decoder` (no ``nn.Module``
  calls per step);
* on the CPU runs an fp32 linear as ``W @ x.T``, which MKL serves from its
  matrix-vector path at ~30 GB/s where ``F.linear`` with 2 rows gets 7-10 GB/s
  (same arithmetic, so the same tokens as transformers in practice; the tests
  check it);
* with int8 weights (:mod:`musicgen_nb.quantize`) calls fbgemm directly, one
  fused GEMM for each self-attention's q/k/v and one for the four lm_heads;
* computes cross-attention keys and values once, with zero values for the
  rows that attend nowhere (the unconditional branch), instead of masking the
  output at every step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


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


def _norm_fn(module):
    """``f(x) -> layer_norm(x)`` without the nn.Module call overhead."""
    if type(module) is torch.nn.LayerNorm:
        shape, w, b, eps = module.normalized_shape, module.weight, module.bias, module.eps
        return lambda x: F.layer_norm(x, shape, w, b, eps)
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


@dataclass
class _Layer:
    """One decoder layer's callables, looked up once per :class:`Decoder`."""

    qkv: object  # fused q/k/v projection (int8) or None
    self_norm: object
    q: object
    k: object
    v: object
    out: object
    cross_norm: object
    cross_q: object
    cross_out: object
    final_norm: object
    fc1: object
    fc2: object
    act: object


def _layer_plan(layer) -> _Layer:
    act = layer.activation_fn
    if type(act).__name__ == "GELUActivation" and getattr(act, "act", None) is F.gelu:
        act = F.gelu
    cross = getattr(layer, "encoder_attn", None)
    attn = layer.self_attn
    fused = _fused_parts([attn.q_proj, attn.k_proj, attn.v_proj])
    return _Layer(
        qkv=_linear_fn(fused) if fused is not None else None,
        self_norm=_norm_fn(layer.self_attn_layer_norm),
        q=_linear_fn(layer.self_attn.q_proj),
        k=_linear_fn(layer.self_attn.k_proj),
        v=_linear_fn(layer.self_attn.v_proj),
        out=_linear_fn(layer.self_attn.out_proj),
        cross_norm=_norm_fn(layer.encoder_attn_layer_norm) if cross is not None else None,
        cross_q=_linear_fn(cross.q_proj) if cross is not None else None,
        cross_out=_linear_fn(cross.out_proj) if cross is not None else None,
        final_norm=_norm_fn(layer.final_layer_norm),
        fc1=_linear_fn(layer.fc1),
        fc2=_linear_fn(layer.fc2),
        act=act,
    )


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

    Notes
    -----
    Each step runs the layers' weights directly (no ``nn.Module`` calls):
    on the CPU an fp32/bf16 linear is ``W @ x.T`` (MKL's fast matrix-vector
    path for a few rows), an :class:`~musicgen_nb.quantize.Int8Linear` calls
    fbgemm directly, and anything else is called as a module. The keys and
    values of each step are written into a cache allocated once.
    """

    def __init__(self, model, cond: Conditioning, max_len: int, capture: dict | None = None):
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
        shape = (len(self.layers), rows, self.heads, total, self.head_dim)
        self.k_cache = torch.zeros(shape, dtype=self.dtype, device=self.device)
        self.v_cache = torch.zeros(shape, dtype=self.dtype, device=self.device)
        self.k_layers, self.v_layers = list(self.k_cache.unbind(0)), list(self.v_cache.unbind(0))
        self.pos = 0
        self.positions = self._positions(total)
        self.plan = [_layer_plan(layer) for layer in self.layers]
        self.embeddings = [e.weight for e in dec.embed_tokens]
        self.final_norm = _norm_fn(dec.layer_norm)
        fused = _fused_parts(list(self.lm.lm_heads))
        self.heads_fused = _linear_fn(fused) if fused is not None else None
        self.lm_heads = [_linear_fn(h) for h in self.lm.lm_heads]
        self.capture = capture
        self.captured_self: dict[int, list] = {}
        self.captured_cross: dict[int, list] = {}
        self.cross_bias = None
        self.cross_kv = None if cond.prefix else self._cross_kv()
        if cond.prefix:
            self._forward(cond.hidden.to(self.dtype), need_logits=False)

    def _positions(self, total: int) -> torch.Tensor:
        emb = self.dec.embed_positions
        if emb.weights.shape[0] < total:
            emb.make_weights(total, emb.embedding_dim)
        return emb.weights[:total].to(device=self.device, dtype=self.dtype)

    def _cross_kv(self):
        """Pre-compute every layer's cross-attention keys and values once."""
        h = self.cond.hidden.to(self.dtype)
        rows, length, _ = h.shape
        out = []
        for layer in self.layers:
            attn = layer.encoder_attn
            k = attn.k_proj(h).view(rows, length, self.heads, self.head_dim).transpose(1, 2)
            v = attn.v_proj(h).view(rows, length, self.heads, self.head_dim).transpose(1, 2)
            out.append((k, v))
        mask = self.cond.mask
        bias = torch.zeros(rows, 1, 1, length, dtype=self.dtype, device=self.device)
        bias.masked_fill_(~mask[:, None, None, :], torch.finfo(self.dtype).min)
        # A row with nothing to attend to (the unconditional branch) attends nowhere:
        # its output is 0. Zero values give exactly that (uniform weights times 0),
        # without a masked_fill per layer and step.
        empty = ~mask.any(dim=1)
        if bool(empty.any()):
            out = [(k, v.masked_fill(empty[:, None, None, None], 0.0)) for k, v in out]
        self.cross_bias = bias
        return out

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """Sum of the per-codebook embeddings of ``tokens`` ``[R, K, n]``."""
        w = self.embeddings
        x = F.embedding(tokens[:, 0], w[0])
        for k in range(1, tokens.shape[1]):
            x = x + F.embedding(tokens[:, k], w[k])
        return x.to(self.dtype)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed ``tokens`` ``[R, K, n]`` at the next positions; return last logits ``[R, K, V]``."""
        return self._forward(self.embed(tokens), need_logits=True)

    def _attend(self, q, k, v, layer_idx, kind, bias=None, causal=False):
        cap = self.capture
        if cap is None or layer_idx not in cap["layers"]:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, is_causal=causal)
        scores = (q @ k.transpose(-1, -2)) * self.scaling
        if bias is not None:
            scores = scores + bias
        if causal:
            n, m = q.shape[-2], k.shape[-2]
            mask = torch.ones(n, m, dtype=torch.bool, device=q.device).tril(m - n)
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = scores.float().softmax(-1)
        rows = cap["rows"]
        w = weights[:rows]
        w = w[:, cap["heads"]] if cap.get("heads") is not None else w
        store = self.captured_self if kind == "self" else self.captured_cross
        store.setdefault(layer_idx, []).append(w.mean(1).to(torch.float16).cpu())
        return weights.to(v.dtype) @ v

    def _forward(self, x: torch.Tensor, *, need_logits: bool):
        rows, n, dim = x.shape
        heads, hd = self.heads, self.head_dim
        start = self.pos
        end = start + n
        x = (x + self.positions[start:end]).reshape(rows * n, dim)
        causal = n > 1
        bias = None
        if causal and start > 0:  # a chunk after earlier positions: explicit mask
            mask = torch.ones(n, end, dtype=torch.bool, device=x.device).tril(start)
            bias, causal = _bias(mask, x.dtype), False
        sdpa = F.scaled_dot_product_attention
        capture = self.capture["layers"] if self.capture is not None else ()
        cross_kv, cross_bias = self.cross_kv, self.cross_bias
        for i, (L, kc, vc) in enumerate(zip(self.plan, self.k_layers, self.v_layers, strict=True)):
            h = L.self_norm(x)
            if L.qkv is not None:
                q, k, v = L.qkv(h).split(dim, dim=-1)
            else:
                q, k, v = L.q(h), L.k(h), L.v(h)
            q = q.reshape(rows, n, heads, hd).transpose(1, 2)
            kc[:, :, start:end] = k.reshape(rows, n, heads, hd).transpose(1, 2)
            vc[:, :, start:end] = v.reshape(rows, n, heads, hd).transpose(1, 2)
            k = kc[:, :, :end]
            v = vc[:, :, :end]
            if i in capture:
                o = self._attend(q, k, v, i, "self", bias=bias, causal=causal)
            else:
                o = sdpa(q, k, v, attn_mask=bias, is_causal=causal)
            x = x + L.out(o.transpose(1, 2).reshape(rows * n, dim))
            if cross_kv is not None:
                h = L.cross_norm(x)
                q = L.cross_q(h).reshape(rows, n, heads, hd).transpose(1, 2)
                ck, cv = cross_kv[i]
                if i in capture:
                    o = self._attend(q, ck, cv, i, "cross", bias=cross_bias)
                else:
                    o = sdpa(q, ck, cv, attn_mask=cross_bias)
                x = x + L.cross_out(o.transpose(1, 2).reshape(rows * n, dim))
            x = x + L.fc2(L.act(L.fc1(L.final_norm(x))))
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


def guide(
    logits: torch.Tensor, batch: int, sampler: Sampler
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Combine the guidance branches of ``logits`` ``[branches*B, K, V]``.

    Two branches (conditional, unconditional): ``u + s * (c - u)``, as in
    transformers. Three branches (text+melody, melody only, none; audiocraft's
    double CFG): ``u + s * (m + beta * (c - m) - u)``.

    Returns the guided logits ``[B, K, V]`` and the conditional and unconditional
    logits (None without guidance).
    """
    branches = logits.shape[0] // batch
    if branches == 1:
        return logits, None, None
    cond, *rest = logits.split(batch)
    uncond = rest[-1]
    if branches == 3:
        melody_only = rest[0]
        target = melody_only + sampler.cfg_coef_beta * (cond - melody_only)
        return uncond + sampler.guidance_scale * (target - uncond), cond, uncond
    return uncond + (cond - uncond) * sampler.guidance_scale, cond, uncond


def warp(logits: torch.Tensor, sampler: Sampler) -> torch.Tensor:
    """Temperature, then top-k, then top-p (nucleus), like transformers' warpers."""
    if sampler.temperature != 1.0:
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


def sample(logits: torch.Tensor, sampler: Sampler, generator: torch.Generator | None):
    """Draw one token per row of ``logits`` ``[B, K, V]``; return tokens and probs."""
    probs = logits.float().softmax(-1)
    b, k, v = probs.shape
    if sampler.do_sample:
        tokens = torch.multinomial(probs.view(b * k, v), 1, generator=generator).view(b, k)
    else:
        tokens = probs.argmax(-1)
    return tokens, probs


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
        lc = (cond.float() / temperature).log_softmax(-1)
        lu = (uncond.float() / temperature).log_softmax(-1)
        rec.kl.append((lc.exp() * (lc - lu)).sum(-1))


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
