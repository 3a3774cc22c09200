"""Decode speed and fidelity: transformers' ``generate`` vs our engine, per precision.

Same model (random weights, built from a fixed seed, so every process holds the
same weights), same prompt, same number of decode steps, batch 1 with guidance
3 (two rows), fixed seed. Each row runs in its own subprocess so that its peak
RSS is its own.

Reported per row: decode steps/s, the ratio to transformers (fp32), the LM
real-time factor (audio seconds / decode-loop seconds), the end-to-end real-time
factor (audio seconds / wall time of the whole call: text encoder, decode loop
and EnCodec decode), peak RSS during generation (Linux ``VmHWM``, reset after
loading), and fidelity:

* engine fp32 vs transformers fp32: agreement of the sampled tokens for the same
  seed, and the first step where they differ;
* bf16/int8 vs fp32 under teacher forcing: the fp32 engine's token sequence is
  fed to each model, and the guided next-token distributions are compared at
  every sampled position: mean KL(fp32 || x) in nats and top-1 agreement.

Examples
--------
    python benchmarks/bench_generate.py --model tiny --steps 40          # smoke test, seconds
    python benchmarks/bench_generate.py --steps 250 --json bench.json    # musicgen-small architecture
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPT = "lo-fi hip hop beat with warm piano chords"
GUIDANCE = 3.0
TOP_K = 250
FRAME_RATE = 50


# --------------------------------------------------------------------------- helpers
def _loadavg() -> float | None:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except OSError:
        return None


def _reset_peak_rss() -> bool:
    """Reset Linux's peak-RSS counter (VmHWM) of this process; False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_gb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e9
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # kB on Linux


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _CodecSpy:
    """Wrap ``model.audio_encoder.decode`` to keep the codes and time the decode."""

    def __init__(self, model, device):
        self.enc = model.audio_encoder
        self.orig = self.enc.decode
        self.device = device
        self.codes = None
        self.seconds = 0.0

    def __enter__(self):
        def decode(codes, *args, **kwargs):
            _sync(self.device)
            t = time.perf_counter()
            out = self.orig(codes, *args, **kwargs)
            _sync(self.device)
            self.seconds += time.perf_counter() - t
            self.codes = codes[0].detach().cpu().clone()
            return out

        self.enc.decode = decode
        return self

    def __exit__(self, *exc):
        del self.enc.decode


# --------------------------------------------------------------------------- one row
def _load(model: str, device: str, precision: str, random: bool):
    """``mg.load``; the precision ``int8-fbgemm`` is int8 with fbgemm's linears instead of ours."""
    import musicgen_nb as mg
    from musicgen_nb.engine import quantize

    if precision != "int8-fbgemm":
        return mg.load(model, device=device, precision=precision, random_weights=random)
    ours = quantize.kernel_available
    quantize.kernel_available = lambda: False
    try:
        return mg.load(model, device=device, precision="int8", random_weights=random)
    finally:
        quantize.kernel_available = ours


def _teacher_forced(s, codes, out_path=None, ref_path=None) -> dict:
    """Guided log-probs at every sampled position with ``codes`` fed in; compare to a reference."""
    import torch

    from musicgen_nb.conditioning import conditioning
    from musicgen_nb.engine import Decoder, Sampler, guide

    K, frames = codes.shape[1], codes.shape[2]
    length = frames + K
    seq = torch.full((1, K, length), s.special_id, dtype=torch.long)
    valid = torch.zeros(K, length, dtype=torch.bool)
    for k in range(K):
        seq[:, k, k + 1 : k + 1 + frames] = codes[:, k]
        valid[k, k + 1 : k + 1 + frames] = True
    seq = seq.to(s.device)
    sampler = Sampler(guidance_scale=GUIDANCE)
    out = []
    with torch.inference_mode():
        cond = conditioning(s, [PROMPT], negative=None, guidance_scale=GUIDANCE)
        dec = Decoder(s.model, cond, max_len=length)
        for t in range(length - 1):
            logits = dec.step(seq[:, :, t : t + 1].repeat(cond.branches, 1, 1))
            guided, _, _ = guide(logits, 1, sampler)
            lp = guided[0].float().log_softmax(-1).cpu()  # [K, V]
            out.append(lp[valid[:, t + 1]])
    logp = torch.cat(out)  # [positions, V]
    if out_path is not None:
        torch.save(logp, out_path)
    if ref_path is None:
        return {}
    ref = torch.load(ref_path)
    kl = (ref.exp() * (ref - logp)).sum(-1)
    return dict(
        tf_positions=int(ref.shape[0]),
        tf_mean_kl=float(kl.mean()),
        tf_max_kl=float(kl.max()),
        tf_top1_agree=float((ref.argmax(-1) == logp.argmax(-1)).float().mean()),
    )


