"""Does decoding EnCodec chunks while the decode loop runs gain anything on this CPU?

Two ways to get ``--seconds`` of audio from the engine (int8 by default, batch 1
with guidance, top-k sampling), alternating in one process for ``--rounds``:

* **sequential**: the decode loop, then one EnCodec decode of every frame (what
  ``MusicGen.generate`` does);
* **overlapped**: every ``--chunk`` frames, the frames that are complete (all
  codebooks past the delay pattern) go to a background thread that decodes
  them with ``--context`` frames of left context, while the main thread keeps
  stepping; at the end only the last chunk is left to decode.

The decoded audio itself is not stitched here (``musicgen_nb/streaming.py``
does that); the chunks' decoding is the same work, so the wall times compare.
``--loop-threads`` / ``--codec-threads`` set the torch threads of each side.

Examples
--------
    python benchmarks/bench_codec_overlap.py --model tiny --seconds 2 --rounds 1
    python benchmarks/bench_codec_overlap.py --seconds 10 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

PROMPT = "lo-fi hip hop beat with warm piano chords"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="small")
    ap.add_argument("--precision", default="int8")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--chunk", type=int, default=100, help="frames per decoded chunk (50 = 1 s)")
    ap.add_argument("--context", type=int, default=25, help="left context frames per chunk")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--loop-threads", type=int, default=0, help="0: torch's default")
    ap.add_argument("--codec-threads", type=int, default=0, help="0: torch's default")
    args = ap.parse_args(argv)

    import torch

    import musicgen_nb as mg
    from musicgen_nb.conditioning import conditioning
    from musicgen_nb.engine import Decoder, Sampler, guide, sample, warp

    warnings.simplefilter("ignore")
    if args.loop_threads:
        torch.set_num_threads(args.loop_threads)
    tiny = args.model.startswith("tiny")
    s = mg.load(args.model, precision=args.precision, random_weights=not tiny)
    K = s.num_codebooks
    frames = round(args.seconds * s.frame_rate)
    steps = frames + K - 1
    sampler = Sampler(guidance_scale=3.0, top_k=250)
    codec = s.model.audio_encoder
    local = threading.local()

    def decode(codes):  # [1, K, n] -> audio
        if args.codec_threads and not getattr(local, "set", False):
            torch.set_num_threads(args.codec_threads)
            local.set = True
        with torch.inference_mode():
            return codec.decode(codes[None], [None]).audio_values

    def run(overlap: bool) -> tuple[float, float]:
        gen = torch.Generator().manual_seed(1)
        t0 = time.perf_counter()
        with torch.inference_mode():
            cond = conditioning(s, [PROMPT], negative=None, guidance_scale=3.0)
            dec = Decoder(s.model, cond, max_len=steps + 1)
            seq = torch.full((1, K, steps + 1), s.special_id, dtype=torch.long)
            pool = ThreadPoolExecutor(1) if overlap else None
            jobs, done = [], 0
            for t in range(steps):
                logits = dec.step(seq[:, :, t : t + 1].repeat(cond.branches, 1, 1))
                tok, _ = sample(warp(guide(logits, 1, sampler)[0], sampler), sampler, gen)
                for k in range(K):  # delay pattern: codebook k starts at step k
                    if 0 <= t - k < frames:
                        seq[0, k, t + 1] = tok[0, k]
                ready = t - K + 2  # frames complete in every codebook
                if overlap and ready - done >= args.chunk and ready < frames:
                    lo = max(0, done - args.context)
                    codes = torch.stack([seq[0, k, 1 + k + lo : 1 + k + ready] for k in range(K)])
                    jobs.append(pool.submit(decode, codes[None]))
                    done = ready
            loop = time.perf_counter() - t0
            codes = torch.stack([seq[0, k, 1 + k : 1 + k + frames] for k in range(K)])[None]
            if overlap:
                lo = max(0, done - args.context)
                jobs.append(pool.submit(decode, codes[:, :, lo:]))
                for j in jobs:
                    j.result()
                pool.shutdown()
            else:
                decode(codes)
        return loop, time.perf_counter() - t0

    print(f"warm-up: {run(False)[1]:.1f} s, {run(True)[1]:.1f} s", file=sys.stderr, flush=True)
    res = {"sequential": [], "overlapped": []}
    for r in range(args.rounds):
        for kind in ("sequential", "overlapped") if r % 2 == 0 else ("overlapped", "sequential"):
            res[kind].append(run(kind == "overlapped"))
        print(f"round {r + 1}: " + ", ".join(f"{k} loop {v[-1][0]:.2f} s, total {v[-1][1]:.2f} s" for k, v in res.items())
              + f" (load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)  # fmt: skip
    print(f"model={args.model} {args.precision} {args.seconds:g} s of audio, chunks of {args.chunk} "
          f"frames (+{args.context} context), threads loop={torch.get_num_threads()} codec={args.codec_threads or 'default'}")  # fmt: skip
    for kind, v in res.items():
        print(f"{kind:<12} decode loop median {statistics.median(x[0] for x in v):.2f} s, "
              f"audio ready median {statistics.median(x[1] for x in v):.2f} s")  # fmt: skip
    gain = [a[1] / b[1] for a, b in zip(res["sequential"], res["overlapped"], strict=True)]
    print(f"sequential / overlapped per round: {[round(g, 2) for g in gain]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
