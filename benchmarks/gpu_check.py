"""One command for a borrowed GPU: speed, agreement, memory, syncs and the GPU code paths.

Run on a CUDA machine (about 5-8 minutes on one GPU; random weights built from the
real configs straight on the device, nothing is downloaded)::

    python benchmarks/gpu_check.py                       # small, medium, large in fp16
    python benchmarks/gpu_check.py --json gpu_check.json # and keep the rows

and on a CPU, to exercise every code path in a few seconds (what the tests run)::

    python benchmarks/gpu_check.py --device cpu --sizes tiny --peak-model tiny \\
        --peak-seconds 1 --steps 12 --agree-steps 12

It prints one table. Rows:

* ``steps/s``: decode steps per second of a whole call (text encoder, decode loop and
  EnCodec, timed the same way for both), batch 1 with guidance 3 (two rows), for each
  size in ``--precision`` (fp16): transformers' ``generate``, our engine with
  ``step="dynamic"`` and with ``step="static"`` (when this checkout's ``mg.load``
  takes ``step=``; else that row says so), and the engine/transformers ratio
  (target: >= 4x for medium and large on a GPU);
* ``tokens = generate``: the share of sampled tokens that equal transformers' for
  the same seed, in fp32 (first size);
* ``peak GB``: peak device memory of ``--peak-model`` generating ``--peak-seconds``
  (30 s) in fp16, against a T4's 16 GB (target: under 12), with the estimate the
  generation checks calls against;
* ``host syncs/step``: synchronizing CUDA calls per decode step
  (``torch.cuda.set_sync_debug_mode``), engine and static step;
* ``stream``, ``grid row``, ``fine-tune step``: each run once on the device;
* ``auto on sm75``: what ``precision="auto"`` picks on a faked T4, and on this device.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

PROMPT = "lo-fi hip hop beat with warm piano chords"
GUIDANCE, TOP_K = 3.0, 250
T4_GB, TARGET_GB = 16.0, 12.0


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(name: str, device: str, precision: str):
    """A session of ``name``'s real architecture with random weights, built on ``device``.

    The modules are created on the device in the target dtype (no fp32 copy on the
    host: large would need 13.7 GB of RAM); T5 and EnCodec then go to fp32 as
    ``mg.load`` keeps them. EnCodec's codebooks keep their (zero) init: decode speed
    does not depend on them.
    """
    import torch

    import musicgen_nb as mg
    from musicgen_nb.checkpoints.loading import resolve_source
    from musicgen_nb.checkpoints.offline import offline_processor
    from musicgen_nb.checkpoints.specs import build_config, model_class
    from musicgen_nb.engine.precision import DTYPES, place

    if name.startswith("tiny"):  # the offline checkpoint itself: real seeded weights
        return mg.load(name, device=device, precision=precision)
    _, spec = resolve_source(name, random_weights=True)
    dtype, dev = DTYPES[precision], torch.device(device)
    before = torch.get_default_dtype()
    torch.manual_seed(0)
    try:
        torch.set_default_dtype(dtype)
        with torch.device(dev):
            model = model_class(spec["config"]["model_type"])(build_config(spec["config"])).eval()
    finally:
        torch.set_default_dtype(before)
    model = place(model, dev, dtype)
    gc = model.generation_config
    gc.max_length = int(round(spec["meta"]["max_duration"] * model.config.audio_encoder.frame_rate))
    gc.do_sample, gc.guidance_scale, gc.top_k = True, GUIDANCE, TOP_K
    meta = dict(spec["meta"], random_weights=True)
    return mg.MusicGen(model, offline_processor(), name=name, precision=precision, meta=meta)


def step_supported() -> bool:
    """Whether this checkout's ``mg.load`` takes ``step=`` (the static-shape decode step)."""
    import musicgen_nb as mg

    return "step" in inspect.signature(mg.load).parameters


def engine_rate(s, steps: int, step: str | None = None, seed: int = 0) -> tuple[float, object]:
    """Steps/s of one whole engine call of ``steps`` steps (text, decode loop, codec), and codes.

    Timed like :func:`transformers_rate`: the whole call, between device syncs.
    """
    if step is not None:
        s.step = step
    duration = (steps - s.num_codebooks + 1) / s.frame_rate
    kw = dict(duration=duration, seed=seed, progress=False, guidance_scale=GUIDANCE, top_k=TOP_K)
    s.generate(PROMPT, **dict(kw, duration=min(duration, 0.1)))  # warm-up
    _sync(s.device)
    t = time.perf_counter()
    g = s.generate(PROMPT, **kw)
    _sync(s.device)
    return g.timings["steps"] / (time.perf_counter() - t), g.codes


