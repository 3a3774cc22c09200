"""Peak memory of each MusicGen architecture (random weights, fp32 on the CPU).

Measured rows run a real generation in a subprocess (random weights, batch 1,
guidance 3) and read Linux's peak RSS (``VmHWM``): after loading, and during
generation (reset after loading, so it is the generation's own peak). The other
rows are **estimates** built from the measured rows:

    peak(arch, d) = weights(arch) + overhead + kv(arch, d) + codec(d)

* ``weights``: parameter bytes (from the stored configs, fp32 = 4 bytes each);
* ``kv``: the static key/value cache, ``2 * layers * rows * hidden * positions``
  elements, rows = 2 (guidance), positions = 50 * d + 4 (+ 235 chroma frames
  and ~20 text tokens of prefix for melody models);
* ``overhead`` (libraries, allocator, text encoder activations) and ``codec``
  (EnCodec decode activations, the same codec for every size): what a measured
  row holds beyond its weights and cache.

fp16 figures halve weights and cache, and keep the overhead and the codec
activations (an upper bound for a GPU, whose process overhead is the CUDA
context, ~0.3-0.5 GB, instead of the host libraries).

Examples
--------
    python benchmarks/bench_memory.py --measure small --seconds 30 --json mem.json
    python benchmarks/bench_memory.py --measure small,medium --seconds 30,2     # medium only briefly
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

GB = 1e9
ROWS = 2  # batch 1, guidance > 1: conditional + unconditional
FRAME_RATE = 50
NAMES = ("small", "medium", "large", "melody")
TEXT_TOKENS = 20  # a typical prompt's token count (melody prefix)


def _hwm_gb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / GB
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB


def _rss_gb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / GB
    return float("nan")


def arch_facts(name: str) -> dict:
    """Parameter count and decoder sizes of an architecture, from the stored config."""
    from musicgen_nb import checkpoints
    from musicgen_nb.checkpoints.loading import param_counts

    spec = checkpoints.known()[name]
    dec = spec["config"]["decoder"]
    total, decoder = param_counts(name)
    return dict(
        name=name, params=total, decoder_params=decoder, layers=dec["num_hidden_layers"],
        hidden=dec["hidden_size"], codebooks=dec["num_codebooks"],
        # melody models put the chroma (and the text) in front of the sequence: more cache positions
        prefix=spec["config"].get("chroma_length", 0) + (TEXT_TOKENS if "chroma_length" in spec["config"] else 0),
    )  # fmt: skip


def kv_bytes(facts: dict, seconds: float, bytes_per: int = 4, rows: int = ROWS) -> float:
    positions = facts["prefix"] + round(seconds * FRAME_RATE) + facts["codebooks"]
    return 2 * facts["layers"] * rows * facts["hidden"] * positions * bytes_per


def measure(name: str, seconds: float) -> dict:
    """Load ``name`` (random weights, fp32, CPU), generate ``seconds``; peak RSS figures."""
    import torch

    import musicgen_nb as mg

    t = time.perf_counter()
    s = mg.load(name, device="cpu", precision="fp32", random_weights=True)
    load_s = time.perf_counter() - t
    load_peak, after_load = _hwm_gb(), _rss_gb()
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM: the generation's own peak
        reset = True
    except OSError:
        reset = False
    t = time.perf_counter()
    g = s.generate("lo-fi beat", duration=seconds, seed=0, progress=False, guidance_scale=3.0)
    gen_s = time.perf_counter() - t
    return dict(
        name=name, seconds=seconds, load_s=load_s, gen_s=gen_s, steps_per_s=g.timings["steps_per_s"],
        load_peak_rss_gb=load_peak, rss_after_load_gb=after_load,
        gen_peak_rss_gb=_hwm_gb() if reset else None, threads=torch.get_num_threads(),
        weights_gb=sum(p.numel() * p.element_size() for p in s.model.parameters()) / GB,
    )  # fmt: skip


def estimate(facts: dict, measured: dict, seconds: float) -> dict:
    """Peak for ``facts``' architecture from one measured row (see the module docstring)."""
    ref = arch_facts(measured["name"])
    peak = measured["gen_peak_rss_gb"] or measured["load_peak_rss_gb"]
    # What the measured row holds beyond weights and cache: libraries + activations + codec.
    rest = peak * GB - ref["params"] * 4 - kv_bytes(ref, measured["seconds"])
    codec_scale = seconds / measured["seconds"]  # codec activations grow with the audio length
    codec_part = max(0.0, rest - measured["rss_after_load_gb"] * GB + ref["params"] * 4)
    fixed = rest - codec_part
    fp32 = facts["params"] * 4 + kv_bytes(facts, seconds) + fixed + codec_part * codec_scale
    fp16 = facts["params"] * 2 + kv_bytes(facts, seconds, 2) + fixed + codec_part * codec_scale
    return dict(
        est_fp32_gb=fp32 / GB, est_fp16_gb=fp16 / GB, kv_fp32_gb=kv_bytes(facts, seconds) / GB,
        kv_fp16_gb=kv_bytes(facts, seconds, 2) / GB, weights_fp32_gb=facts["params"] * 4 / GB,
        weights_fp16_gb=facts["params"] * 2 / GB, fixed_gb=fixed / GB, codec_gb=codec_part * codec_scale / GB,
    )  # fmt: skip


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--measure", default="small", help="architectures to measure for real (comma separated)"
    )
    ap.add_argument(
        "--seconds",
        default="30",
        help="seconds to generate per measured architecture (one or one each)",
    )
    ap.add_argument(
        "--target", type=float, default=30.0, help="seconds of audio the estimates are for"
    )
    ap.add_argument("--names", default=",".join(NAMES), help="architectures to report")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument(
        "--reuse", help="take the measured rows from this earlier --json output (no new runs)"
    )
    ap.add_argument("--_one", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args._one:
        name, seconds, out = json.loads(args._one)
        Path(out).write_text(json.dumps(measure(name, seconds)))
        return 0

    names = [n for n in args.names.split(",") if n]
    todo = [n for n in args.measure.split(",") if n]
    secs = [float(x) for x in args.seconds.split(",")]
    secs = secs * len(todo) if len(secs) == 1 else secs
    measured = json.loads(Path(args.reuse).read_text())["measured"] if args.reuse else []
    for name, seconds in zip(todo, secs, strict=True):
        if any(m["name"] == name and m["seconds"] == seconds for m in measured):
            continue
        out = Path(f"/tmp/bench_memory_{os.getpid()}_{name}.json")
        print(f"[memory] measuring {name} ({seconds:g} s) ...", file=sys.stderr, flush=True)
        cmd = [
            sys.executable,
            os.path.abspath(__file__),
            "--_one",
            json.dumps([name, seconds, str(out)]),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr[-2000:], file=sys.stderr)
            return 1
        measured.append(json.loads(out.read_text()))
        out.unlink()
    # Estimate from the measured row with the longest generation (its codec part is the best seen).
    base = max(measured, key=lambda m: m["seconds"])
    rows = []
    for name in names:
        facts = arch_facts(name)
        row = dict(name=name, params=facts["params"]) | estimate(facts, base, args.target)
        own = next((m for m in measured if m["name"] == name), None)
        if own is not None:
            row["measured"] = own
        if own is not None and own["seconds"] == args.target:
            row["peak_rss_gb_fp32"] = own["gen_peak_rss_gb"]
            row["load_peak_rss_gb_fp32"] = own["load_peak_rss_gb"]
            row["kind"] = "measured"
        else:
            row["kind"] = f"estimate (from {base['name']} at {base['seconds']:g} s)"
        rows.append(row)

    t = args.target
    print(f"Peak memory for {t:g} s of audio, batch 1, guidance 3 (fp32 CPU; fp16 estimated)")
    head = f"{'name':<9}{'params':>8}{'weights32':>10}{'kv32':>7}{'peak fp32':>11}{'est fp16':>10}  kind"
    print(head + "\n" + "-" * len(head))
    for r in rows:
        peak = r.get("peak_rss_gb_fp32") or r["est_fp32_gb"]
        print(
            f"{r['name']:<9}{r['params'] / 1e9:>7.2f}B{r['weights_fp32_gb']:>10.2f}{r['kv_fp32_gb']:>7.2f}"
            f"{peak:>11.2f}{r['est_fp16_gb']:>10.2f}  {r['kind']}"
        )
    for m in measured:
        print(
            f"measured {m['name']} {m['seconds']:g} s: load peak {m['load_peak_rss_gb']:.2f} GB, "
            f"after load {m['rss_after_load_gb']:.2f} GB, generation peak {m['gen_peak_rss_gb']:.2f} GB, "
            f"{m['steps_per_s']:.1f} steps/s"
        )
    checks = []
    for m in measured:
        if m is base:
            continue
        est = estimate(arch_facts(m["name"]), base, m["seconds"])["est_fp32_gb"]
        checks.append(
            dict(
                name=m["name"],
                seconds=m["seconds"],
                estimate_gb=est,
                measured_gb=m["gen_peak_rss_gb"],
            )
        )
        print(
            f"check of the estimate: {m['name']} at {m['seconds']:g} s: estimated {est:.2f} GB, "
            f"measured {m['gen_peak_rss_gb']:.2f} GB"
        )
    if args.json:
        out = dict(target_seconds=t, rows=rows, measured=measured, checks=checks)
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
