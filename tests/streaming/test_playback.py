"""The live player's start rule, the remaining-time estimate and the offline replay."""

from __future__ import annotations

import numpy as np
import pytest

from musicgen_nb.streaming import Chunk, should_start, simulate


def _chunks(arrivals, *, size=1.0, total=None):
    total = total or size * len(arrivals)
    rate = size / (arrivals[1] - arrivals[0])  # audio seconds per second
    out = []
    for i, a in enumerate(arrivals):
        final = i == len(arrivals) - 1
        out.append(
            Chunk(
                np.zeros((1, 1, int(size * 100)), np.float32),
                i * size,
                final,
                i,
                100,
                arrived=a,
                remaining=0.0 if final else (total - (i + 1) * size) / rate,
                total=total,
            )  # fmt: skip
        )
    return out


def test_should_start():
    kw = dict(total=10.0, piece=1.0)
    assert not should_start(pos=0, received=0.0, remaining=5, **kw)
    assert not should_start(pos=0, received=1.0, remaining=float("inf"), **kw)
    assert should_start(pos=0, received=1.0, remaining=5, final=True, **kw)
    # 1 s made per 1.2 s: the last chunk (at 9 s) lands after the remaining time.
    assert not should_start(pos=0, received=2.0, remaining=9.6, **kw)
    assert should_start(pos=0, received=3.0, remaining=7.0, **kw)
    # Resuming after a stall at pos: the same rule, measured from pos.
    assert not should_start(pos=3.0, received=3.5, remaining=1.0, **kw)
    assert should_start(pos=3.0, received=5.0, remaining=1.0, **kw)


def test_simulate_slower_than_real_time_never_stalls_with_the_rule():
    cs = _chunks([1.2 * (i + 1) for i in range(10)])  # 10 s made in 12 s
    r = simulate(cs, piece=1.0)
    assert r["first_audio"] == pytest.approx(1.2)
    assert r["gapless_start"] == pytest.approx(max(c.arrived - c.start for c in cs))
    assert r["stalls"] == 0
    assert r["gapless_start"] <= r["start"] <= r["gapless_start"] * 1.6
    # Starting at once (a rule with no margin) would stall.
    eager = simulate(cs, piece=0.0, margin=0.0)
    assert eager["stalls"] > 0 and eager["start"] < r["start"]


def test_simulate_a_hiccup_counts_a_stall():
    arrivals = [0.5 * (i + 1) for i in range(8)]
    arrivals[5:] = [a + 6 for a in arrivals[5:]]  # the generator stalls for 6 s
    r = simulate(_chunks(arrivals), piece=1.0)
    assert r["stalls"] == 1 and r["stall_s"] > 0


# ---- the remaining-time estimate under a slowing decode loop -------------------------------


def _slowing_chunks(estimate):
    """A 30 s stream whose steps slow down linearly (attention over a growing cache),
    chunks of 1 s (50 steps), with ``remaining`` from ``estimate(times, total)``."""
    from musicgen_nb.streaming import Chunk

    total, per = 1500, 50
    times, t = [], 2.0  # 2 s of text encoding before the first step
    chunks = []
    for d in range(1, total + 1):
        t += 0.025 + 1.5e-5 * d  # 25 ms a step at the start, 47.5 ms at the end
        times.append((d, t))
        if d % per == 0:
            i = d // per - 1
            chunks.append(
                Chunk(np.zeros((1, 1, 100), np.float32), float(i), d == total, i, 100,
                      arrived=t, remaining=0.0 if d == total else estimate(times, total),
                      total=30.0)
            )  # fmt: skip
    return chunks


def test_remaining_seconds_fits_a_slowing_loop():
    from musicgen_nb.streaming import remaining_seconds

    quad = [(d, 0.02 * d + 1e-5 * d * d) for d in range(1, 101)]
    assert remaining_seconds(quad, 200) == pytest.approx(2.3, rel=1e-6)
    line = [(d, 0.5 + 0.03 * d) for d in range(10, 60)]
    assert remaining_seconds(line, 100) == pytest.approx(41 * 0.03, rel=1e-6)  # 59 -> 100
    faster = [(d, 0.05 * d - 1e-4 * d * d) for d in range(1, 50)]  # a warm-up: not extrapolated
    assert 0 < remaining_seconds(faster, 100) < 0.05 * 51
    assert remaining_seconds(quad[:5], 200) == 0.0  # too few samples to fit
    assert remaining_seconds(quad, 100) == 0.0  # already there


def test_start_rule_does_not_stall_when_steps_slow_down():
    """With the average rate alone the player starts too early on a 30 s clip and runs dry;
    with the fitted estimate (what Stream reports) it does not, and starts near the
    gapless start."""
    from musicgen_nb.streaming import remaining_seconds, simulate

    def flat(times, total):
        (d0, t0), (d, t) = times[0], times[-1]
        return (total - d) * (t - t0) / (d - d0)

    naive = simulate(_slowing_chunks(flat), piece=1.0)
    fitted = simulate(
        _slowing_chunks(lambda ts, n: max(flat(ts, n), remaining_seconds(ts, n))), piece=1.0
    )
    assert naive["stalls"] >= 1
    assert fitted["stalls"] == 0
    assert fitted["gapless_start"] <= fitted["start"] <= fitted["gapless_start"] + 6.0