def transformers_rate(s, steps: int, seed: int = 0) -> tuple[float, object]:
    """Steps/s of one whole call of transformers' ``generate`` (text, decode loop, codec), and codes."""
    import torch

    dev = s.device
    inputs = s.processor(text=[PROMPT], padding=True, return_tensors="pt").to(dev)
    kw = dict(do_sample=True, guidance_scale=GUIDANCE, top_k=TOP_K)
    codec, kept = s.model.audio_encoder, {}
    original = codec.decode

    def spy(codes, *a, **k):  # the codes generate hands to EnCodec: [1, B, K, frames]
        kept["codes"] = codes[0].detach().cpu()
        return original(codes, *a, **k)

    codec.decode = spy
    try:
        with torch.inference_mode():
            s.model.generate(**inputs, max_new_tokens=4, **kw)  # warm-up
            torch.manual_seed(seed)
            _sync(dev)
            t = time.perf_counter()
            s.model.generate(**inputs, max_new_tokens=steps, **kw)
            _sync(dev)
    finally:
        del codec.decode
    return steps / (time.perf_counter() - t), kept["codes"]


def agreement(s, steps: int) -> float:
    """Share of tokens the engine samples equal to transformers' for the same seed (fp32)."""
    import numpy as np

    _, theirs = transformers_rate(s, steps, seed=7)
    _, ours = engine_rate(s, steps, seed=7)
    theirs = np.asarray(theirs)
    n = min(ours.shape[-1], theirs.shape[-1])
    return float((ours[..., :n] == theirs[..., :n]).mean())


def peak_memory(s, seconds: float) -> dict:
    """Peak device memory (CUDA) or peak RSS growth (CPU) of one call, and the estimate."""
    import torch

    from musicgen_nb.engine.memory import call_bytes, weight_bytes

    est = weight_bytes(s.model) + call_bytes(s, 1, round(seconds * s.frame_rate))["total"]
    if s.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(s.device)
    s.generate(PROMPT, duration=seconds, seed=0, progress=False)
    if s.device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(s.device)
    else:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # the process, kB
    return dict(peak_gb=peak / 1e9, estimate_gb=est / 1e9)


def syncs_per_step(s, steps: int) -> float | None:
    """Synchronizing CUDA calls per decode step (None off CUDA: nothing to count)."""
    import torch

    if s.device.type != "cuda":
        return None
    duration = (steps - s.num_codebooks + 1) / s.frame_rate
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            g = s.generate(PROMPT, duration=duration, seed=0, progress=False)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    hits = [w for w in seen if "synchroniz" in str(w.message).lower()]
    return len(hits) / g.timings["steps"]


def paths(s, work: Path) -> list[tuple[str, str]]:
    """One stream, one grid row, one fine-tuning step on ``s``'s device: (check, result)."""
    import numpy as np

    import musicgen_nb as mg
    from musicgen_nb import finetune as FT

    rows = []

    def attempt(check: str, fn) -> None:
        t = time.perf_counter()
        try:
            note = fn()
            rows.append((check, f"ok in {time.perf_counter() - t:.1f} s{note}"))
        except Exception as err:  # noqa: BLE001 - the table reports it, the run goes on
            rows.append((check, f"FAILED: {type(err).__name__}: {str(err)[:120]}"))

    def stream():
        chunks = list(s.stream(PROMPT, duration=1.0, seed=0, chunk=0.5))
        return f" ({len(chunks)} chunks)"

    def grid_row():
        table = mg.run_grid(
            mg.grid(PROMPT, seed=0, duration=0.5), model=s, out=work / "grid", progress=False
        )
        return f" ({len(table)} row)"

    def finetune_step():
        rng = np.random.default_rng(0)
        frames = min(100, s.max_frames)
        data = [
            FT.Window(rng.integers(0, s.codebook_size, (s.num_codebooks, frames)), "x", f"{i}", 0)
            for i in range(2)
        ]
        FT.train(
            s,
            data,
            steps=1,
            batch_size=2,
            out=work / "ft",
            progress=False,
            plot=False,
            save_every=10**9,
        )
        return ""

    attempt("stream", stream)
    attempt("grid row", grid_row)
    attempt("fine-tune step", finetune_step)
    return rows


