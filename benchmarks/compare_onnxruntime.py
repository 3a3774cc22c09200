"""One side-by-side comparison: our int8 engine vs ONNX Runtime's int8 decoder step.

Not a dependency of the project: ``pip install onnxruntime onnx`` into the venv
to run it. It exports the decoder step of the same model (random weights, fp32)
to ONNX the way exporters of decoder models usually do it (past keys/values as
inputs, the grown ``present`` keys/values as outputs, fed back through
``IOBinding`` without copies; cross-attention keys/values computed once, as in
our engine), quantizes it with ``onnxruntime.quantization.quantize_dynamic``
(int8 weights per channel, activations quantized per call, like fbgemm), and
then runs, in one process and alternating, ``--rounds`` decode loops of
``--steps`` greedy steps (batch 1 with guidance: two rows) on each.

Fidelity: teacher forcing over ``--tf-steps`` fixed tokens, mean KL of the
guided next-token distributions to our fp32 engine, for both int8 backends.

Examples
--------
    python benchmarks/compare_onnxruntime.py --model tiny --steps 20 --rounds 1 --tf-steps 10
    python benchmarks/compare_onnxruntime.py --steps 250 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

PROMPT = "lo-fi hip hop beat with warm piano chords"


def _step_module(s, rows: int):
    """The fp32 decoder step as a plain module: (x, cross_bias, past..., cross...) -> (logits, present...)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    dec = s.model.decoder.model.decoder
    heads_ = s.model.decoder.lm_heads

    class Step(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers, self.norm, self.lm_heads = dec.layers, dec.layer_norm, heads_
            a = dec.layers[0].self_attn
            self.h, self.hd, self.scaling = a.num_heads, a.head_dim, a.scaling

        def forward(self, x, cross_bias, *caches):
            n = len(self.layers)
            past, cross = caches[: 2 * n], caches[2 * n :]
            d = x.shape[-1]
            presents = []
            for i, layer in enumerate(self.layers):
                a = layer.self_attn
                h = layer.self_attn_layer_norm(x)
                q = a.q_proj(h).reshape(rows, self.h, 1, self.hd)
                k = a.k_proj(h).reshape(rows, 1, self.h, self.hd).transpose(1, 2)
                v = a.v_proj(h).reshape(rows, 1, self.h, self.hd).transpose(1, 2)
                k, v = torch.cat([past[2 * i], k], 2), torch.cat([past[2 * i + 1], v], 2)
                presents += [k, v]
                w = (q @ k.transpose(-1, -2) * self.scaling).softmax(-1)
                x = x + a.out_proj((w @ v).reshape(rows, 1, d))
                c = layer.encoder_attn
                h = layer.encoder_attn_layer_norm(x)
                q = c.q_proj(h).reshape(rows, self.h, 1, self.hd)
                w = (q @ cross[2 * i].transpose(-1, -2) * self.scaling + cross_bias).softmax(-1)
                x = x + c.out_proj((w @ cross[2 * i + 1]).reshape(rows, 1, d))
                h = layer.final_layer_norm(x)
                x = x + layer.fc2(F.gelu(layer.fc1(h)))
            h = self.norm(x)[:, 0]
            return (
                torch.stack([head(h[:, None]) for head in self.lm_heads], 1)[:, :, 0],
                *presents,
            )

    return Step()


class OrtDecoder:
    """Greedy/teacher-forced decode steps through an ONNX Runtime session."""

    def __init__(self, sess, s, dec_ref, threads: int):
        import numpy as np
        import onnxruntime as ort

        self.sess, self.ort, self.np = sess, ort, np
        self.ref = dec_ref  # an engine Decoder: its embeddings, positions, cross k/v
        self.n = len(dec_ref.layers)
        self.rows, self.h, self.hd = dec_ref.rows, dec_ref.heads, dec_ref.head_dim
        empty = np.zeros((self.rows, self.h, 0, self.hd), dtype=np.float32)
        self.past = [ort.OrtValue.ortvalue_from_numpy(empty) for _ in range(2 * self.n)]
        self.cross = [ort.OrtValue.ortvalue_from_numpy(t.contiguous().numpy())
                      for kv in zip(dec_ref.cross_k, dec_ref.cross_v, strict=True) for t in kv]  # fmt: skip
        self.bias = ort.OrtValue.ortvalue_from_numpy(dec_ref.cross_bias.contiguous().numpy())
        self.pos = 0
        self.names = [i.name for i in sess.get_inputs()]
        self.outs = [o.name for o in sess.get_outputs()]

    def step(self, tokens):
        import torch

        x = self.ref.embed(tokens) + self.ref.positions[self.pos]  # [rows, 1, dim]
        io = self.sess.io_binding()
        io.bind_cpu_input(self.names[0], x.contiguous().numpy())
        io.bind_ortvalue_input(self.names[1], self.bias)
        for name, val in zip(self.names[2:], self.past + self.cross, strict=True):
            io.bind_ortvalue_input(name, val)
        for name in self.outs:
            io.bind_output(name)
        self.sess.run_with_iobinding(io)
        out = io.get_outputs()
        self.past = list(out[1:])
        self.pos += 1
        return torch.from_numpy(out[0].numpy())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="small", help="architecture (random weights) or 'tiny'")
    ap.add_argument("--steps", type=int, default=250)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tf-steps", type=int, default=100, help="teacher-forced steps for the KL")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-reduce-range", dest="reduce_range", action="store_false",
                    help="full 8-bit weights (without VNNI, u8 x s8 products can saturate)")  # fmt: skip
    args = ap.parse_args(argv)

    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    import musicgen_nb as mg
    from musicgen_nb.conditioning import conditioning
    from musicgen_nb.engine import Decoder, Sampler, guide

    warnings.simplefilter("ignore")
    torch.set_num_threads(args.threads)
    random = args.model not in ("tiny", "tiny-melody")
    fp32 = mg.load(args.model, random_weights=random)
    int8 = mg.load(args.model, precision="int8", random_weights=random)
    cond = conditioning(fp32, [PROMPT], negative=None, guidance_scale=3.0)
    cond8 = conditioning(int8, [PROMPT], negative=None, guidance_scale=3.0)
    rows = cond.hidden.shape[0]
    total = max(args.steps, args.tf_steps) + 2

    work = Path(tempfile.mkdtemp(prefix="mgnb_onnx_"))
    t = time.perf_counter()
    ref = Decoder(fp32.model, cond, max_len=total)
    n = len(ref.layers)
    step = _step_module(fp32, rows).eval()
    x = torch.zeros(rows, 1, ref.k_cache.shape[-1] * ref.heads)
    past = [torch.zeros(rows, ref.heads, 3, ref.head_dim) for _ in range(2 * n)]
    cross = [t_ for kv in zip(ref.cross_k, ref.cross_v, strict=True) for t_ in kv]
    names = ["x", "cross_bias"] + [f"past_{kv}{i}" for i in range(n) for kv in "kv"]
    names += [f"cross_{kv}{i}" for i in range(n) for kv in "kv"]
    outs = ["logits"] + [f"present_{kv}{i}" for i in range(n) for kv in "kv"]
    dyn = {f"past_{kv}{i}": {2: "past"} for i in range(n) for kv in "kv"}
    dyn |= {f"present_{kv}{i}": {2: "present"} for i in range(n) for kv in "kv"}
    with torch.no_grad():
        torch.onnx.export(
            step, (x, ref.cross_bias, *past, *cross), str(work / "step.onnx"), input_names=names,
            output_names=outs, dynamic_axes=dyn, opset_version=17, dynamo=False,
        )  # fmt: skip
    quantize_dynamic(
        str(work / "step.onnx"), str(work / "step_int8.onnx"), weight_type=QuantType.QInt8,
        per_channel=True, use_external_data_format=True, reduce_range=args.reduce_range,
        extra_options={"MatMulConstBOnly": True},  # weights only, not q @ k or w @ v
    )  # fmt: skip
    import onnx

    ops = [
        node.op_type
        for node in onnx.load(str(work / "step_int8.onnx"), load_external_data=False).graph.node
    ]
    print(f"int8 graph: {ops.count('MatMulInteger') + ops.count('DynamicQuantizeMatMul')} int8 matmuls, "
          f"{ops.count('MatMul')} float matmuls", file=sys.stderr)  # fmt: skip
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(
        str(work / "step_int8.onnx"), opts, providers=["CPUExecutionProvider"]
    )
    sess_fp32 = ort.InferenceSession(
        str(work / "step.onnx"), opts, providers=["CPUExecutionProvider"]
    )
    print(f"exported and quantized in {time.perf_counter() - t:.0f} s ({work})", file=sys.stderr)

    def make(kind, length):
        if kind == "engine int8":
            return Decoder(int8.model, cond8, max_len=length)
        session = sess_fp32 if kind == "onnxruntime fp32" else sess
        return OrtDecoder(session, fp32, Decoder(fp32.model, cond, max_len=length), args.threads)

    def loop(kind, steps):
        dec = make(kind, steps + 1)
        tok = torch.full((rows, fp32.num_codebooks, 1), fp32.special_id)
        t = time.perf_counter()
        with torch.inference_mode():
            for _ in range(steps):
                tok = dec.step(tok).argmax(-1)[:, :, None]
        return steps / (time.perf_counter() - t)

    # fidelity: teacher forcing, guided distributions vs the fp32 engine
    g = torch.Generator().manual_seed(0)
    toks = torch.randint(0, fp32.codebook_size, (1, fp32.num_codebooks, args.tf_steps), generator=g)
    sampler = Sampler(guidance_scale=3.0)

    def forced(dec):
        out = []
        with torch.inference_mode():
            for i in range(args.tf_steps):
                logits = dec.step(toks[:, :, i : i + 1].repeat(rows, 1, 1))
                out.append(guide(logits, 1, sampler)[0].float().log_softmax(-1))
        return torch.cat(out)

    lp_ref = forced(Decoder(fp32.model, cond, max_len=args.tf_steps + 1))
    kl = {}
    for kind in ("engine int8", "onnxruntime int8", "onnxruntime fp32"):
        lp = forced(make(kind, args.tf_steps + 1))
        kl[kind] = float((lp_ref.exp() * (lp_ref - lp)).sum(-1).mean())

    kinds = ("engine int8", "onnxruntime int8")
    for kind in kinds:
        loop(kind, 8)  # warm-up
    rates = {k: [] for k in kinds}
    for r in range(args.rounds):
        for kind in kinds if r % 2 == 0 else kinds[::-1]:
            rates[kind].append(loop(kind, args.steps))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in rates.items())
              + f" steps/s (load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)  # fmt: skip
    ratios = [a / b for a, b in zip(rates["engine int8"], rates["onnxruntime int8"], strict=True)]
    print(f"model={args.model} steps={args.steps} rows={rows} threads={args.threads} "
          f"onnxruntime {ort.__version__}, load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(
        f"{'backend':<18}{'best':>8}{'median':>8}  KL to fp32 (teacher forced, {args.tf_steps} steps)"
    )
    for kind in kinds:
        v = rates[kind]
        print(f"{kind:<18}{max(v):>8.1f}{statistics.median(v):>8.1f}  {kl[kind]:.4f}")
    print(
        f"onnxruntime fp32 export vs engine fp32: KL {kl['onnxruntime fp32']:.2e} (checks the export)"
    )
    print(f"engine / onnxruntime per round: {[round(x, 2) for x in ratios]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
