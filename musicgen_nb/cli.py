"""The ``musicgen-nb`` command: generate, demo, models.

It behaves like a Unix tool: results (file paths, tables) go to stdout, messages to
stderr. Errors, usage errors included, print one line (``musicgen-nb: error: ...``)
and exit 2, never a traceback. Ctrl-C exits 130 with one line; an interrupted
``generate`` saves its partial audio as ``*_partial.wav`` and names it, and so does one
that runs out of memory (exit 2).

Add a subcommand by adding a parser in :func:`_parser` and a handler in ``HANDLERS``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

DEMO_MODEL = "facebook/musicgen-small"
DEMO_NOTEBOOK = "00_quickstart.ipynb"
#: Where the documentation is published (docs/ in the repo; ``make docs`` builds it).
DOCS_URL = "https://musicgen-nb.github.io/musicgen-nb/"
DEMO_NEEDS = "a checkout of musicgen-nb and its dev extra (pip install -e '.[dev]'); a wheel ships neither the notebooks nor papermill"


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error and a hint to ``--help`` instead of the usage text."""

    def error(self, message):
        self.exit(2, f"musicgen-nb: error: {message} (see '{self.prog} --help')\n")


#: Library argument names -> the flags that set them, for error messages.
FLAGS = {
    "duration": "--duration", "guidance_scale": "--guidance", "temperature": "--temperature",
    "top_k": "--top-k", "top_p": "--top-p", "seed": "--seed", "negative_prompt": "--negative",
    "prompts": "PROMPT", "fmt": "--format", "loudness": "--loudness",
    "target_lufs": "--loudness", "device": "--device", "precision": "--precision",
    "name_or_path": "--model",
}  # fmt: skip


def flag_names(message: str) -> str:
    """Say ``--guidance`` where the library says ``guidance_scale``, and so on.

    Examples
    --------
    >>> flag_names("guidance_scale must be >= 1, got 0.5")
    '--guidance must be >= 1, got 0.5'
    """
    pattern = r"(?<![\w-])(" + "|".join(map(re.escape, FLAGS)) + r")(?![\w-])"
    return re.sub(pattern, lambda m: FLAGS[m.group(1)], message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="musicgen-nb", description="MusicGen in notebooks and on the command line.")
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
    sub.add_parser(
        "nbval-sanitize",
        help="print musicgen-nb's nbval sanitize rules (for --nbval-sanitize-with)",
    )
    gr = sub.add_parser("grid", help="generate a grid of clips from a YAML spec (resumable)")
    gr.add_argument(
        "spec",
        metavar="SPEC.yaml",
        help=f"model, grid axes and run settings; see {DOCS_URL}guides/ray.html",
    )
    gr.add_argument("--out", required=True, help="run directory; rerun with it to finish a run")
    gr.add_argument(
        "--backend", choices=("local", "ray"), default=None, help="default: the spec's, else local"
    )
    gr.add_argument("--address", default=None, help="Ray cluster to join (default: a local Ray)")
    gr.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def check_generate_flags(args: argparse.Namespace) -> tuple:
    """Check every flag of ``generate`` before the model loads; return ``check_save``'s result.

    The model name, device, precision, sampling flags, prompts and the output folder
    are all checked here, in well under a second, so a typo costs no model load.

    Examples
    --------
    >>> args = _parser().parse_args(["generate", "jazz", "--model", "tiny", "--duration", "-3"])
    >>> check_generate_flags(args)
    Traceback (most recent call last):
    ...
    ValueError: --duration must be > 0 seconds, got -3.0
    """
    from .checkpoints.loading import resolve_device, resolve_source
    from .engine.precision import resolve_precision
    from .generation import check_save
    from .generation.checks import check_prompts, validate
    from .generation.request import check_negative

    try:  # the cheap checks first: resolve_source may build an offline checkpoint
        prompts = check_prompts(args.prompts)
        validate(
            _model_facts(args.model), duration=args.duration, guidance_scale=args.guidance,
            temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, do_sample=True,
            seed=args.seed, cfg_coef_beta=None, extend_stride=None,
        )  # fmt: skip
        check_negative(args.negative, len(prompts), args.guidance)
        resolve_precision(args.precision, resolve_device(args.device))
        resolve_source(args.model, random_weights=False)
    except (TypeError, ValueError) as err:
        raise type(err)(flag_names(str(err))) from None
    # last: it creates the folder (to prove it is writable) once everything else is right
    names = {"directory": "--out", "fmt": "--format", "loudness": "--loudness"}
    return check_save(args.out, args.format, args.loudness, names=names)