def timed_call(s, impl: str, steps: int, seed: int) -> dict:
    """One timed generation of ``steps`` decode steps: decode/codec/total seconds and the codes."""
    import torch

    dev = s.device
    K = s.num_codebooks
    if impl == "transformers":
        inputs = s.processor(text=[PROMPT], padding=True, return_tensors="pt").to(dev)
        torch.manual_seed(seed)
        with torch.inference_mode(), _CodecSpy(s.model, dev) as spy:
            _sync(dev)
            t = time.perf_counter()
            s.model.generate(
                **inputs, do_sample=True, guidance_scale=GUIDANCE, top_k=TOP_K, max_new_tokens=steps
            )
            _sync(dev)
            total = time.perf_counter() - t
        return dict(decode_s=total - spy.seconds, codec_s=spy.seconds, e2e_s=total, codes=spy.codes)
    _sync(dev)
    t = time.perf_counter()
    g = s.generate(PROMPT, duration=(steps - K + 1) / s.frame_rate, seed=seed, progress=False,
                   guidance_scale=GUIDANCE, top_k=TOP_K)  # fmt: skip
    _sync(dev)
    total = time.perf_counter() - t
    tm = g.timings
    assert tm["steps"] == steps, (tm["steps"], steps)
    return dict(decode_s=tm["decode_loop_s"], codec_s=tm["codec_decode_s"], e2e_s=total,
                text_s=tm["text_encode_s"], codes=torch.as_tensor(g.codes))  # fmt: skip


def run_row(spec: dict) -> dict:
    """Load, warm up, time one (implementation, precision) row; fidelity as asked."""
    import numpy as np
    import torch

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    work = Path(spec["work"])
    impl, prec, steps = spec["impl"], spec["precision"], spec["steps"]
    t0 = time.perf_counter()
    random = spec["model"] not in ("tiny", "tiny-melody")
    s = _load(spec["model"], spec["device"], prec, random)
    load_s = time.perf_counter() - t0
    load_peak = _peak_rss_gb()
    K = s.num_codebooks
    frames = steps - K + 1
    audio_s = frames / s.frame_rate
    dev = s.device
    seed = spec["seed"]
    row = dict(
        impl=impl,
        precision=prec,
        model=spec["model"],
        device=dev.type,
        steps=steps,
        audio_s=audio_s,
    )
    row.update(load_s=round(load_s, 2), load_peak_rss_gb=load_peak, loadavg_before=_loadavg())
    timed_call(s, impl, min(8, steps), seed)  # warm-up
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    reset = _reset_peak_rss()
    res = timed_call(s, impl, steps, seed)
    codes = res.pop("codes")
    row.update(res)
    row["peak_rss_gb"] = _peak_rss_gb() if reset else None
    if dev.type == "cuda":
        row["peak_cuda_gb"] = torch.cuda.max_memory_allocated(dev) / 1e9
    row["steps_per_s"] = steps / row["decode_s"]
    row["lm_rtf"] = audio_s / row["decode_s"]
    row["e2e_rtf"] = audio_s / row["e2e_s"]
    np.save(work / f"codes_{impl}_{prec}.npy", codes.numpy())

    # Fidelity.
    if impl == "engine" and prec == spec["ref_precision"]:
        _teacher_forced(s, codes, out_path=work / "tf_ref.pt")
        ref_codes = work / f"codes_transformers_{prec}.npy"
        if ref_codes.exists():
            ref = torch.as_tensor(np.load(ref_codes))
            same = (ref == codes) if ref.shape == codes.shape else torch.zeros(1, dtype=torch.bool)
            row["token_agree_vs_transformers"] = float(same.float().mean())
            # the first decode step (delay-pattern position) where any codebook differs
            diff = [f + k for k in range(K) for f in range(frames) if ref.shape == codes.shape and ref[0, k, f] != codes[0, k, f]]  # fmt: skip
            row["first_diff_step"] = min(diff) if diff else None
    elif impl == "engine" and (work / "tf_ref.pt").exists():
        ref_codes = torch.as_tensor(np.load(work / f"codes_engine_{spec['ref_precision']}.npy"))
        row.update(_teacher_forced(s, ref_codes, ref_path=work / "tf_ref.pt"))

    if impl == "engine" and spec.get("e2e_seconds") and prec in spec.get("e2e_precisions", ()):
        _sync(dev)
        t = time.perf_counter()
        g = s.generate(
            PROMPT, duration=spec["e2e_seconds"], seed=seed, progress=False, guidance_scale=GUIDANCE
        )
        _sync(dev)
        row["e2e_long_s"] = time.perf_counter() - t
        row["e2e_long_audio_s"] = spec["e2e_seconds"]
        row["e2e_long_steps_per_s"] = g.timings["steps_per_s"]
    row["loadavg_after"] = _loadavg()
    return row


