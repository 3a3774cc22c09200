"""Build the C++ kernels of ``csrc/`` once per machine, and load them.

The sources are real C++ files shipped inside the package (``csrc/*.cpp`` and
``csrc/*.h``). :func:`load` copies them into ``<cache>/kernels/<hash>/``
(``MUSICGEN_NB_CACHE``, else ``~/.cache/musicgen_nb``), where ``<hash>`` covers
the files' names and texts, the compiler flags, torch's version and the CPU, and
compiles them there with :mod:`torch.utils.cpp_extension`; later processes only
load the built library. Where no compiler (or ninja) exists, :func:`load` returns
False, :func:`status` says why, and the callers run the PyTorch references
(:mod:`musicgen_nb._kernels.reference`) or fbgemm instead.

The ops' schemas are defined here, in Python, so that TorchScript can compile
calls to ``torch.ops.musicgen_nb.*`` whether or not the C++ library is loaded
(the engine only calls them when :func:`load` succeeded).
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
from pathlib import Path

import torch

from .._util.files import write_temp

__all__ = ["load", "status", "sources", "build_dir", "CFLAGS", "CSRC"]

#: The folder of the C++ sources, inside the package.
CSRC = Path(__file__).with_name("csrc")

# No fused multiply-adds beyond the ones written: the linear's epilogue then
# rounds as linear_int8_reference does.
CFLAGS = ["-O3", "-march=native", "-fopenmp", "-ffp-contract=off"]

_LIB = torch.library.Library("musicgen_nb", "DEF")  # noqa: TOR901 - kept alive for the process
_LIB.define(
    "attend_int8(Tensor q, Tensor k, Tensor v, Tensor(a!) k_cache, Tensor(b!) k_scale, "
    "Tensor(c!) v_cache, Tensor(d!) v_scale, int pos, float scaling) -> Tensor"
)
_LIB.define(
    "linear_int8(Tensor x, Tensor w, Tensor scale, Tensor? bias, bool gelu=False, "
    "Tensor? ln_weight=None, Tensor? ln_bias=None, float eps=1e-05, Tensor? residual=None) -> Tensor"
)
_LIB.define("attend_cross(Tensor q, Tensor k, Tensor v, Tensor? bias, float scaling) -> Tensor")

_STATUS = {"loaded": False, "reason": "not tried yet"}


def sources() -> dict[str, str]:
    """The C++ sources the kernels are built from: ``{file name: text}``, sorted by name.

    Examples
    --------
    >>> from musicgen_nb._kernels import build
    >>> sorted(build.sources())
    ['attend_cross.cpp', 'attend_int8.cpp', 'common.h', 'linear_int8.cpp']
    """
    files = sorted(p for p in CSRC.iterdir() if p.suffix in (".cpp", ".h"))
    if not any(p.suffix == ".cpp" for p in files):
        raise FileNotFoundError(
            f"no C++ sources in {CSRC} (the package was installed without them)"
        )
    return {p.name: p.read_text() for p in files}


def build_dir(texts: dict[str, str] | None = None) -> Path:
    """Where the kernels are built: keyed by the sources, the flags, torch's version and the CPU.

    Parameters
    ----------
    texts : dict, optional
        ``{file name: text}`` of the sources; default :func:`sources`.

    Examples
    --------
    >>> from musicgen_nb._kernels import build
    >>> build.build_dir({"a.cpp": "x"}) != build.build_dir({"a.cpp": "y"})
    True
    """
    texts = sources() if texts is None else texts
    root = os.environ.get("MUSICGEN_NB_CACHE")
    base = Path(root) if root else Path.home() / ".cache" / "musicgen_nb"
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        cpu = platform.processor()
    digest = hashlib.sha256()
    for name, text in sorted(texts.items()):
        digest.update(f"{name}\0{text}\0".encode())
    digest.update(f"{' '.join(CFLAGS)}|{torch.__version__}|{cpu}".encode())
    return base / "kernels" / digest.hexdigest()[:16]


def _copy_sources(build: Path, texts: dict[str, str]) -> list[Path]:
    """Copy the sources into ``build`` (each file whole or not at all); return the ``.cpp`` files.

    Every missing or different file is first written to a temporary file; only
    when all of them are written are they renamed into place, so a full disk
    leaves no file behind and a parallel process never reads half a file.
    """
    staged = []
    try:
        for name, text in texts.items():
            dst = build / name
            if not dst.exists() or dst.read_text() != text:
                staged.append((write_temp(build, name, text.encode()), dst))
        for tmp, dst in staged:
            tmp.replace(dst)
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
    return [build / name for name in texts if name.endswith(".cpp")]


def _compile(build: Path, cpp: list[Path]) -> None:
    """Compile and load the library in ``build``, holding the kernels' own build lock."""
    import fcntl
    import warnings

    from torch.utils import cpp_extension

    with open(build / ".build.flock", "w") as held, warnings.catch_warnings():
        # torch's own build lock is a file (`lock`) that a process killed mid-build
        # leaves behind, and every later process then waits on it forever. This
        # lock is the kernel's: it goes with its process. Holding it, no other
        # process of ours is building, so a `lock` file found now is stale.
        fcntl.flock(held, fcntl.LOCK_EX)
        (build / "lock").unlink(missing_ok=True)
        warnings.simplefilter("ignore")
        cpp_extension.load(
            name="musicgen_nb_kernels",
            sources=[str(p) for p in cpp],
            extra_cflags=CFLAGS,
            extra_ldflags=["-fopenmp"],
            build_directory=str(build),
            is_python_module=False,
            verbose=False,
        )


@functools.cache
def load() -> bool:
    """Build (once per machine) and load the C++ kernels; False where that cannot be done.

    Returns
    -------
    bool
        True when ``torch.ops.musicgen_nb.attend_int8`` runs the C++ kernel.
        :func:`status` says why not otherwise. ``MUSICGEN_NB_KERNELS=0`` turns
        the kernel off.

    Examples
    --------
    >>> from musicgen_nb import _kernels
    >>> isinstance(_kernels.load(), bool)
    True
    """
    if os.environ.get("MUSICGEN_NB_KERNELS", "1") == "0":
        _STATUS.update(loaded=False, reason="turned off by MUSICGEN_NB_KERNELS=0")
        return False
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        _STATUS.update(loaded=False, reason=f"built only on x86-64 Linux, not {platform.machine()}")
        return False
    try:
        texts = sources()
        build = build_dir(texts)
        build.mkdir(parents=True, exist_ok=True)
        _compile(build, _copy_sources(build, texts))
    except Exception as exc:  # noqa: BLE001 - no compiler, no ninja, ...: use the fallback
        _STATUS.update(loaded=False, reason=f"{type(exc).__name__}: {str(exc)[:300]}")
        return False
    _STATUS.update(loaded=True, reason=f"built in {build}")
    return True


def status() -> dict:
    """Whether the C++ kernel is loaded, and why not (``{"loaded": bool, "reason": str}``).

    Examples
    --------
    >>> from musicgen_nb._kernels import build
    >>> sorted(build.status())
    ['loaded', 'reason']
    """
    return dict(_STATUS)