def speed_rows(args, device: str) -> list[dict]:
    """steps/s of transformers and the engine (dynamic, static) for every size, and the ratio."""
    import torch

    rows, static = [], step_supported()
    for name in args.sizes.split(","):
        s = build(name, device, args.precision)
        tf, _ = transformers_rate(s, args.steps)
        rows.append(dict(check="steps/s transformers", model=name, value=round(tf, 1)))
        for step in ("dynamic", "static"):
            if not static:
                rows.append(dict(check=f"steps/s engine {step}", model=name,
                                 value="n/a", note="mg.load has no step= in this checkout"))  # fmt: skip
                continue
            rate, _ = engine_rate(s, args.steps, step=step)
            rows.append(dict(check=f"steps/s engine {step}", model=name, value=round(rate, 1),
                             note=f"{rate / tf:.2f}x transformers"))  # fmt: skip
        if not static:
            rate, _ = engine_rate(s, args.steps)
            rows.append(dict(check="steps/s engine", model=name, value=round(rate, 1),
                             note=f"{rate / tf:.2f}x transformers"))  # fmt: skip
        del s
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return rows


def check_rows(args, device: str) -> list[dict]:
    """Agreement (fp32), peak memory, host syncs, the GPU paths, and what auto picks."""
    import torch

    from musicgen_nb.engine.precision import describe, fake_device

    first = args.sizes.split(",")[0]
    s = build(first, device, "fp32")
    rows = [dict(check="tokens = generate (fp32)", model=first,
                 value=f"{100 * agreement(s, args.agree_steps):.1f}%", note="same seed")]  # fmt: skip
    del s
    s = build(args.peak_model, device, args.precision)
    mem = peak_memory(s, args.peak_seconds)
    where = "device" if device.startswith("cuda") else "process RSS"
    rows.append(dict(check=f"peak GB, {args.peak_seconds:g} s", model=args.peak_model, value=round(mem["peak_gb"], 2),
                     note=f"{where}; estimate {mem['estimate_gb']:.2f}; T4 {T4_GB:g}, target < {TARGET_GB:g}"))  # fmt: skip
    syncs = syncs_per_step(s, args.steps)
    rows.append(dict(check="host syncs/step", model=args.peak_model,
                     value="n/a (cpu)" if syncs is None else round(syncs, 2)))  # fmt: skip
    del s
    small = build(first, device, "fp32" if device == "cpu" else args.precision)
    with tempfile.TemporaryDirectory() as work:
        for check, result in paths(small, Path(work)):
            rows.append(dict(check=check, model=first, value=result.split(" ")[0], note=result))
    with fake_device("cuda", capability=(7, 5)):
        rows.append(
            dict(check="auto on sm75 (faked T4)", model="-", value=describe("cuda")["auto"])
        )
    here = describe(torch.device(device))
    rows.append(
        dict(
            check="auto here",
            model="-",
            value=here["auto"],
            note=f"capability {here['capability']}",
        )
    )
    return rows


def table(rows: list[dict]) -> str:
    """The rows as one aligned text table."""
    cols = ("check", "model", "value", "note")
    cells = [[str(r.get(c, "")) for c in cols] for r in rows]
    width = [max(len(c), *(len(x[i]) for x in cells)) for i, c in enumerate(cols)]
    line = lambda xs: "  ".join(x.ljust(w) for x, w in zip(xs, width, strict=True)).rstrip()  # noqa: E731
    return "\n".join([line(cols), line(["-" * w for w in width]), *map(line, cells)])


def main(argv=None) -> int:
    """Parse the options, run every check, print the table (and write ``--json``)."""
    import torch

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--sizes", default="small,medium,large")
    p.add_argument("--precision", default="fp16")
    p.add_argument("--steps", type=int, default=150, help="decode steps per timed call")
    p.add_argument("--agree-steps", type=int, default=100)
    p.add_argument("--peak-model", default="large")
    p.add_argument("--peak-seconds", type=float, default=30.0)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("--device cuda needs a GPU here; use --device cpu with small sizes for a smoke run")
    if args.device == "cpu" and args.precision == "fp16":
        args.precision = "fp32"  # fp16 on the CPU is not a configuration anyone runs
    t0 = time.perf_counter()
    rows = speed_rows(args, args.device) + check_rows(args, args.device)
    print(table(rows))
    print(f"\n{args.device}, torch {torch.__version__}, {time.perf_counter() - t0:.0f} s in all")
    if args.json:
        args.json.write_text(json.dumps(dict(device=args.device, rows=rows), indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
