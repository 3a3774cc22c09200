"""The thread tuner's decisions, fed step times and crowd figures (no timing in the test)."""

from __future__ import annotations

import pytest

from musicgen_nb.engine.tuner import ThreadTuner

IDLE = {2: 0.0167, 1: 0.0250}  # steps/s 59.8 and 40.0 (the int8 figures)
BUSY = {2: 0.0633, 1: 0.0271}  # 15.8 and 36.9 beside one busy process
HOG = {2: 0.64, 1: 0.048}  # measured here (small, int8): a 2-thread step beside a busy process


def _run(tuner, speed, steps):
    """Feed ``steps`` step times at the tuner's current count; return the counts used."""
    used = []
    for _ in range(steps):
        used.append(tuner.count)
        tuner.observe(speed[tuner.count])
    return used


def test_idle_it_stays_at_the_most_threads_and_probes_less_and_less():
    t = ThreadTuner(2, window=8, probe_every=128)
    used = _run(t, IDLE, 4000)
    assert t.home == 2 and t.count == 2
    assert used.count(1) / len(used) < 0.02  # the probes cost < 1 % of the idle speed
    gaps = [i for i, d in enumerate(t.decisions) if d[0] == "probe"]
    assert len(gaps) <= 8 and t.every == 8 * 128


def test_beside_a_busy_process_it_moves_to_one_thread_within_three_windows():
    t = ThreadTuner(2, window=8, probe_every=128)
    _run(t, IDLE, 200)
    used = _run(t, BUSY, 400)
    assert t.home == 1
    assert used[24:].count(2) <= 16  # the slow windows: at most one probe of 2 later
    speed = sum(1 / BUSY[c] for c in used) / len(used)
    assert speed >= 0.6 * (1 / IDLE[2])  # the target: >= 60 % of the idle speed


def test_when_the_cores_free_up_it_goes_back_to_two_threads():
    t = ThreadTuner(2, window=8, probe_every=128)
    _run(t, BUSY, 200)
    assert t.home == 1
    _run(t, IDLE, 8 * 128 + 32)
    assert t.home == 2 and ("move", 2) in t.decisions


def test_a_noisy_neighbour_does_not_make_it_flap():
    t = ThreadTuner(2, window=8, probe_every=128, margin=0.05)
    _run(t, {2: 0.020, 1: 0.0205}, 2000)  # 1 thread within the margin: keep 2
    assert t.home == 2 and not any(d[0] == "move" for d in t.decisions)


def test_one_core_never_changes_and_bad_counts_are_named():
    t = ThreadTuner(1)
    assert set(_run(t, {1: 0.01}, 500)) == {1} and t.decisions == []
    with pytest.raises(ValueError, match="most must be an int >= 1, got 0"):
        ThreadTuner(0)


def test_three_threads_climb_down_one_at_a_time():
    t = ThreadTuner(3, window=4, probe_every=64)
    _run(t, {3: 0.05, 2: 0.03, 1: 0.02}, 300)
    assert t.home == 1 and [d for d in t.decisions if d[0] == "move"] == [("move", 2), ("move", 1)]


def test_a_session_that_starts_beside_a_busy_process_moves_after_two_windows():
    t = ThreadTuner(2, window=8, probe_every=128)
    used = _run(t, BUSY, 24)
    assert used == [2] * 8 + [1] * 16 and t.home == 1


def test_a_probe_far_slower_than_home_ends_after_one_step():
    t = ThreadTuner(2, window=8, probe_every=64)
    _run(t, BUSY, 24)  # home is 1 now
    used = _run(t, {2: 0.5, 1: 0.0271}, 2000)
    assert used.count(2) == sum(1 for d in t.decisions if d == ("probe", 2))  # one step each
    assert ("abort", 1) in t.decisions and t.home == 1


def test_a_new_window_forgets_the_previous_windows_baseline():
    t = ThreadTuner(2, window=2, probe_every=10**6)
    _run(t, IDLE, 12)  # both counts measured, home 2
    decided = len(t.decisions)
    t.begin()  # the next window: longer, its steps slower for that reason alone
    _run(t, {2: IDLE[2] * 1.5, 1: IDLE[1] * 1.5}, 4)
    assert len(t.decisions) == decided  # no probe: a new baseline, not two strikes