def interleaved(args, device) -> dict:
    """All rows in this process, round-robin for ``args.interleave`` rounds.

    On a shared machine the load changes from minute to minute; running the rows
    in turn, and taking each round's ratio to the transformers run of the same
    round, makes the ratios robust to that. Reports the best and the median.
    """
    import statistics

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    order, _ = _rows(args, device.type)
    random = args.model not in ("tiny", "tiny-melody")
    models = {}
    for _, prec in order:
        if prec not in models:
            models[prec] = _load(args.model, device.type, prec, random)
    for impl, prec in order:  # warm-up
        timed_call(models[prec], impl, 8, args.seed)
    rates = {row: [] for row in order}
    loads = []
    for r in range(args.interleave):
        for row in order:
            res = timed_call(models[row[1]], row[0], args.steps, args.seed)
            rates[row].append(args.steps / res["decode_s"])
        loads.append(_loadavg())
        print(f"[bench] round {r + 1}: " + ", ".join(f"{i} {p} {v[-1]:.2f}" for (i, p), v in rates.items()),
              file=sys.stderr, flush=True)  # fmt: skip
    base = rates.get(("transformers", "fp32"))
    out = []
    for (impl, prec), v in rates.items():
        row = dict(
            impl=impl, precision=prec, steps_per_s=v, best=max(v), median=statistics.median(v)
        )
        if base:
            ratios = [a / b for a, b in zip(v, base, strict=True)]
            row.update(
                ratio_per_round=ratios,
                ratio_median=statistics.median(ratios),
                ratio_best=max(v) / max(base),
            )
        out.append(row)
    print(
        f"interleaved: {args.interleave} rounds of {args.steps} steps, load average after each round {loads}"
    )
    print(
        f"{'impl':<13}{'prec':<6}{'best':>8}{'median':>8}{'x hf (median of rounds)':>26}{'x hf (best/best)':>18}"
    )
    for r in out:
        print(f"{r['impl']:<13}{r['precision']:<6}{r['best']:>8.2f}{r['median']:>8.2f}"
              f"{r.get('ratio_median', float('nan')):>26.2f}{r.get('ratio_best', float('nan')):>18.2f}")  # fmt: skip
    return dict(rounds=args.interleave, loadavg=loads, rows=out)


# --------------------------------------------------------------------------- driver
def _rows(args, device_type: str) -> tuple[list[tuple[str, str]], str]:
    precs = [p.strip() for p in args.precisions.split(",") if p.strip()]
    hf = [p.strip() for p in args.hf_precisions.split(",") if p.strip()]
    if device_type == "cuda":
        precs = [p for p in precs if not p.startswith(("int8", "int4"))]  # CPU paths
    ref = "fp32" if "fp32" in precs else precs[0]
    rows = [("transformers", p) for p in hf]
    rows += [("engine", ref)] + [("engine", p) for p in precs if p != ref]
    return rows, ref


