"""Fine-tuning speed and memory: training steps/s and peak RSS, with and without LoRA.

Each row runs ``mg.finetune.train`` in its own subprocess on the musicgen-small
architecture with random weights (``mg.load("small", random_weights=True)``, fp32
on the CPU), on random code windows of ``--seconds`` seconds, batch ``--batch-size``:

* ``lora``: rank 16 on every attention and feed-forward linear and the lm_heads;
* ``full``: every decoder weight (``lora_rank=None``).

The first step is a warm-up; steps/s is taken over the next ``--steps`` steps
(timestamps from ``train``'s callback, which then stops the run, so no checkpoint
is written inside the timing). Peak memory is Linux's peak RSS (``VmHWM``) reset
after loading: the training's own peak, loaded weights included, and the growth
over the loaded model.

Examples
--------
    python benchmarks/bench_train.py                          # small, 2 s windows, 3 steps
    python benchmarks/bench_train.py --model tiny --steps 2   # smoke test (seconds)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GB = 1e9
MODES = {"lora": 16, "full": None}


class _Stop(Exception):
    """Raised from the callback to end a timed run without writing a checkpoint."""


def _status_gb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024 / GB
    return float("nan")


def measure(model: str, mode: str, *, seconds: float, batch_size: int, steps: int) -> dict:
    """Time ``steps`` training steps (after one warm-up step) in this process."""
    import numpy as np
    import torch

    import musicgen_nb as mg
    from musicgen_nb import finetune as FT
    from musicgen_nb.finetune.weights import trainable_decoder

    s = mg.load(model, random_weights=model != "tiny", precision="fp32", device="cpu")
    frames = int(round(seconds * s.frame_rate))
    rng = np.random.default_rng(0)
    windows = [
        FT.Window(rng.integers(0, s.codebook_size, (s.num_codebooks, frames)), f"clip {i}", f"{i}", 0)
        for i in range(max(2, batch_size))
    ]  # fmt: skip
    loaded = _status_gb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM: training's own peak
    stamps = []

    def timer(step, loss):
        stamps.append(time.perf_counter())
        if step == steps + 1:
            raise _Stop

    with tempfile.TemporaryDirectory() as out:
        try:
            FT.train(
                s, windows, steps=steps + 100, lr=1e-4, batch_size=batch_size,
                lora_rank=MODES[mode], out=out, seed=0, progress=False, plot=False,
                save_every=10**9, callback=timer,
            )  # fmt: skip
        except _Stop:
            pass
    peak = _status_gb("VmHWM")
    decoder = sum(p.numel() for p in s.model.decoder.parameters())
    copy = trainable_decoder(s, MODES[mode], MODES[mode] and float(MODES[mode]))
    trainable = sum(p.numel() for p in copy.parameters() if p.requires_grad)
    dt = stamps[-1] - stamps[0]
    return dict(
        model=model, mode=mode, seconds=seconds, batch_size=batch_size, steps=steps,
        steps_per_s=steps / dt, s_per_step=dt / steps, frames_per_s=steps * batch_size * frames / dt,
        trainable_params=trainable, decoder_params=decoder, loaded_rss_gb=round(loaded, 2),
        peak_rss_gb=round(peak, 2), growth_gb=round(peak - loaded, 2),
        threads=torch.get_num_threads(),
    )  # fmt: skip


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="small", help="architecture (random weights), or 'tiny'")
    ap.add_argument("--seconds", type=float, default=2.0, help="window length in seconds")
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3, help="timed steps, after one warm-up step")
    ap.add_argument("--modes", default="lora,full", help="comma-separated: lora, full")
    ap.add_argument("--in-process", action="store_true", help="no subprocess (memory is shared)")
    ap.add_argument("--json", help="write the rows here")
    ap.add_argument("--_one", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    kw = dict(seconds=args.seconds, batch_size=args.batch_size, steps=args.steps)
    if args._one:
        mode, out = json.loads(args._one)
        Path(out).write_text(json.dumps(measure(args.model, mode, **kw)))
        return 0
    rows = []
    for mode in args.modes.split(","):
        if mode not in MODES:
            raise SystemExit(f"--modes must be among {list(MODES)}, got {mode!r}")
        if args.in_process:
            rows.append(measure(args.model, mode, **kw))
            continue
        out = Path(tempfile.gettempdir()) / f"bench_train_{os.getpid()}_{mode}.json"
        cmd = [sys.executable, __file__, "--model", args.model, "--seconds", str(args.seconds),
               "--batch-size", str(args.batch_size), "--steps", str(args.steps),
               "--_one", json.dumps([mode, str(out)])]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            why = proc.stderr.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
            if proc.returncode < 0:
                why = [f"killed by signal {-proc.returncode} (out of memory?)"]
            rows.append(dict(model=args.model, mode=mode, error=why[0]))
            continue
        rows.append(json.loads(out.read_text()))
        out.unlink()
    print(
        f"{args.model}, random weights, fp32 CPU, {args.seconds:g} s windows "
        f"({round(args.seconds * 50)} frames), batch {args.batch_size}, {args.steps} timed steps"
    )
    print(f"{'mode':<6}{'trainable':>14}{'steps/s':>10}{'s/step':>9}{'peak RSS':>11}{'growth':>9}")
    for r in rows:
        if "error" in r:
            print(f"{r['mode']:<6} failed: {r['error']}")
            continue
        print(
            f"{r['mode']:<6}{r['trainable_params']:>14,}{r['steps_per_s']:>10.3f}"
            f"{r['s_per_step']:>9.2f}{r['peak_rss_gb']:>9.2f} GB{r['growth_gb']:>6.2f} GB"
        )
    ok = [r for r in rows if "error" not in r]
    if len(ok) == 2:
        lora, full = sorted(ok, key=lambda r: r["mode"] != "lora")
        print(
            f"LoRA / full: {lora['steps_per_s'] / full['steps_per_s']:.2f}x the steps/s, "
            f"{lora['peak_rss_gb'] / full['peak_rss_gb']:.2f}x the peak RSS"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0 if len(ok) == len(rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