def _model_facts(name: str):
    """Frame rate and window of ``name`` from its stored spec, without loading it.

    A name that is not a known or offline architecture (a folder, a fine-tune's hub
    id) is a fine-tune of one: those share small's 50 frames/s and 30 s window.
    """
    from types import SimpleNamespace

    from .catalog import OFFLINE_PRESETS
    from .checkpoints.specs import known, offline_spec, short_name

    name = name if isinstance(name, str) else ""
    spec = offline_spec(name) if name in OFFLINE_PRESETS else known()[short_name(name) or "small"]
    codec, hop = spec["config"]["audio_encoder"], 1
    for ratio in codec["upsampling_ratios"]:
        hop *= ratio
    return SimpleNamespace(
        frame_rate=codec["sampling_rate"] // hop, max_duration=float(spec["meta"]["max_duration"]),
        is_melody=bool(spec["meta"]["melody"]), name=name,
    )  # fmt: skip


def _generate(args) -> int:
    from .engine.memory import OutOfMemory
    from .models import load

    # Every flag is checked before the model loads, so no load or audio is thrown away.
    out, fmt, loudness = check_generate_flags(args)
    try:
        s = load(args.model, device=args.device, precision=args.precision)
        g = s.generate(
            args.prompts, duration=args.duration, guidance_scale=args.guidance,
            temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed,
            negative_prompt=args.negative, progress=not args.quiet,
        )  # fmt: skip
    except (TypeError, ValueError) as err:
        raise type(err)(flag_names(str(err))) from None
    except OutOfMemory as err:  # keep the windows done, as Ctrl-C does
        if err.partial is None or not err.partial.audio.shape[-1]:
            raise
        paths = err.partial.save(out, fmt=fmt, loudness=loudness)
        print(*paths, sep="\n")
        first = str(err).strip().splitlines()[0]
        saved = ", ".join(str(p) for p in paths)
        print(f"musicgen-nb: error: {first}; partial audio saved as {saved}", file=sys.stderr)
        return 2
    if g.interrupted and not g.audio.shape[-1]:
        print("musicgen-nb: interrupted before the first frame; nothing saved", file=sys.stderr)
        return 130
    paths = g.save(out, fmt=fmt, loudness=loudness)
    for path in paths:
        print(path)
    if g.interrupted:
        done = ", ".join(str(p) for p in paths)
        print(
            f"musicgen-nb: interrupted after {g.duration:.2f} s of audio; partial audio saved "
            f"as {done}",
            file=sys.stderr,
        )
        return 130
    print(f"seed {g.seed}; {g.timings['steps_per_s']:.1f} steps/s", file=sys.stderr)
    return 0


def choose_demo_model(requested: str | None) -> tuple[str, str | None]:
    """Return (model, note): the hub model when cached or reachable, else ``tiny`` with a note.

    Examples
    --------
    >>> choose_demo_model("tiny-melody")
    ('tiny-melody', None)
    """
    if requested:
        return requested, None
    from ._util.hub import cached_or_reachable

    if cached_or_reachable(DEMO_MODEL):
        return DEMO_MODEL, None
    note = (
        f"{DEMO_MODEL} is not cached and the Hugging Face hub is not reachable, "
        "so the demo runs on the offline 'tiny' model (random weights: its audio is noise)."
    )
    return "tiny", note


def notebooks_dir() -> Path:
    """The repo's notebooks/ folder (the demo runs from a checkout).

    Examples
    --------
    >>> notebooks_dir().name  # in a checkout
    'notebooks'
    """
    here = Path(__file__).resolve().parent.parent / "notebooks"
    if (here / DEMO_NOTEBOOK).exists():
        return here
    cwd = Path.cwd() / "notebooks"
    if (cwd / DEMO_NOTEBOOK).exists():
        return cwd
    raise FileNotFoundError(f"cannot find notebooks/{DEMO_NOTEBOOK}: the demo needs {DEMO_NEEDS}")