def _table(rows: list[dict], base: float | None) -> str:
    head = f"{'impl':<13}{'prec':<6}{'steps/s':>8}{'x hf':>7}{'LM RTF':>8}{'E2E RTF':>8}{'peak GB':>8}  fidelity"
    lines = [head, "-" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['impl']:<13}{r['precision']:<6}  failed: {r['error'][:80]}")
            continue
        ratio = f"{r['steps_per_s'] / base:.2f}" if base else "-"
        peak = r.get("peak_cuda_gb") or r.get("peak_rss_gb")
        fid = ""
        if "token_agree_vs_transformers" in r:
            fid = f"tokens = hf: {100 * r['token_agree_vs_transformers']:.1f}% (first diff step {r['first_diff_step']})"
        elif "tf_mean_kl" in r:
            fid = (
                f"TF vs fp32: KL {r['tf_mean_kl']:.4f} nats, top-1 {100 * r['tf_top1_agree']:.1f}%"
            )
        if "e2e_long_s" in r:
            fid += f"; {r['e2e_long_audio_s']:g} s audio in {r['e2e_long_s']:.1f} s"
        lines.append(
            f"{r['impl']:<13}{r['precision']:<6}{r['steps_per_s']:>8.2f}{ratio:>7}{r['lm_rtf']:>8.3f}"
            f"{r['e2e_rtf']:>8.3f}{(peak or float('nan')):>8.2f}  {fid}"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--model", default="small", help="architecture (random weights) or 'tiny' for a smoke test"
    )
    ap.add_argument("--steps", type=int, default=250, help="decode steps per run (>= 8)")
    ap.add_argument(
        "--precisions", default="fp32,bf16,int8", help="engine precisions, comma separated"
    )
    ap.add_argument(
        "--hf-precisions",
        default="fp32",
        help="precisions for transformers' generate ('' for none)",
    )
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument(
        "--e2e-seconds",
        type=float,
        default=10.0,
        help="also time one end-to-end call this long (0: off)",
    )
    ap.add_argument(
        "--e2e-precisions", default="int8", help="engine precisions for the end-to-end call"
    )
    ap.add_argument("--json", help="write the results here")
    ap.add_argument(
        "--in-process", action="store_true", help="run every row in this process (no per-row RSS)"
    )
    ap.add_argument(
        "--interleave", type=int, default=0,
        help="speed only: R round-robin rounds of every row in one process (robust on a busy machine)",
    )  # fmt: skip
    ap.add_argument("--_row", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args._row:  # worker
        spec = json.loads(args._row)
        row = run_row(spec)
        Path(spec["out"]).write_text(json.dumps(row))
        return 0

    if args.steps < 8:
        ap.error(f"--steps must be >= 8, got {args.steps}")
    import torch

    from musicgen_nb.models import resolve_device

    device = resolve_device(args.device)
    if args.interleave:
        res = interleaved(args, device)
        if args.json:
            Path(args.json).write_text(
                json.dumps(dict(model=args.model, steps=args.steps, interleaved=res), indent=1)
            )
        return 0
    order, ref = _rows(args, device.type)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_generate_") as work:
        for impl, prec in order:
            spec = dict(
                impl=impl, precision=prec, model=args.model, device=device.type, steps=args.steps, seed=args.seed,
                threads=args.threads, work=work, out=str(Path(work) / f"row_{impl}_{prec}.json"), ref_precision=ref,
                e2e_seconds=args.e2e_seconds, e2e_precisions=args.e2e_precisions.split(","),
            )  # fmt: skip
            print(f"[bench] {impl} {prec} ...", file=sys.stderr, flush=True)
            t = time.perf_counter()
            try:
                if args.in_process:
                    row = run_row(spec)
                else:
                    cmd = [sys.executable, os.path.abspath(__file__), "--_row", json.dumps(spec)]
                    proc = subprocess.run(cmd, capture_output=True, text=True)
                    if proc.returncode != 0:
                        raise RuntimeError(
                            proc.stderr.strip().splitlines()[-1]
                            if proc.stderr.strip()
                            else "failed"
                        )
                    row = json.loads(Path(spec["out"]).read_text())
            except Exception as exc:  # noqa: BLE001 - one failed row must not lose the others
                row = dict(impl=impl, precision=prec, error=f"{type(exc).__name__}: {exc}")
            print(f"[bench]   done in {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
            results.append(row)

    base = next(
        (r["steps_per_s"] for r in results if r["impl"] == "transformers" and "error" not in r),
        None,
    )
    for r in results:
        if base and "error" not in r:
            r["speedup_vs_transformers"] = r["steps_per_s"] / base
    print(
        f"model={args.model} (random weights) steps={args.steps} batch=1 guidance={GUIDANCE} device={device}"
    )
    print(_table(results, base))
    meta = dict(
        model=args.model, steps=args.steps, batch=1, guidance_scale=GUIDANCE, top_k=TOP_K, seed=args.seed,
        device=str(device), torch=torch.__version__, transformers=__import__("transformers").__version__,
        python=platform.python_version(), cpu=platform.processor() or platform.machine(), cores=os.cpu_count(),
        threads=args.threads or torch.get_num_threads(), prompt=PROMPT,
        time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(dict(meta=meta, rows=results), indent=1))
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