def _crowded(tuner, speed, crowd, steps):
    """Feed ``steps`` steps with others using ``crowd`` cores meanwhile; return the counts used."""
    used = []
    for _ in range(steps):
        used.append(tuner.count)
        seconds = speed[tuner.count]
        tuner.observe(seconds, others=crowd * seconds)
    return used


def test_a_new_tuner_beside_a_busy_process_never_runs_two_threads():
    t = ThreadTuner(2, cpus=2, look=2)
    used = _crowded(t, HOG, 1.0, 2000)
    assert set(used) == {1} and t.decisions[0] == ("look", 1) and t.home == 1
    speed = sum(1 / BUSY[c] for c in used) / len(used)  # the figures, same choices
    assert speed >= 0.6 * (1 / IDLE[2])  # the target: >= 60 % of the idle speed


def test_a_new_tuner_on_an_idle_machine_costs_under_one_percent():
    t = ThreadTuner(2, cpus=2, look=2)
    used = _crowded(t, IDLE, 0.02, 4000)
    assert t.home == 2 and t.decisions[:2] == [("look", 2), ("probe", 1)]
    assert used[:2] == [1, 1] and used.count(1) == 2 + 8  # the look, then 1 measured once
    speed = sum(1 / IDLE[c] for c in used) / len(used)
    assert speed >= 0.99 * (1 / IDLE[2])  # no loss when idle


def test_a_busy_process_that_arrives_is_yielded_to_after_one_slow_step():
    t = ThreadTuner(2, cpus=2, look=2)
    _crowded(t, IDLE, 0.0, 200)
    used = _crowded(t, HOG, 1.0, 200)
    assert used.count(2) == 1 and ("yield", 1) in t.decisions and t.home == 1


def test_when_the_busy_process_leaves_it_is_back_on_two_threads_within_two_windows():
    t = ThreadTuner(2, cpus=2, look=2)
    _crowded(t, HOG, 1.0, 100)
    used = _crowded(t, IDLE, 0.0, 100)
    assert t.home == 2 and t.decisions[-1] == ("move", 2) and used[16:] == [2] * 84


def test_a_crowd_near_the_line_does_not_make_it_flap():
    t = ThreadTuner(2, cpus=2, look=2)
    _crowded(t, IDLE, 0.0, 100)
    decided = len(t.decisions)
    for crowd in [0.55, 0.45] * 50:  # a neighbour that uses about half a core
        _crowded(t, IDLE, crowd, 8)
    new = t.decisions[decided:]
    assert len(new) <= 1 and all(d == ("yield", 1) for d in new)  # up again only below 0.25 cores


def test_it_never_runs_more_threads_than_free_cpus():
    t = ThreadTuner(4, cpus=2, look=2)  # a count set above the machine's CPUs
    used = _crowded(t, {4: 0.08, 3: 0.06, 2: 0.02, 1: 0.03}, 0.0, 1000)
    assert max(used) == 2 and t.home == 2
    t = ThreadTuner(4, cpus=4, look=2)
    used = _crowded(t, {4: 0.5, 3: 0.01, 2: 0.02, 1: 0.03}, 1.0, 1000)  # one core taken
    assert max(used) == 3 and t.home == 3


def test_without_crowd_figures_a_looking_tuner_decides_from_times_alone():
    t = ThreadTuner(2, look=2)
    used = _run(t, BUSY, 40)
    assert used[:2] == [1, 1] and t.decisions[0] == ("look", 2) and t.home == 1


def test_a_crowd_reading_waits_for_enough_steps_to_span_the_kernel_ticks():
    t = ThreadTuner(2, cpus=2, look=2, resolution=0.05)
    fast = {2: 0.0006, 1: 0.0003}  # a tiny model: far shorter steps than a 10 ms tick
    assert set(_crowded(t, fast, 2.0, 150)) == {1} and t.looking  # 45 ms: not read yet
    _crowded(t, fast, 2.0, 100)
    assert not t.looking and t.decisions == [("look", 1)] and t.cap == 1