def write_handout(executed: Path) -> Path:
    """Write the offline HTML handout of an executed notebook beside it; return its path.

    The handout is ``tools/handout.py``'s (the demo runs from a checkout): plotly.js inlined
    once, math as MathML, no script from a CDN, so the page works offline.

    Examples
    --------
    >>> import nbformat, tempfile
    >>> from pathlib import Path
    >>> nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("$x^2$")])
    >>> path = Path(tempfile.mkdtemp()) / "n.ipynb"
    >>> nbformat.write(nb, path)
    >>> html = write_handout(path).read_text()
    >>> "<math" in html, "cdn" in html
    (True, False)
    """
    import importlib.util

    tool = notebooks_dir().parent / "tools" / "handout.py"
    spec = importlib.util.spec_from_file_location("musicgen_nb_handout", tool)
    if spec is None or not tool.exists():
        raise FileNotFoundError(f"cannot find {tool}: the demo needs {DEMO_NEEDS}")
    handout = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(handout)
    return handout.export(executed, inline=True)  # one page that works alone


def _demo(args) -> int:
    try:
        import nbconvert  # noqa: F401  (the handout's exporter)
        import papermill as pm
    except ImportError as exc:
        raise ImportError(f"the demo needs {DEMO_NEEDS} ({exc.name} is missing)") from None

    src = notebooks_dir() / DEMO_NOTEBOOK
    from .checkpoints.loading import resolve_source
    from .generation import check_save

    model, note = choose_demo_model(args.model)
    resolve_source(model, random_weights=False)  # an unknown name fails here, in one line
    if note:
        print(note, file=sys.stderr)
    out, _, _ = check_save(args.out, names={"directory": "--out"})
    executed = out / DEMO_NOTEBOOK
    params = dict(MODEL=model)
    if model in ("tiny", "tiny-melody"):
        params["DURATION"] = 2.0
    try:
        pm.execute_notebook(
            str(src), str(executed), parameters=params, kernel_name="python3", cwd=str(out),
            progress_bar=False, execution_timeout=1800,
        )  # fmt: skip
    except BaseException as err:
        executed.unlink(missing_ok=True)  # no half-run notebook left behind
        ename, evalue = getattr(err, "ename", None), getattr(err, "evalue", None)
        if ename:
            first = str(evalue).strip().splitlines()[0] if str(evalue).strip() else ""
            raise RuntimeError(f"the demo notebook failed: {ename}: {first}") from None
        raise
    html = write_handout(executed)
    print(f"executed notebook: {executed}")
    print(f"HTML rendering:    {html}")
    return 0


def _models(args) -> int:
    from .catalog import OFFLINE_PRESETS, list_models

    df = list_models()
    cols = ["name", "checkpoint", "params", "melody", "stereo", "fp32_gb", "fp16_gb"]
    print(df[cols].to_string(index=False))
    print("offline presets (random weights, a few MB): " + ", ".join(OFFLINE_PRESETS))
    return 0


def _nbval_sanitize(args) -> int:
    from .testing import sanitize_rules

    sys.stdout.write(sanitize_rules())
    return 0


def _grid(args) -> int:
    from .grids import run_grid
    from .grids.spec import read_spec

    grid, run = read_spec(args.spec, dict(backend=args.backend, address=args.address))
    m = run_grid(grid, out=args.out, progress=not args.quiet, **run)
    print(f"{len(m)} clips in {Path(args.out) / 'manifest.csv'}")
    return 0


def main(argv=None) -> int:
    """Entry point of the ``musicgen-nb`` command: run it, return the exit code.

    Examples
    --------
    >>> main(["nbval-sanitize"])  # doctest: +ELLIPSIS
    # musicgen-nb's nbval sanitize rules: ...
    0
    """
    try:
        args = _parser().parse_args(argv)
        return HANDLERS[args.command](args)
    except KeyboardInterrupt:
        print("musicgen-nb: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `musicgen-nb models | head -1`: stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except Exception as exc:  # one line, not a traceback
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"musicgen-nb: error: {message}", file=sys.stderr)
        return 2


#: Subcommand -> handler(args) -> exit code.
HANDLERS = {
    "generate": _generate, "demo": _demo, "models": _models, "grid": _grid,
    "nbval-sanitize": _nbval_sanitize,
}  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
