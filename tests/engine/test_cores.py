"""The CPU meter: others' CPU time on this process's CPUs, from the kernel's counters."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from musicgen_nb.engine.cores import CoreMeter, usable_cpus

LINE = "cpu{n} {user} 0 {system} {idle} 0 0 0 {steal} 0 0\n"


def _stat(path: Path, rows: dict[int, tuple[int, int, int, int]]) -> None:
    """A file in /proc/stat's format: per CPU (user, system, idle, steal) in ticks."""
    text = "cpu  1 2 3 4 5 6 7 8 0 0\n"  # the total line is not read
    for n, (user, system, idle, steal) in rows.items():
        text += LINE.format(n=n, user=user, system=system, idle=idle, steal=steal)
    path.write_text(text + "intr 1 2 3\nctxt 99\n")


def test_a_lap_is_the_busy_ticks_of_its_cpus_less_this_process_time(tmp_path):
    stat, own = tmp_path / "stat", iter([0.0, 0.30, 0.50])
    _stat(stat, {0: (100, 10, 500, 0), 1: (200, 20, 400, 0), 2: (0, 0, 0, 0)})
    meter = CoreMeter(cpus=[0, 1], stat=stat, own=lambda: next(own))
    meter.tick = 100.0
    # CPU 0 busy 40 ticks more, CPU 1 busy 50 more (10 of them steal), CPU 2 is not ours
    _stat(stat, {0: (130, 20, 560, 0), 1: (230, 30, 450, 10), 2: (999, 999, 0, 0)})
    assert meter.lap() == pytest.approx(0.90 - 0.30)  # 90 ticks busy, 0.30 s of them ours
    assert meter.size == 2
    assert meter.lap() == 0.0  # nothing moved but our own clock: never below zero


def test_another_process_on_our_cpus_is_counted():
    meter = CoreMeter.open()
    if meter is None:
        pytest.skip("no /proc/stat here (not Linux)")
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        stat = Path(f"/proc/{hog.pid}/stat")

        def hog_seconds() -> float:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / meter.tick  # utime + stime

        meter.lap()
        start, deadline = hog_seconds(), time.monotonic() + 120
        while hog_seconds() < start + 0.5:  # wait on the hog's own counter, not a guessed time
            assert time.monotonic() < deadline, "the busy process never got 0.5 s of CPU"
            time.sleep(0.01)
        used = hog_seconds() - start
        others = meter.lap()
    finally:
        hog.kill()
        hog.wait()
    assert others >= used - 3 / meter.tick  # the hog's CPU time, within the counters' ticks


def test_usable_cpus_are_this_process_affinity():
    cpus = usable_cpus()
    assert cpus == sorted(set(cpus)) and len(cpus) >= 1


def test_rate_is_a_lap_over_the_wall_time_since_the_last_reading(tmp_path):
    stat = tmp_path / "stat"
    _stat(stat, {0: (0, 0, 0, 0)})
    meter = CoreMeter(cpus=[0], stat=stat, own=lambda: 0.0)
    meter.tick, meter.when = 100.0, meter.when - 0.5  # as if the last reading was 0.5 s ago
    _stat(stat, {0: (40, 10, 0, 0)})  # others kept the CPU busy for 0.5 s
    assert 0.9 < meter.rate() <= 1.0  # about one core (the wall time runs on a little)
