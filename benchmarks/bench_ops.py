"""Micro-benchmarks of the decode step's two big parts, alternating in one process.

* ``attention``: 24 layers of single-query self-attention over a cache of
  ``--positions`` (musicgen-small: 2 rows, 16 heads of 64), PyTorch's
  ``scaled_dot_product_attention`` over fp32 keys/values against the fused int8
  kernel of ``musicgen_nb/_kernels.py``.
* ``gemm``: the int8 linear options for 2 rows on musicgen-small's shapes
  (fbgemm, ``_weight_int8pack_mm``, ``_weight_int4pack_mm_for_cpu`` (int4,
  groups of 128), fbgemm fp16, oneDNN int8, MKL fp32), each over 12 different
  matrices so that they come from memory, with the relative error of one layer.
  Our C++ int8 linear (``musicgen_nb._kernels.linear_int8``) is the first row
  where it builds. Each line also gives the bytes of int8 weights read per second.
* ``bandwidth``: the machine's memory read bandwidth (a 1 GB float32 sum, and a
  1 GB int8 chain of our int8 linear): the ceiling for a decode step that reads
  every weight once.

Each figure is the best of ``--reps`` rounds; the options run in turn in every
round, so their ratios hold on a busy machine.

Examples
--------
    python benchmarks/bench_ops.py attention --positions 250,500,1000,1500
    python benchmarks/bench_ops.py gemm
    python benchmarks/bench_ops.py bandwidth
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings


def _best(fns: dict, n: int, reps: int) -> dict:
    best = {k: float("inf") for k in fns}
    for f in fns.values():
        f()
    for _ in range(reps):
        for k, f in fns.items():
            t = time.perf_counter()
            for _ in range(n):
                f()
            best[k] = min(best[k], (time.perf_counter() - t) / n)
    return best


def attention(args) -> None:
    import torch
    import torch.nn.functional as F

    from musicgen_nb import _kernels

    if not _kernels.load():
        sys.exit(f"the kernel did not build: {_kernels.status()['reason']}")
    rows, heads, hd, layers = 2, 16, 64, 24
    positions = [int(p) for p in args.positions.split(",")]
    total = max(positions) + 1
    kf = [torch.randn(rows, heads, total, hd) for _ in range(layers)]
    vf = [torch.randn(rows, heads, total, hd) for _ in range(layers)]
    k8 = [
        torch.randint(-127, 128, (rows, heads, total, hd), dtype=torch.int8) for _ in range(layers)
    ]
    v8 = [x.clone() for x in k8]
    ks = [torch.rand(rows, heads, total) * 0.01 for _ in range(layers)]
    vs = [x.clone() for x in ks]
    op = torch.ops.musicgen_nb.attend_int8
    print(f"{'positions':>9}{'sdpa fp32 ms':>14}{'kernel int8 ms':>16}{'ratio':>7}")
    for pos in positions:
        q = torch.randn(rows, heads, 1, hd)
        qkv = torch.randn(rows, 3 * heads * hd)
        a, b, c = qkv.split(heads * hd, dim=1)

        def sdpa(pos=pos, q=q):
            for i in range(layers):
                F.scaled_dot_product_attention(q, kf[i][:, :, : pos + 1], vf[i][:, :, : pos + 1])

        def kernel(pos=pos, a=a, b=b, c=c):
            for i in range(layers):
                op(a, b, c, k8[i], ks[i], v8[i], vs[i], pos, 0.125)

        t = _best({"sdpa": sdpa, "kernel": kernel}, 5, args.reps)
        print(
            f"{pos:>9}{t['sdpa'] * 1e3:>14.2f}{t['kernel'] * 1e3:>16.2f}{t['sdpa'] / t['kernel']:>7.2f}"
        )


def gemm(args) -> None:
    for out, inn in [(3072, 1024), (1024, 1024), (4096, 1024), (1024, 4096)]:
        _gemm_shape(out, inn, args)


def _gemm_shape(out: int, inn: int, args) -> None:
    import torch

    from musicgen_nb import _kernels
    from musicgen_nb.engine.lowbit import prepack
    from musicgen_nb.engine.quantize import Int8Linear

    count, gs = 12, 128
    ws = [torch.randn(out, inn) * 0.02 for _ in range(count)]
    x = torch.randn(2, inn)
    xb = x.bfloat16()
    lins = [Int8Linear(weight=w, bias=torch.zeros(out)) for w in ws]
    q8 = [lin.int8_weight() for lin in lins]
    fb = [prepack(q, lin.scale, lin.bias) for q, lin in zip(q8, lins, strict=True)]
    int4 = []
    for w in ws:
        wg = w.reshape(out, inn // gs, gs)
        lo, hi = wg.amin(-1, keepdim=True), wg.amax(-1, keepdim=True)
        scale = ((hi - lo) / 15).clamp_min(1e-8)
        qi = torch.clamp(torch.round((wg - lo) / scale), 0, 15).to(torch.int32).reshape(out, inn)
        sz = torch.stack([scale[..., 0], (lo + 8 * scale)[..., 0]], -1).transpose(0, 1).contiguous()
        int4.append((torch.ops.aten._convert_weight_to_int4pack_for_cpu(qi, 1), sz, sz.bfloat16()))
    fp16 = [torch.ops.quantized.linear_prepack_fp16(w, None) for w in ws]
    torch.backends.quantized.engine = "onednn"
    onednn = [prepack(q, lin.scale, None) for q, lin in zip(q8, lins, strict=True)]
    torch.backends.quantized.engine = "fbgemm"
    i = [0]

    def nxt():
        i[0] = (i[0] + 1) % count
        return i[0]

    fns = {}
    if _kernels.load():
        ours = [_kernels.pack_int8(q) for q in q8]
        fns["musicgen_nb int8 kernel"] = lambda: (
            lambda j: torch.ops.musicgen_nb.linear_int8(x, ours[j], lins[j].scale, None)
        )(nxt())  # noqa: E501
    fns |= {
        "fbgemm int8": lambda: torch.ops.quantized.linear_dynamic(x, fb[nxt()], lins[0].reduce_range),
        "_weight_int8pack_mm bf16": lambda: (lambda j: torch.ops.aten._weight_int8pack_mm(xb, q8[j], lins[j].scale.bfloat16()))(nxt()),
        "_weight_int8pack_mm fp32": lambda: (lambda j: torch.ops.aten._weight_int8pack_mm(x, q8[j], lins[j].scale))(nxt()),
        "int4 g128 fp32": lambda: (lambda j: torch.ops.aten._weight_int4pack_mm_for_cpu(x, int4[j][0], gs, int4[j][1]))(nxt()),
        "int4 g128 bf16": lambda: (lambda j: torch.ops.aten._weight_int4pack_mm_for_cpu(xb, int4[j][0], gs, int4[j][2]))(nxt()),
        "fbgemm fp16": lambda: torch.ops.quantized.linear_dynamic_fp16(x, fp16[nxt()]),
        "onednn int8": lambda: torch.ops.quantized.linear_dynamic(x, onednn[nxt()], False),
        "mkl fp32 W @ x.T": lambda: torch.mm(ws[nxt()], x.t()),
    }  # fmt: skip
    ref = x @ ws[0].t()
    y8 = torch.ops.quantized.linear_dynamic(x, fb[0], lins[0].reduce_range)
    y4 = torch.ops.aten._weight_int4pack_mm_for_cpu(x, int4[0][0], gs, int4[0][1])
    err = lambda y: float((y.float() - ref).norm() / ref.norm())  # noqa: E731
    t = _best(fns, 24, args.reps)
    errs = f"fbgemm int8 {err(y8):.4f}, int4 g128 {err(y4):.4f}"
    if _kernels.load():
        errs = f"our int8 {err(_kernels.linear_int8(x, ours[0], lins[0].scale)):.4f}, " + errs
    print(f"[{out} x {inn}] relative error: {errs}")
    for k, v in t.items():
        gbs = out * inn / v / 1e9
        print(
            f"  {k:<28}{v * 1e6:>9.0f} us   x{t['fbgemm int8'] / v:5.2f} of fbgemm   {gbs:5.1f} GB/s of int8"
        )


def bandwidth(args) -> None:
    """Read bandwidth: a float32 sum over 1 GB, and our int8 linear over 1 GB of weights."""
    import torch

    from musicgen_nb import _kernels

    big = torch.ones(2**28)  # 1 GiB of float32
    fns = {"float32 sum, 1 GiB": lambda: big.sum()}
    if _kernels.load():
        w = [_kernels.pack_int8(torch.ones(4096, 1024, dtype=torch.int8)) for _ in range(256)]
        x, sc = torch.randn(2, 1024), torch.ones(4096)
        fns["int8 linear, 2 rows, 1 GiB"] = lambda: [
            torch.ops.musicgen_nb.linear_int8(x, m, sc, None) for m in w
        ]
    t = _best(fns, 3, args.reps)
    for k, v in t.items():
        print(f"  {k:<28}{v * 1e3:>9.1f} ms   {2**30 / v / 1e9:5.1f} GB/s")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["attention", "gemm", "bandwidth"])
    ap.add_argument("--positions", default="250,500,1000,1500")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args(argv)
    import torch

    warnings.simplefilter("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"threads={torch.get_num_threads()} load average {os.getloadavg()[0]:.1f}")
    {"attention": attention, "gemm": gemm, "bandwidth": bandwidth}[args.what](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
