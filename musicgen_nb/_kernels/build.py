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
import json
import os
import platform
import struct
from pathlib import Path

import torch

from .._util.env import cache_root, env_switch
from .._util.files import sha256_file, write_temp

__all__ = [
    "load", "status", "sources", "build_dir", "check_library", "CFLAGS", "CSRC", "LIBRARY",
    "SWITCH",
]  # fmt: skip

#: The folder of the C++ sources, inside the package.
CSRC = Path(__file__).with_name("csrc")
#: The built library's file name in the build folder; its size and SHA-256 are kept beside it
#: in ``LIBRARY + ".check"`` when a process built (or relinked) it and loaded it.
LIBRARY = "musicgen_nb_kernels.so"
#: The environment variable that turns the kernels off (``0/false/off/no``).
SWITCH = "MUSICGEN_NB_KERNELS"

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
    base = cache_root()  # refuses a MUSICGEN_NB_CACHE that is a file, by name
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


def check_library(path: str | os.PathLike) -> str | None:
    """Why the built library at ``path`` must not be loaded, or None when it may.

    Loading a truncated shared library maps pages past its end, and the first
    call into them kills the process with SIGBUS, with no message. So before
    loading: when ``<path>.check`` (written when the library was built and loaded) exists,
    the size and SHA-256 must match it; without it, the ELF header must be whole
    and every loadable segment and the section table must lie inside the file.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> bad = pathlib.Path(tempfile.mkdtemp()) / "x.so"
    >>> _ = bad.write_bytes(bytes([127]) + b"ELF")
    >>> check_library(bad)
    'not a whole ELF library (4 bytes)'
    """
    path = Path(path)
    size = path.stat().st_size
    stamp = path.with_name(path.name + ".check")
    if stamp.exists():
        try:
            want = json.loads(stamp.read_text())
            expected = (int(want["size"]), str(want["sha256"]))
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            return f"its check file {stamp.name} is damaged"
        if size != expected[0]:
            return f"{size} bytes where {expected[0]} were built (truncated or replaced)"
        if sha256_file(path) != expected[1]:
            return "its SHA-256 differs from the one recorded when it was built"
        return None
    return _elf_problem(path, size)


def _elf_problem(path: Path, size: int) -> str | None:
    """What is missing from an ELF64 little-endian library of ``size`` bytes, or None."""
    with open(path, "rb") as f:
        head = f.read(64)
        if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
            return f"not a whole ELF library ({size} bytes)"
        phoff, shoff = struct.unpack_from("<QQ", head, 0x20)
        phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", head, 0x36)
        ends = [phoff + phentsize * phnum, shoff + shentsize * shnum]
        f.seek(phoff)
        table = f.read(phentsize * phnum)
        if len(table) < phentsize * phnum:
            return f"truncated: {size} bytes, its program headers end at {ends[0]}"
        for i in range(phnum):
            kind, _, offset, _, _, filesz = struct.unpack_from("<IIQQQQ", table, i * phentsize)
            if kind == 1:  # PT_LOAD: mapped from the file
                ends.append(offset + filesz)
    if max(ends) > size:
        return f"truncated: {size} bytes where its headers need {max(ends)}"
    return None


def _set_aside(library: Path) -> str | None:
    """Remove a built library that must not be loaded (see :func:`check_library`); say why."""
    if not library.exists():
        return None
    problem = check_library(library)
    if problem is not None:
        # A process that mapped it keeps its pages; the next load rebuilds the file.
        library.unlink()
        library.with_name(library.name + ".check").unlink(missing_ok=True)
    return problem


def _record(library: Path) -> None:
    """Keep a library built here: its size and SHA-256 beside it (atomically), for :func:`check_library`."""
    stamp = library.with_name(library.name + ".check")
    want = {"size": library.stat().st_size, "sha256": sha256_file(library)}
    tmp = write_temp(library.parent, stamp.name, json.dumps(want).encode())
    tmp.replace(stamp)


def _identity(library: Path) -> tuple | None:
    """What changes when the library is written again (None: there is none)."""
    if not library.exists():
        return None
    st = library.stat()
    return (st.st_ino, st.st_size, st.st_mtime_ns)


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
        library = build / LIBRARY
        damaged = _set_aside(library)
        before = _identity(library)
        warnings.simplefilter("ignore")
        try:
            _build_and_load(cpp_extension, build, cpp)
        except Exception as exc:
            if damaged is None:
                raise
            raise RuntimeError(
                f"the built kernel library {library} was damaged ({damaged}); it was removed, "
                f"and rebuilding it failed: {type(exc).__name__}: {exc}"
            ) from exc
        if _identity(library) != before:  # built or relinked by this process: record it
            _record(library)


def _build_and_load(cpp_extension, build: Path, cpp: list[Path]) -> None:
    """Build (ninja: only what is missing or stale) and load the library with torch."""
    cpp_extension.load(
        name=LIBRARY.removesuffix(".so"),
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
        :func:`status` says why not otherwise. ``MUSICGEN_NB_KERNELS`` set to
        ``0``, ``false``, ``off`` or ``no`` (any case) turns the kernel off. A
        built library that is damaged (:func:`check_library`) is removed and
        rebuilt, never loaded; where it cannot be rebuilt, the reason says so.

    Raises
    ------
    ValueError
        ``MUSICGEN_NB_KERNELS`` is set to something else than those and
        ``1/true/on/yes``, or ``MUSICGEN_NB_CACHE`` is a file: each named.

    Examples
    --------
    >>> from musicgen_nb import _kernels
    >>> isinstance(_kernels.load(), bool)
    True
    """
    if not env_switch(SWITCH, default=True):  # refuses a value it does not know, by name
        _STATUS.update(loaded=False, reason=f"turned off by {SWITCH}={os.environ[SWITCH]}")
        return False
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        _STATUS.update(loaded=False, reason=f"built only on x86-64 Linux, not {platform.machine()}")
        return False
    cache_root()  # a MUSICGEN_NB_CACHE that is a file is refused by name, not a fallback
    try:
        texts = sources()
        build = build_dir(texts)
        build.mkdir(parents=True, exist_ok=True)
        _compile(build, _copy_sources(build, texts))
    except Exception as exc:  # noqa: BLE001 - no compiler, no ninja, ...: use the fallback
        _STATUS.update(loaded=False, reason=f"{type(exc).__name__}: {str(exc)[:600]}")
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
