"""Adaptive CPU threads: steps/s alone and beside a CPU hog, fixed counts against the tuner.

One session; per condition (alone, then beside ``python -c "while True: pass"``), the
configurations alternate round by round: a fixed 2 (``--most``) threads, a fixed 1 thread, and
the adaptive tuner starting from 2 (``musicgen_nb.engine.threads``; forgotten before each run,
so each run learns from scratch). Prints the median steps/s of each, the ratio of the tuner to
the best fixed count, and the target figure: the tuner beside the hog as a share of the best
speed alone (the issue asks >= 60 %, and no loss alone), and the ceiling: a fixed 1 thread
beside the hog as a share of the best speed alone. ``--wait-policies unset,PASSIVE,ACTIVE``
runs the whole benchmark once per OpenMP wait policy (``OMP_WAIT_POLICY`` is read when the
OpenMP runtime starts, so each runs in its own process) and prints each one's lines.

Examples
--------
    python benchmarks/bench_threads.py --model tiny --steps 60 --rounds 1     # smoke test
    python benchmarks/bench_threads.py --precision int8 --steps 200           # musicgen-small
    python benchmarks/bench_threads.py --precision int8 --wait-policies unset,PASSIVE
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import torch

import musicgen_nb as mg
from musicgen_nb.conditioning import conditioning
from musicgen_nb.engine import Sampler, threads
from musicgen_nb.generation.loop import Progress, run_window

CONFIGS = ("fixed-most", "fixed-1", "adaptive")


def run(s, config: str, most: int, steps: int) -> float:
    """Steps/s of one window of ``steps`` steps in ``config``."""
    adaptive = config == "adaptive"
    os.environ[threads.SWITCH] = "1" if adaptive else "0"
    threads.forget(s.model.decoder)
    torch.set_num_threads(1 if config == "fixed-1" else most)
    delay = s.num_codebooks - 1
    with torch.inference_mode():
        cond = conditioning(s, ["a calm piano"], negative=None, guidance_scale=3.0)
        start = time.perf_counter()
        run_window(
            s, cond, batch=1, prefix=None, frames=steps - delay, sampler=Sampler(),
            generator=[torch.Generator().manual_seed(0)], progress=Progress(1, False, None),
            trace=None, capture=None, stop=None,
        )  # fmt: skip
    torch.set_num_threads(most)
    return steps / (time.perf_counter() - start)


def condition(s, most: int, steps: int, rounds: int) -> dict[str, float]:
    """Median steps/s of each configuration, alternating them round by round."""
    seen: dict[str, list[float]] = {c: [] for c in CONFIGS}
    for r in range(rounds):
        order = CONFIGS if r % 2 == 0 else CONFIGS[::-1]
        for config in order:
            seen[config].append(run(s, config, most, steps))
    return {c: statistics.median(v) for c, v in seen.items()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="small", help="architecture (random weights), or tiny")
    ap.add_argument("--precision", default="int8", help="comma-separated: int8, int4, fp32")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--most", type=int, default=2, help="the thread count to start from")
    ap.add_argument("--wait-policies", default="", help="e.g. unset,PASSIVE,ACTIVE: one run each")
    args = ap.parse_args(argv)
    if args.wait_policies:
        return policies(args.wait_policies.split(","), argv if argv is not None else sys.argv[1:])
    wait = os.environ.get("OMP_WAIT_POLICY", "(unset)")
    print(f"model={args.model} steps={args.steps} rounds={args.rounds} most={args.most} "
          f"OMP_WAIT_POLICY={wait} load={os.getloadavg()[0]:.1f}")  # fmt: skip
    for precision in args.precision.split(","):
        s = mg.load(args.model, precision=precision, random_weights=args.model != "tiny")
        run(s, "adaptive", args.most, 16)  # warm-up
        alone = condition(s, args.most, args.steps, args.rounds)
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            busy = condition(s, args.most, args.steps, args.rounds)
        finally:
            hog.kill()
            hog.wait()
        for name, got in (("alone", alone), ("beside hog", busy)):
            best = max(got["fixed-most"], got["fixed-1"])
            cells = "  ".join(f"{c} {got[c]:6.2f}/s" for c in CONFIGS)
            print(
                f"{precision:>5} {name:>10}: {cells}  adaptive/best fixed {got['adaptive'] / best:.3f}"
            )
        best_alone = max(alone.values())
        print(f"{precision:>5} target: adaptive beside hog / best alone = "
              f"{busy['adaptive'] / best_alone:.3f} (>= 0.60 asked; ceiling fixed-1 beside hog / best "
              f"alone = {busy['fixed-1'] / best_alone:.3f}); adaptive alone / best fixed alone = "
              f"{alone['adaptive'] / max(alone['fixed-most'], alone['fixed-1']):.3f}", flush=True)  # fmt: skip
        del s


def policies(names: list[str], argv: list[str]) -> None:
    """Run this benchmark once per OpenMP wait policy, each in its own process."""
    rest, skip = [], False
    for a in argv:
        if skip or a.startswith("--wait-policies"):
            skip = a == "--wait-policies"
            continue
        rest.append(a)
    for name in names:
        env = dict(os.environ)
        env.pop("OMP_WAIT_POLICY", None)
        if name != "unset":
            env["OMP_WAIT_POLICY"] = name
        print(f"--- OMP_WAIT_POLICY={name}", flush=True)
        subprocess.run([sys.executable, __file__, *rest], env=env, check=True)


if __name__ == "__main__":
    main()
