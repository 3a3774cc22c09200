"""The thread tuner's decisions, fed step times (no timing in the test), and the engine's use of it."""

from __future__ import annotations

import pytest
import torch

from musicgen_nb.engine import threads
from musicgen_nb.engine.threads import ThreadTuner, tuner_for

IDLE = {2: 0.0167, 1: 0.0250}  # steps/s 59.8 and 40.0 (the int8 figures)
BUSY = {2: 0.0633, 1: 0.0271}  # 15.8 and 36.9 beside one busy process


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


def test_tuner_for_is_per_owner_and_thread_cpu_only_and_switchable(monkeypatch):
    owner = torch.nn.Linear(1, 1)
    assert tuner_for(owner, torch.device("cpu")) is tuner_for(owner, torch.device("cpu"))
    assert tuner_for(owner, torch.device("cuda")) is None
    monkeypatch.setenv("MUSICGEN_NB_ADAPTIVE_THREADS", "off")
    assert tuner_for(owner, torch.device("cpu")) is None
    monkeypatch.setenv("MUSICGEN_NB_ADAPTIVE_THREADS", "perhaps")
    with pytest.raises(ValueError, match="MUSICGEN_NB_ADAPTIVE_THREADS must be"):
        tuner_for(owner, torch.device("cpu"))


def test_the_engine_feeds_it_and_puts_the_process_count_back(tiny):
    from _engine import make_cond

    from musicgen_nb.engine import Decoder

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        dec = Decoder(tiny.model, make_cond(tiny), max_len=4)
        kept = tuner_for(tiny.model.decoder, torch.device("cpu"), 2)
        kept.window, kept.count = 100, 1  # as after a move: the steps run with 1 thread
        bos = torch.full((4, 4, 1), tiny.special_id)
        dec.step(bos)
        dec.step(bos)
        assert len(dec.tuner.times) == 2 and torch.get_num_threads() == 1
        dec.step(bos)  # the window's last step (the loop never feeds position 3)
        assert len(dec.tuner.times) == 3 and torch.get_num_threads() == 2
    finally:
        threads.forget(tiny.model.decoder)
        torch.set_num_threads(before)


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


class _Stop:
    """A stop flag that is set (or raises) at its ``n``-th look (as a stream stopped mid-window)."""

    def __init__(self, n, error=None):
        self.n, self.error, self.looks, self.seen = n, error, 0, []

    def is_set(self):
        self.seen.append(torch.get_num_threads())  # the count the steps run with
        self.looks += 1
        if self.looks >= self.n and self.error is not None:
            raise self.error
        return self.looks >= self.n


def _window(s, stop=None, frames=12):
    from _engine import make_cond

    from musicgen_nb.engine import Sampler
    from musicgen_nb.generation.loop import Progress, run_window

    with torch.inference_mode():
        return run_window(
            s, make_cond(s), batch=2, prefix=None, frames=frames, sampler=Sampler(guidance_scale=3.0),
            generator=torch.Generator().manual_seed(0), progress=Progress(1, False, None), trace=None,
            capture=None, stop=stop,
        )  # fmt: skip


@pytest.mark.parametrize("how", ["stopped", "failed"])
def test_a_stopped_or_failed_window_puts_the_thread_count_back(tiny, how):
    before = torch.get_num_threads()
    cpu = torch.device("cpu")
    try:
        torch.set_num_threads(2)
        tuner_for(tiny.model.decoder, cpu, 2).count = 1  # as after a move: steps run on 1 thread
        stop = _Stop(5, None if how == "stopped" else RuntimeError("mid-window"))
        if how == "stopped":
            assert _window(tiny, stop)[2] is True
        else:
            with pytest.raises(RuntimeError, match="mid-window"):
                _window(tiny, stop)
        assert 1 in stop.seen  # the tuner's count ran the steps...
        assert torch.get_num_threads() == 2  # ...and the count it found is back
    finally:
        threads.forget(tiny.model.decoder)
        torch.set_num_threads(before)


def test_a_count_the_user_sets_later_is_kept_and_the_tuner_made_again(tiny):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        _window(tiny, frames=4)
        assert tuner_for(tiny.model.decoder, torch.device("cpu")).most == 2
        torch.set_num_threads(1)  # the user, between two calls
        _window(tiny, frames=4)
        assert torch.get_num_threads() == 1
        assert threads.tuner_for(tiny.model.decoder, torch.device("cpu"), 1).most == 1
    finally:
        threads.forget(tiny.model.decoder)
        torch.set_num_threads(before)


def test_the_tuner_stands_aside_while_another_decode_or_a_fixed_count_runs(tiny):
    before = torch.get_num_threads()
    cpu = torch.device("cpu")
    try:
        torch.set_num_threads(2)
        for other in (threads.fixed(None), threads.fixed(2)):
            tuner_for(tiny.model.decoder, cpu, 2).count = 1
            stop = _Stop(10**6)
            with other:  # e.g. a chunk decode in another thread, or a second decode
                _window(tiny, stop, frames=4)
            assert set(stop.seen) == {2} and torch.get_num_threads() == 2
    finally:
        threads.forget(tiny.model.decoder)
        torch.set_num_threads(before)


def test_a_count_someone_else_sets_mid_window_is_left_alone():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        threads.enter()
        assert threads.steer(1) and torch.get_num_threads() == 1
        torch.set_num_threads(2)  # another thread sets its own count
        assert not threads.steer(1) and torch.get_num_threads() == 2
        threads.leave()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_new_window_forgets_the_previous_windows_baseline():
    t = ThreadTuner(2, window=2, probe_every=10**6)
    _run(t, IDLE, 12)  # both counts measured, home 2
    decided = len(t.decisions)
    t.begin()  # the next window: longer, its steps slower for that reason alone
    _run(t, {2: IDLE[2] * 1.5, 1: IDLE[1] * 1.5}, 4)
    assert len(t.decisions) == decided  # no probe: a new baseline, not two strikes


def test_a_decoder_dropped_unfinished_is_counted_out(tiny):
    """A decoder driven by hand and dropped mid-window must not block the tuner for good."""
    import gc

    from _engine import make_cond

    from musicgen_nb.engine import Decoder

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        tuner_for(tiny.model.decoder, torch.device("cpu"), 2).count = 1
        dec = Decoder(tiny.model, make_cond(tiny), max_len=10)
        dec.step(torch.full((4, 4, 1), tiny.special_id))
        assert torch.get_num_threads() == 1
        del dec
        gc.collect()
        assert torch.get_num_threads() == 2
        threads.enter()  # alone again: a tuner may act
        assert threads.steer(1) and torch.get_num_threads() == 1
        threads.leave()
    finally:
        threads.forget(tiny.model.decoder)
        torch.set_num_threads(before)
