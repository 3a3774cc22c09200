"""Tests for musicgen_nb._util.memory: the memory the size checks compare against."""

from __future__ import annotations

import math
import resource
import subprocess
import sys

from musicgen_nb._util.memory import MEASURED, available_bytes


def test_available_bytes_is_a_plausible_figure():
    got = available_bytes()
    assert got is None or (isinstance(got, int) and got >= 0)
    with open("/proc/meminfo") as f:
        total = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemTotal:"))
    assert got is not None and 0 < got <= total


def test_available_bytes_respects_an_address_space_limit():
    limit = 3 * 2**30

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    out = subprocess.run(
        [sys.executable, "-c",
         "from musicgen_nb._util.memory import available_bytes; print(available_bytes())"],
        capture_output=True, text=True, preexec_fn=cap, timeout=60, check=True,
    )  # fmt: skip
    got = int(out.stdout.strip())
    assert 0 < got < limit  # what is left under the cap, less what Python already maps


def test_measured_rows_name_known_architectures():
    assert [row["name"] for row in MEASURED] == ["small", "medium", "large", "melody"]
    for row in MEASURED:
        assert row["est_peak_gb_fp16_30s"] < row["est_peak_gb_fp32_30s"]
        assert all(isinstance(v, float) and math.isfinite(v) for k, v in row.items() if k != "name")
