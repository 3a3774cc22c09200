"""Run a bad call in a fresh Python whose address space is capped (``RLIMIT_AS``), or whose
disk is a small tmpfs (:func:`on_small_disk`).

A regression that allocates gigabytes then fails inside the child (MemoryError) instead of
taking down the machine. The child prints the error it caught and its own peak resident
memory, so a test can show both the message and that nothing big was allocated.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import sys

import pytest

# Peak resident memory of this process: VmHWM, which starts afresh at exec. (ru_maxrss does
# not: a child forked from pytest inherits the parent's peak.)
PEAK_RSS = (
    "def peak_rss():\n"
    "    with open('/proc/self/status') as f:\n"
    "        return next(int(l.split()[1]) * 1024 for l in f if l.startswith('VmHWM:'))\n"
)


def run_capped(code: str, *, gb: float = 2.5, timeout: float = 240):
    """Run ``code`` (after ``import numpy as np, musicgen_nb as mg``; it may call ``peak_rss()``)
    in a fresh Python capped at ``gb`` of address space; return the ``CompletedProcess``.

    One that runs for ages hits ``timeout``.
    """

    def cap():
        limit = int(gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    env = dict(os.environ, OMP_NUM_THREADS="1", MALLOC_ARENA_MAX="2")
    return subprocess.run(
        [sys.executable, "-c", PEAK_RSS + "import numpy as np, musicgen_nb as mg\n" + code],
        capture_output=True, text=True, timeout=timeout, env=env, preexec_fn=cap,
    )  # fmt: skip


def capped_error(code: str, exc: str = "ValueError", *, gb: float = 2.5, timeout: float = 240):
    """Run ``code`` (after ``import numpy as np, musicgen_nb as mg``) capped at ``gb`` of address
    space; return ``(message, peak_rss_bytes)`` of the ``exc`` it raised.

    Fails the calling test when the code raises nothing, raises something else, or the child
    dies (a MemoryError under the cap counts as "something else").
    """
    body = "".join(f"    {line}\n" for line in code.splitlines())
    script = (
        f"try:\n{body}except {exc} as e:\n    print('CAUGHT', e)\nelse:\n    print('NO ERROR')\n"
        "print('PEAK', peak_rss())\n"
    )
    proc = run_capped(script, gb=gb, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-2000:]
    caught = re.search(r"^(CAUGHT .*|NO ERROR)$", proc.stdout, re.M).group(1)
    assert caught.startswith("CAUGHT"), caught
    peak = int(re.search(r"^PEAK (\d+)$", proc.stdout, re.M).group(1))
    return caught[len("CAUGHT ") :], peak


def capped_ok(code: str, *, gb: float = 2.5, timeout: float = 240) -> str:
    """Run ``code`` under the same cap; it must succeed. Returns its stdout.

    ``code`` may call ``peak_rss()`` (bytes).
    """
    proc = run_capped(code, gb=gb, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


SMALL_DISK = 'set -e\nmount -t tmpfs -o size="$1" tmpfs "$2"\nshift 2\nexec env "$@"\n'


def on_small_disk(tmp_path, size: str, code: str, env: str = "") -> tuple:
    """Run Python ``code`` in a private mount namespace where ``tmp_path / "small"`` is a
    ``size`` tmpfs (``sys.argv[1]`` is that folder; ``env``: ``NAME=value`` words, where
    ``{mnt}`` stands for it). Returns ``(folder, {key: rest})`` of the ``key rest`` lines
    the code printed. Skips without root, ``unshare`` or the right to mount.
    """
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare to mount a small tmpfs")
    mnt = tmp_path / "small"
    mnt.mkdir()
    words = [w.replace("{mnt}", str(mnt)) for w in env.split()]
    proc = subprocess.run(
        ["unshare", "-m", "sh", "-c", SMALL_DISK, "sh", size, str(mnt), *words,
         sys.executable, "-c", code, str(mnt)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if "mount" in proc.stderr and proc.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return mnt, dict(line.split(" ", 1) for line in proc.stdout.strip().splitlines())


#: Loading tiny and generating 1 s peaks at about 1.1 GB of address space.
CAP_GB = 2.5


def expect_error(code: str, exc: str, match: str, **kw) -> str:
    """:func:`capped_error` under :data:`CAP_GB`, asserting that ``match`` is in its message."""
    msg, _ = capped_error(code, exc, **{"gb": CAP_GB, **kw})
    out = f"CAUGHT {msg}"
    assert re.search(match, out), out
    return out
