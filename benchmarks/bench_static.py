"""The static-shape step against today's (dynamic) engine on the CPU, side by side in one run.

Same session, prompt, seed and window; the two steps alternate (ABBA order, ``--rounds``
times), so the machine's load hits both alike; ``--interleave`` alternates single steps
of two decoders instead (the fairest on a busy machine; the ratio is the median pair's). Prints steps/s of each and their ratio per
precision (median of the rounds, and each round's ratio), and checks the tokens are equal (with
``--interleave``: whether both steps' greedy tokens agree at every step, fed the same tokens).

The static step runs its linears as ``F.linear`` (``x @ W.T``); the dynamic step runs fp32 on the
CPU as ``W @ x.T``. ``--interleave --matvec`` gives the static step the dynamic step's form too,
which isolates what the static shapes themselves cost (int8 keeps its kernels either way).

Examples
--------
    python benchmarks/bench_static.py --model tiny --steps 40 --rounds 1      # smoke test
    python benchmarks/bench_static.py --precision fp32,int8 --steps 150       # musicgen-small
    python benchmarks/bench_static.py --interleave --steps 200                # steps alternate
    python benchmarks/bench_static.py --interleave --matvec --precision fp32  # same linear form
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import musicgen_nb as mg
from musicgen_nb.conditioning import conditioning
from musicgen_nb.engine import Sampler
from musicgen_nb.engine.static import StaticDecoder, make_decoder
from musicgen_nb.generation.loop import Progress, run_window

PROMPT = "lo-fi hip hop beat with warm piano chords"


def window(s, step: str, steps: int, seed: int = 0) -> tuple[float, torch.Tensor]:
    """Seconds of one decode window of ``steps`` steps with ``step``, and its codes."""
    s.step = step
    delay = s.num_codebooks - 1
    with torch.inference_mode():
        cond = conditioning(s, [PROMPT], negative=None, guidance_scale=3.0)
        gen = [torch.Generator().manual_seed(seed)]
        start = time.perf_counter()
        codes, *_ = run_window(
            s, cond, batch=1, prefix=None, frames=steps - delay, sampler=Sampler(), generator=gen,
            progress=Progress(1, False, None), trace=None, capture=None, stop=None,
        )  # fmt: skip
    return time.perf_counter() - start, codes


def compare(s, steps: int, rounds: int) -> dict:
    """Alternate static and dynamic windows; steps/s of each, the ratio, token equality."""
    window(s, "static", 8)  # warm-up: TorchScript, the pool, the fused weights
    window(s, "dynamic", 8)
    times: dict[str, list[float]] = {"static": [], "dynamic": []}
    codes = {}
    for r in range(rounds):
        for step in ("static", "dynamic") if r % 2 == 0 else ("dynamic", "static"):
            seconds, codes[step] = window(s, step, steps)
            times[step].append(steps / seconds)
    ratios = [a / b for a, b in zip(times["static"], times["dynamic"], strict=True)]
    return {
        "static": statistics.median(times["static"]),
        "dynamic": statistics.median(times["dynamic"]),
        "ratio": statistics.median(ratios),
        "ratios": ratios,
        "same_tokens": bool(torch.equal(codes["static"], codes["dynamic"])),
    }


def interleaved(s, steps: int, matvec: bool = False) -> dict:
    """Alternate single steps of a static and a dynamic decoder (same tokens, ABBA order).

    Load that comes and goes hits both within milliseconds: each pair's ratio is fair
    even on a busy machine. Returns the median pair ratio, the summed speeds, and
    whether the two steps' greedy tokens agreed at every step.
    """
    with torch.inference_mode():
        cond = conditioning(s, [PROMPT], negative=None, guidance_scale=3.0)
        rows = cond.hidden.shape[0]
        decoders = {
            "static": StaticDecoder(s.model, cond, steps + 2, matvec=matvec),
            "dynamic": make_decoder(s.model, cond, steps + 2, step="dynamic"),
        }
        tokens = torch.full((rows, s.num_codebooks, 1), s.special_id)
        spent: dict[str, list[float]] = {"static": [], "dynamic": []}
        agree, picked = True, {}
        for i in range(steps):
            for name in ("static", "dynamic") if i % 2 == 0 else ("dynamic", "static"):
                start = time.perf_counter()
                logits = decoders[name].step(tokens)
                spent[name].append(time.perf_counter() - start)
                picked[name] = logits.argmax(-1)
            agree = agree and torch.equal(picked["static"], picked["dynamic"])
            tokens = picked["static"][:, :, None]
    ratios = [d / a for a, d in zip(spent["static"][2:], spent["dynamic"][2:], strict=True)]
    return {
        "static": len(ratios) / sum(spent["static"][2:]),
        "dynamic": len(ratios) / sum(spent["dynamic"][2:]),
        "ratio": statistics.median(ratios),
        "ratios": [min(ratios), max(ratios)],
        "same_tokens": agree,
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="small", help="architecture (random weights), or tiny")
    ap.add_argument("--precision", default="fp32,int8", help="comma-separated")
    ap.add_argument("--steps", type=int, default=150, help="decode steps per window")
    ap.add_argument("--rounds", type=int, default=4, help="alternations (ABBA)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: as set)")
    ap.add_argument("--interleave", action="store_true", help="alternate single steps instead")
    ap.add_argument(
        "--matvec",
        action="store_true",
        help="with --interleave: the static step's linears as W @ x.T",
    )
    args = ap.parse_args(argv)
    if args.matvec and not args.interleave:
        ap.error("--matvec needs --interleave (the windows run the session's own static step)")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"model={args.model} steps={args.steps} rounds={args.rounds} threads={torch.get_num_threads()} "
        f"static linears={'W @ x.T' if args.matvec else 'F.linear'}"
    )
    rounds = "min/max pair" if args.interleave else "per round"
    print(f"{'precision':>9} {'static':>10} {'dynamic':>10} {'ratio':>7}  {rounds}  same tokens")
    for precision in args.precision.split(","):
        s = mg.load(args.model, precision=precision, random_weights=args.model != "tiny")
        if args.interleave:
            r = interleaved(s, args.steps, args.matvec)
        else:
            r = compare(s, args.steps, args.rounds)
        rounds = " ".join(f"{x:.3f}" for x in r["ratios"])
        print(
            f"{precision:>9} {r['static']:>8.2f}/s {r['dynamic']:>8.2f}/s {r['ratio']:>7.3f}  "
            f"{rounds}  {r['same_tokens']}",
            flush=True,
        )
        del s


if __name__ == "__main__":
    main()
