"""The ``musicgen-nb`` command: generate, demo, models.

Errors print one line (``musicgen-nb: error: ...``) and exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DEMO_MODEL = "facebook/musicgen-small"
DEMO_NOTEBOOK = "00_quickstart.ipynb"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="musicgen-nb", description="MusicGen in notebooks and on the command line."
    )
    sub = p.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="generate audio files from text prompts")
    g.add_argument("prompts", nargs="+", metavar="PROMPT", help="one or more text prompts")
    g.add_argument("--model", default=DEMO_MODEL, help="name, hub id, 'tiny' or a local directory")
    g.add_argument("--duration", type=float, default=8.0, help="seconds of audio (default 8)")
    g.add_argument("--guidance", type=float, default=3.0, help="guidance scale >= 1 (default 3)")
    g.add_argument("--temperature", type=float, default=1.0)
    g.add_argument("--top-k", type=int, default=250)
    g.add_argument("--top-p", type=float, default=0.0)
    g.add_argument("--seed", type=int, default=None)
    g.add_argument("--negative", default=None, help="negative prompt")
    g.add_argument("--format", choices=("wav", "flac"), default="wav")
    g.add_argument("--loudness", type=float, default=None, help="target LUFS, e.g. -14")
    g.add_argument("--device", default="auto")
    g.add_argument("--precision", default="auto")
    g.add_argument("--out", default="outputs", help="output directory (default ./outputs)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    d = sub.add_parser("demo", help="run the quickstart notebook headless into build/")
    d.add_argument(
        "--model",
        default=None,
        help=f"model for the demo (default {DEMO_MODEL}, else tiny offline)",
    )
    d.add_argument("--out", default="build", help="output directory (default ./build)")
    sub.add_parser("models", help="list the known checkpoints")
    gr = sub.add_parser("grid", help="generate a grid of clips from a YAML spec (resumable)")
    gr.add_argument(
        "spec", metavar="SPEC.yaml", help="model, grid axes and run settings; see docs/scale.md"
    )
    gr.add_argument("--out", required=True, help="run directory; rerun with it to finish a run")
    gr.add_argument(
        "--backend", choices=("local", "ray"), default=None, help="default: the spec's, else local"
    )
    gr.add_argument("--address", default=None, help="Ray cluster to join (default: a local Ray)")
    gr.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _generate(args) -> int:
    import musicgen_nb as mg

    s = mg.load(args.model, device=args.device, precision=args.precision)
    g = s.generate(
        args.prompts, duration=args.duration, guidance_scale=args.guidance, temperature=args.temperature,
        top_k=args.top_k, top_p=args.top_p, seed=args.seed, negative_prompt=args.negative,
        progress=not args.quiet,
    )  # fmt: skip
    for path in g.save(args.out, fmt=args.format, loudness=args.loudness):
        print(path)
    print(f"seed {g.seed}; {g.timings['steps_per_s']:.1f} steps/s", file=sys.stderr)
    return 0


def choose_demo_model(requested: str | None) -> tuple[str, str | None]:
    """Return (model, note): the hub model when cached or reachable, else ``tiny`` with a note."""
    if requested:
        return requested, None
    from huggingface_hub import try_to_load_from_cache

    from .models import hub_reachable

    cached = isinstance(try_to_load_from_cache(DEMO_MODEL, "config.json"), str)
    if cached or (os.environ.get("HF_HUB_OFFLINE") != "1" and hub_reachable()):
        return DEMO_MODEL, None
    note = (
        f"{DEMO_MODEL} is not cached and the Hugging Face hub is not reachable, "
        "so the demo runs on the offline 'tiny' model (random weights: its audio is noise)."
    )
    return "tiny", note


def notebooks_dir() -> Path:
    """The repo's notebooks/ folder (the demo runs from a checkout)."""
    here = Path(__file__).resolve().parent.parent / "notebooks"
    if (here / DEMO_NOTEBOOK).exists():
        return here
    cwd = Path.cwd() / "notebooks"
    if (cwd / DEMO_NOTEBOOK).exists():
        return cwd
    raise FileNotFoundError(
        f"cannot find notebooks/{DEMO_NOTEBOOK}; run the demo from a checkout of musicgen-nb"
    )


def _demo(args) -> int:
    import nbformat
    import papermill as pm
    from nbconvert import HTMLExporter

    model, note = choose_demo_model(args.model)
    if note:
        print(note)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    src = notebooks_dir() / DEMO_NOTEBOOK
    executed = out / DEMO_NOTEBOOK
    params = dict(MODEL=model)
    if model in ("tiny", "tiny-melody"):
        params["DURATION"] = 2.0
    pm.execute_notebook(
        str(src), str(executed), parameters=params, kernel_name="python3", cwd=str(out),
        progress_bar=False, execution_timeout=1800,
    )  # fmt: skip
    body, _ = HTMLExporter().from_notebook_node(nbformat.read(executed, as_version=4))
    html = executed.with_suffix(".html")
    html.write_text(body, encoding="utf-8")
    print(f"executed notebook: {executed}")
    print(f"HTML rendering:    {html}")
    return 0


def _models(args) -> int:
    import musicgen_nb as mg

    df = mg.list_models()
    cols = ["name", "checkpoint", "params", "melody", "stereo", "fp32_gb", "fp16_gb"]
    print(df[cols].to_string(index=False))
    print("offline presets: tiny, tiny-melody")
    return 0


def _grid(args) -> int:
    import yaml

    import musicgen_nb as mg

    spec = yaml.safe_load(Path(args.spec).read_text(encoding="utf-8"))
    if not isinstance(spec, dict) or "model" not in spec:
        raise ValueError(f"{args.spec}: the spec must be a mapping with 'model' and grid axes")
    run_keys = ("model", "backend", "batch_size", "precision", "device", "random_weights", "fmt",
                "metrics", "workers", "address")  # fmt: skip
    run = {k: spec.pop(k) for k in run_keys if k in spec}
    rows = spec.pop("rows", None)
    if rows is not None and spec:
        raise ValueError(
            f"{args.spec}: give either rows or grid axes, not both (extra: {sorted(spec)})"
        )
    grid = mg.grid(rows=rows) if rows is not None else mg.grid(**spec)
    if args.backend:
        run["backend"] = args.backend
    if args.address:
        run["address"] = args.address
    m = mg.run_grid(grid, out=args.out, progress=not args.quiet, **run)
    print(f"{len(m)} clips in {Path(args.out) / 'manifest.parquet'}")
    return 0


def main(argv=None) -> int:
    """Entry point of the ``musicgen-nb`` command."""
    args = _parser().parse_args(argv)
    handlers = {"generate": _generate, "demo": _demo, "models": _models, "grid": _grid}
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        print("musicgen-nb: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one line, not a traceback
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"musicgen-nb: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
