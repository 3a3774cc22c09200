"""Where a decode step's time goes: torch.profiler over the engine's decode loop.

Runs ``--steps`` decode steps of the engine (batch 1 with guidance: two rows,
greedy tokens fed back) at one precision, first timed, then under
``torch.profiler``, and prints the time per step split into:

* **linears**: the decoder's GEMMs (fbgemm int8, or MKL fp32/bf16), with the
  bytes of weights they read per step and the bandwidth that implies;
* **self-attention** over the key/value cache (grows with every step), with the
  cache bytes read per step on average and the bandwidth (int8 models: the
  fused kernel of ``musicgen_nb/_kernels.py`` over the int8 cache, which also
  writes the step's keys and values);
* **cross-attention** over the text states (constant);
* **the rest**: layer norms, GELU, residual adds, cache writes, embeddings,
  lm_heads, and the TorchScript interpreter between the ops.

The linears and the attention are read from the profiled run (the profiler's
own cost of ~1 us an op is small beside them); "the rest" is what they leave
of the timed, unprofiled step.

Examples
--------
    python benchmarks/profile_step.py --precision int8 --steps 250
    python benchmarks/profile_step.py --precision int8 --steps 503   # 10 s of audio
    python benchmarks/profile_step.py --model tiny --steps 20        # smoke test
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

PROMPT = "lo-fi hip hop beat with warm piano chords"
LINEAR_OPS = (
    "quantized::linear_dynamic",
    "musicgen_nb::linear_int8",
    "aten::mm",
    "aten::addmm",
    "aten::linear",
    "aten::matmul",
)
SDPA = "aten::_scaled_dot_product_flash_attention_for_cpu"
KERNEL = "musicgen_nb::attend_int8"  # int8 models: the fused self-attention kernel
CROSS_KERNEL = "musicgen_nb::attend_cross"  # int8 models: cross-attention of a step


def _decode(s, cond, steps: int) -> None:
    import torch

    from musicgen_nb.engine import Decoder

    dec = Decoder(s.model, cond, max_len=steps + 1)
    tok = torch.full((cond.hidden.shape[0], s.num_codebooks, 1), s.special_id, device=s.device)
    with torch.inference_mode():
        for _ in range(steps):
            tok = dec.step(tok).argmax(-1)[:, :, None]


def _weight_bytes(model) -> int:
    """Bytes of decoder weights one step reads (cross-attention k/v are computed once)."""
    from musicgen_nb.engine.quantize import linear_bytes

    dec = model.decoder
    once = ("encoder_attn.k_proj", "encoder_attn.v_proj")
    return linear_bytes(dec) - sum(
        linear_bytes(m) for name, m in dec.named_modules() if name.endswith(once)
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="small", help="architecture (random weights) or 'tiny'")
    ap.add_argument("--precision", default="int8", help="fp32 | bf16 | int8 | int4")
    ap.add_argument("--steps", type=int, default=250, help="decode steps (50 = 1 s of audio)")
    ap.add_argument("--top", type=int, default=12, help="rows of the per-op table")
    args = ap.parse_args(argv)
    if args.steps < 2:
        ap.error(f"--steps must be >= 2, got {args.steps}")

    import torch
    from torch.profiler import profile

    import musicgen_nb as mg
    from musicgen_nb.conditioning import conditioning

    warnings.simplefilter("ignore")
    tiny = args.model.startswith("tiny")
    s = mg.load(args.model, precision=args.precision, random_weights=not tiny)
    cond = conditioning(s, [PROMPT], negative=None, guidance_scale=3.0)
    _decode(s, cond, 20)  # warm-up: TorchScript's profiling runs, allocator
    t = time.perf_counter()
    _decode(s, cond, args.steps)
    step_ms = (time.perf_counter() - t) / args.steps * 1e3
    # Input shapes tell self- from cross-attention where both run in SDPA. With the
    # int8 kernels they are separate ops, and recording shapes would cost GBs: every
    # call of the TorchScript helpers takes the layers' weight lists.
    fc1 = s.model.decoder.model.decoder.layers[0].fc1
    shapes = getattr(fc1, "backend", None) != "kernel"
    with profile(record_shapes=shapes) as prof:
        _decode(s, cond, args.steps)

    text_len = cond.hidden.shape[1]
    parts = dict(linears=0.0, self_attention=0.0, cross_attention=0.0)
    for e in prof.key_averages(group_by_input_shape=shapes):
        if e.key in LINEAR_OPS:
            parts["linears"] += e.self_cpu_time_total
        elif e.key == KERNEL:
            parts["self_attention"] += e.self_cpu_time_total
        elif e.key == CROSS_KERNEL:
            parts["cross_attention"] += e.self_cpu_time_total
        elif e.key == SDPA:
            keys = e.input_shapes[1][2] if e.input_shapes and len(e.input_shapes[1]) == 4 else -1
            kind = "cross_attention" if keys == text_len and not s.is_melody else "self_attention"
            parts[kind] += e.self_cpu_time_total
    # The big ops' profiled times hold; the profiler's own cost lands on the
    # ~1000 small ops a step, so "rest" is what the timed step leaves over.
    parts = {k: v / 1e3 / args.steps for k, v in parts.items()}  # ms per step
    parts["rest"] = max(0.0, step_ms - sum(parts.values()))

    cfg = s.model.config.decoder
    rows = cond.hidden.shape[0]
    # bytes per cached key (or value) element: int8 models keep int8 plus one
    # float32 scale per position and head
    elem = torch.empty((), dtype=s.dtype).element_size()
    if args.precision in ("int8", "int4"):
        elem = 1 + 4 * cfg.num_attention_heads / cfg.hidden_size
    kv_bytes = 2 * cfg.num_hidden_layers * rows * cfg.hidden_size * elem * (args.steps + 1) / 2
    wb = _weight_bytes(s.model)
    print(
        f"model={args.model} precision={args.precision} steps={args.steps} rows={rows} "
        f"threads={torch.get_num_threads()}: {1e3 / step_ms:.1f} steps/s, {step_ms:.2f} ms/step"
    )
    print(f"{'part':<17}{'ms/step':>8}{'share':>7}  read per step")
    for name, ms in parts.items():
        note = ""
        if name == "linears":
            note = f"{wb / 1e6:.0f} MB of weights -> {wb / ms / 1e6:.1f} GB/s"
        elif name == "self_attention":
            note = f"{kv_bytes / 1e6:.0f} MB of keys/values on average -> {kv_bytes / ms / 1e6:.1f} GB/s"
        print(f"{name:<17}{ms:>8.3f}{ms / step_ms:>7.0%}  {note}")
    if sum(parts.values()) > step_ms:
        print(
            "note: the profiled parts exceed the timed step: the profiler's own cost per op "
            "outweighs ops this small, so read the split on a full-size model"
        )
    print()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
