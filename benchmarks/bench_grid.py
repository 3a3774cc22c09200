"""Grid throughput (clips per minute) by batch size, and batched-vs-alone token agreement.

Same model (musicgen-small architecture, random weights built from a fixed seed),
same grid (prompts x seeds, guidance 3, top-k 250), run with ``mg.run_grid`` on
the local backend into a fresh directory for each batch size, in one process
and one after the other. Reported per batch size: wall time, clips per minute
(file writing, journal and manifest included) and the speed-up over batch 1.

Agreement: each prompt of a batch (prompts of different lengths, so the text is
padded) is generated alone with the same seed, and the codes are compared: the
share of equal tokens, clips whose codes are all equal, and the first frame
where a clip diverges. Padding can change floating-point sums by a few ulps;
a sampled token flips only when that moves a draw across a bucket edge, and
from then on the clip goes its own way.

Examples
--------
    python benchmarks/bench_grid.py --model tiny --duration 1 --clips 8      # smoke test, seconds
    python benchmarks/bench_grid.py --duration 2 --clips 8 --batch 1,2,4,8  # small, random weights
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

PROMPTS = [
    "lo-fi hip hop beat with warm piano chords",
    "rock",
    "an epic orchestral soundtrack with a choir, big drums and soaring strings",
    "jazz trio",
]


def _loadavg() -> float | None:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except OSError:
        return None


def throughput(s, *, clips: int, duration: float, batch_sizes: list[int]) -> list[dict]:
    import musicgen_nb as mg

    seeds = list(range(clips // 2))
    grid = mg.grid(PROMPTS[:2], seed=seeds, duration=duration)
    rows = []
    for b in batch_sizes:
        with tempfile.TemporaryDirectory() as out:
            load = _loadavg()
            t0 = time.perf_counter()
            m = mg.run_grid(grid, model=s, out=out, batch_size=b, progress=False)
            wall = time.perf_counter() - t0
        rows.append(dict(batch_size=b, clips=len(m), wall_s=round(wall, 2),
                         clips_per_min=round(len(m) / wall * 60, 2), loadavg=load))  # fmt: skip
        print(
            f"batch {b}: {len(m)} clips in {wall:.1f} s = {len(m) / wall * 60:.2f} clips/min",
            flush=True,
        )
    base = rows[0]["clips_per_min"]
    for r in rows:
        r["speedup_vs_first"] = round(r["clips_per_min"] / base, 2)
    return rows


def agreement(s, *, duration: float, seed: int = 11) -> dict:
    seeds = [seed + i for i in range(len(PROMPTS))]
    kw = dict(duration=duration, progress=False)
    batched = s.generate(PROMPTS, seed=seeds, **kw).codes
    same, total, whole, first = 0, 0, 0, []
    for i, (p, sd) in enumerate(zip(PROMPTS, seeds, strict=True)):
        alone = s.generate(p, seed=sd, **kw).codes[0]
        eq = batched[i] == alone
        same += int(eq.sum())
        total += eq.size
        whole += bool(eq.all())
        bad = np.where(~eq.all(axis=0))[0]
        first.append(int(bad[0]) if len(bad) else None)
    return dict(token_agreement=round(same / total, 4), clips_identical=f"{whole}/{len(PROMPTS)}",
                first_divergent_frame=first, frames=int(batched.shape[-1]))  # fmt: skip


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="small", help="architecture (random weights) or 'tiny'")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--duration", type=float, default=2.0, help="seconds per clip")
    ap.add_argument(
        "--clips", type=int, default=8, help="clips in the grid (2 prompts x clips/2 seeds)"
    )
    ap.add_argument("--batch", default="1,2,4,8", help="batch sizes to compare")
    ap.add_argument("--skip-agreement", action="store_true")
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args(argv)

    import torch

    import musicgen_nb as mg

    random = args.model not in ("tiny", "tiny-melody")
    s = mg.load(args.model, precision=args.precision, random_weights=random)
    print(f"{s.name} ({'random weights' if random else 'offline'}), {args.precision}, "
          f"torch threads {torch.get_num_threads()}, {platform.processor() or platform.machine()}")  # fmt: skip
    s.generate("warm up", duration=0.2, seed=0, progress=False)
    batch_sizes = [int(b) for b in args.batch.split(",")]
    rows = throughput(s, clips=args.clips, duration=args.duration, batch_sizes=batch_sizes)
    best = max(rows, key=lambda r: r["clips_per_min"])
    print(f"\nbatch 1 vs best (batch {best['batch_size']}): {rows[0]['clips_per_min']:.2f} vs "
          f"{best['clips_per_min']:.2f} clips/min = {best['clips_per_min'] / rows[0]['clips_per_min']:.2f}x")  # fmt: skip
    result = dict(model=s.name, precision=args.precision, duration=args.duration, rows=rows,
                  best_batch=best["batch_size"])  # fmt: skip
    if not args.skip_agreement:
        agree = agreement(s, duration=args.duration)
        print(f"batched vs alone ({len(PROMPTS)} prompts of different lengths, {agree['frames']} frames): "
              f"token agreement {agree['token_agreement']:.2%}, identical clips {agree['clips_identical']}, "
              f"first divergent frame {agree['first_divergent_frame']}")  # fmt: skip
        result["agreement"] = agree
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
