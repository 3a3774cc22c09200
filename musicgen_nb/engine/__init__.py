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
  layers in one function compiled by TorchScript
  (:func:`~musicgen_nb.engine.layers.run_layers`): no ``nn.Module`` calls and
  no Python between the ~30 small ops of a layer;
* on the CPU runs an fp32 linear as ``W @ x.T``, which MKL served from its
  matrix-vector path at ~30 GB/s where ``F.linear`` with 2 rows got 7-10 GB/s on
  an AMD EPYC (same arithmetic, so the same tokens as transformers in practice;
  the tests check it). On an Intel Xeon it is the other way round (28 against 13
  GB/s a thread): there the static step, always ``F.linear``, is 1.6x faster in
  fp32 (:func:`~musicgen_nb.engine.layers.fast_mm_ok`);
* with int8 weights (:mod:`musicgen_nb.engine.quantize`) calls our C++ int8 linear
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

Two steps run these layers (``mg.load(step=...)``, kept as ``s.step``): the
dynamic step above, and the static-shape step of :mod:`.static` (one cache reused
across windows and calls, a mask opened in place, the position as a device tensor,
fused q/k/v and lm_heads, CUDA graphs on CUDA). On the CPU, :mod:`.threads` keeps
the step near its fastest thread count when other processes compete for cores.

Modules: :mod:`.decoder` (the loop's state), :mod:`.layers` (the compiled layer
stack), :mod:`.table` (the weight table), :mod:`.static`, :mod:`.static_layers`
and :mod:`.graphs` (the static step, its layers, its shape buckets and graphs),
:mod:`.threads`, :mod:`.tuner` and :mod:`.cores` (adaptive threads: the
process-wide count, the tuner's decisions, the crowd on the cores), :mod:`.sampling` (guidance, warpers,
sampling, traces), :mod:`.quantize` and :mod:`.lowbit` (int8 and 4-bit weights),
:mod:`.memory` (cache size, the out-of-memory message).
"""

from .decoder import Conditioning, Decoder
from .memory import cache_bytes, oom_message
from .quantize import (
    Int4Linear,
    Int8Linear,
    fbgemm_available,
    int4_unavailable,
    kernel_available,
    linear_bytes,
    quantize_int4,
    quantize_int8,
)
from .sampling import (
    EXTREME_SCALE,
    EXTREME_TEMPERATURE,
    Sampler,
    StepRecord,
    guide,
    record,
    sample,
    warp,
)

__all__ = [
    "Conditioning", "Decoder", "Sampler", "StepRecord", "guide", "record", "sample", "warp",
    "EXTREME_SCALE", "EXTREME_TEMPERATURE", "cache_bytes", "oom_message", "Int8Linear",
    "Int4Linear", "quantize_int8", "quantize_int4", "kernel_available", "fbgemm_available",
    "int4_unavailable", "linear_bytes",
]  # fmt: skip
