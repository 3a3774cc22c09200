"""Streaming: how soon the music can be heard, and what streaming costs.

For each precision and duration, one ``s.generate(...)`` and one
``s.stream(...)`` with the same prompt and seed run side by side in one
process (generate first, then stream; ``--rounds 2`` alternates the order).
Reported per stream:

* **first audio**: seconds from the call to the first chunk;
* **gapless start**: the earliest start at which continuous playback never runs
  dry, from the chunk arrival times: ``max(arrived - start)``;
* **rule start / stalls**: when the live player's own start rule
  (:func:`musicgen_nb.streaming.should_start`, the same rule as the browser's)
  starts playback, replayed over the real arrival times and estimates, and how
  often it then runs dry;
* **overhead**: ``1 - stream steps/s / generate steps/s`` of the decode loop;
  and the end-to-end times of both;
* **SNR**: the joined chunks against the one-pass decode, over the whole clip;
  plus the overlap cost (frames decoded twice, time spent on chunk decoding).

The codec alone is also compared: chunked decoding with context only (no carried
LSTM state) and naive chunk-by-chunk decoding, on the same codes.

Examples
--------
    python benchmarks/bench_stream.py --model tiny --durations 3            # smoke test
    python benchmarks/bench_stream.py                                        # small, int8 + fp32, 10 s and 30 s
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

PROMPT = "lo-fi hip hop beat with warm piano chords"


def _load(name, precision):
    import musicgen_nb as mg

    if name in ("tiny", "tiny-melody"):
        return mg.load(name, precision=precision)
    return mg.load(name, random_weights=True, precision=precision)


def run_generate(s, duration, seed):
    t0 = time.perf_counter()
    g = s.generate(PROMPT, duration=duration, seed=seed, progress=False)
    return g, time.perf_counter() - t0


def run_stream(s, duration, seed, chunk):
    t0 = time.perf_counter()
    st = s.stream(PROMPT, duration=duration, seed=seed, chunk=chunk)
    chunks = list(st)
    return st, chunks, time.perf_counter() - t0


def codec_only(s, codes, chunk_frames):
    """SNR of the exact, context-only and naive chunk decoders on the same codes."""
    from musicgen_nb.streaming import ChunkDecoder, snr_db

    ref = s.decode(codes)
    out = {}
    for method in ("exact", "context"):
        d = ChunkDecoder(s, method=method)
        parts = []
        for i in range(0, codes.shape[-1], chunk_frames):
            d.push(codes[..., i : i + chunk_frames])
            parts.append(d.pull())
        parts.append(d.pull(final=True))
        out[method] = dict(
            snr_db=snr_db(ref, np.concatenate(parts, -1)),
            overlap=d.overlap_frames / codes.shape[-1],
            decode_s=d.seconds,
        )
    naive = np.concatenate(
        [
            s.decode(codes[..., i : i + chunk_frames])
            for i in range(0, codes.shape[-1], chunk_frames)
        ],
        -1,
    )
    out["naive"] = dict(snr_db=snr_db(ref, naive), overlap=0.0, decode_s=float("nan"))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="small")
    ap.add_argument("--precisions", default="int8,fp32")
    ap.add_argument("--durations", default="10,30")
    ap.add_argument("--chunk", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--codec", action="store_true", help="also compare chunk decoders on the codes")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    import torch

    from musicgen_nb.streaming import simulate, snr_db

    rows = []
    print(
        f"model={args.model} chunk={args.chunk}s threads={torch.get_num_threads()} "
        f"load average at start: {os.getloadavg()[0]:.2f} (cores: {os.cpu_count()})"
    )
    for precision in args.precisions.split(","):
        s = _load(args.model, precision)
        s.generate(PROMPT, duration=1.0, seed=0, progress=False)  # warm-up
        for duration in [float(d) for d in args.durations.split(",")]:
            for r in range(args.rounds):
                order = ["gen", "stream"] if r % 2 == 0 else ["stream", "gen"]
                res = {}
                load0 = os.getloadavg()[0]
                for what in order:
                    if what == "gen":
                        res["gen"] = run_generate(s, duration, args.seed)
                    else:
                        res["stream"] = run_stream(s, duration, args.seed, args.chunk)
                g, gen_s = res["gen"]
                st, chunks, stream_s = res["stream"]
                sim = simulate(st.chunks, piece=st.chunk + st.decoder.hold / s.frame_rate)
                same = bool(np.array_equal(st.generation.codes, g.codes))
                joined = np.concatenate([c.audio for c in chunks], -1)
                row = dict(
                    model=args.model, precision=precision, seconds=duration, round=r,
                    order="/".join(order), gen_e2e_s=gen_s, stream_e2e_s=stream_s,
                    gen_steps_per_s=g.timings["steps_per_s"],
                    stream_steps_per_s=st.generation.timings["steps_per_s"],
                    overhead=1 - st.generation.timings["steps_per_s"] / g.timings["steps_per_s"],
                    first_audio_s=sim["first_audio"], gapless_start_s=sim["gapless_start"],
                    rule_start_s=sim["start"], stalls=sim["stalls"], stall_s=sim["stall_s"],
                    last_chunk_s=chunks[-1].arrived, chunks=len(chunks), same_codes=same,
                    snr_db=snr_db(g.audio, joined), hold_frames=st.decoder.hold,
                    overlap=st.decoder.overlap_frames / max(1, st.decoder.frames),
                    chunk_decode_s=st.decoder.seconds, load=(load0 + os.getloadavg()[0]) / 2,
                )  # fmt: skip
                rows.append(row)
                print(
                    f"{precision:>5} {duration:>4g}s [{row['order']}] generate {gen_s:6.2f}s "
                    f"({row['gen_steps_per_s']:.1f} steps/s) | stream {stream_s:6.2f}s "
                    f"({row['stream_steps_per_s']:.1f} steps/s, overhead {100 * row['overhead']:+.1f}%) | "
                    f"first audio {row['first_audio_s']:.2f}s, gapless start {row['gapless_start_s']:.2f}s, "
                    f"rule start {row['rule_start_s']:.2f}s, stalls {row['stalls']} | SNR "
                    f"{row['snr_db']:.1f} dB, same codes {same}, overlap {100 * row['overlap']:.1f}% "
                    f"of frames, chunk decoding {row['chunk_decode_s']:.2f}s | load {row['load']:.1f}",
                    flush=True,
                )
            if args.codec and duration == float(args.durations.split(",")[0]):
                cmp = codec_only(s, g.codes, max(1, round(args.chunk * s.frame_rate)))
                for k, v in cmp.items():
                    print(
                        f"  codec, {k:>7}: SNR {v['snr_db']:.1f} dB, overlap {100 * v['overlap']:.1f}% "
                        f"of frames, {v['decode_s']:.2f}s",
                        flush=True,
                    )
                rows[-1]["codec"] = cmp
        del s
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1, default=str)


if __name__ == "__main__":
    main()
