"""Peak memory of ``audio.resample`` and of EnCodec's encoder, per case in a fresh process.

The figures behind the size checks of :func:`musicgen_nb.audio.resample` (its comment
table) and :func:`musicgen_nb.tokens.encoder_bytes_per_sample`. Each case runs in its own
child, after a small warm-up call, and reports the peak RSS (VmHWM) above that baseline.

    python benchmarks/bench_resample_memory.py            # the resample table (~5 s)
    python benchmarks/bench_resample_memory.py --encodec  # + tiny's encoder per sample (~30 s)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

PEAK_RSS = r"""
def peak_rss():  # VmHWM starts afresh at exec (ru_maxrss can carry a forking parent's peak)
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))
"""

RESAMPLE = (
    PEAK_RSS
    + r"""
import sys, time, numpy as np
from musicgen_nb import audio
orig, target, b, c, n = map(int, sys.argv[1:6])
x = np.random.default_rng(0).standard_normal((b, c, n), dtype=np.float32)
audio.resample(np.zeros((b, c, 64), np.float32), 48000, 32000)
base = peak_rss()
t = time.perf_counter()
y = audio.resample(x, orig, target)
dt = time.perf_counter() - t
peak = peak_rss()
print(peak - base, x.nbytes, y.nbytes, dt)
"""
)

ENCODE = (
    PEAK_RSS
    + r"""
import sys, numpy as np, musicgen_nb as mg
from musicgen_nb.tokens import encoder_bytes_per_sample
s = mg.load("tiny")
x = np.random.default_rng(0).standard_normal((1, 1, int(sys.argv[1]) * 32000), dtype=np.float32)
s.encode(0.1 * x[..., :32000], 32000)
base = peak_rss()
s.encode(0.1 * x, 32000)
peak = peak_rss()
print((peak - base) / x.size, encoder_bytes_per_sample(s.model.audio_encoder.config))
"""
)

CASES = [  # orig_sr, target_sr, batch, channels, samples
    (7, 32000, 1, 1, 320), (7, 32000, 1, 1, 8000), (7, 32000, 1, 2, 1600),
    (7, 32000, 2, 2, 1000), (100, 32000, 1, 1, 32000), (1000, 32000, 1, 2, 160000),
    (44100, 48000, 1, 2, 2205000), (48000, 32000, 2, 2, 2400000),
]  # fmt: skip


def child(code: str, *args) -> list[float]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                         text=True, env=env, check=True)  # fmt: skip
    return [float(v) for v in out.stdout.split()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encodec", action="store_true", help="also measure tiny's EnCodec encoder")
    args = ap.parse_args()
    from musicgen_nb.audio.resample import RESAMPLE_OUT_FACTOR, RESAMPLE_OVERHEAD

    print("orig -> target Hz   shape               in MB  out MB  peak MB  bound MB")
    for orig, target, b, c, n in CASES:
        extra, inb, outb, _ = child(RESAMPLE, orig, target, b, c, n)
        bound = inb + RESAMPLE_OUT_FACTOR[b * c > 1] * outb + RESAMPLE_OVERHEAD
        print(f"{orig:>5} -> {target:<6}  {str([b, c, n]):<18} {inb / 1e6:6.1f} {outb / 1e6:7.1f} "
              f"{extra / 1e6:8.1f} {bound / 1e6:9.1f}{'  OVER' if extra > bound else ''}")  # fmt: skip
    if args.encodec:
        print("\ntiny encode, seconds at 32 kHz: peak B/sample (bound)")
        for sec in (30, 60, 120):
            per, bound = child(ENCODE, sec)
            print(f"{sec:>4} s: {per:6.1f} ({bound:.0f}){'  OVER' if per > bound else ''}")


if __name__ == "__main__":
    main()
