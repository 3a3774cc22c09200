"""The engine's use of the thread tuner: one tuner per decoder, the process-wide count put back."""

from __future__ import annotations

import pytest
import torch

from musicgen_nb.engine import threads
from musicgen_nb.engine.threads import tuner_for


def _at_one(tuner, window=10**6):
    """A kept tuner settled on 1 thread (as after a move), deciding nothing more in the test."""
    tuner.count = tuner.home = 1
    tuner.looking, tuner.window = False, window
    return tuner


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
        kept.window, kept.count, kept.looking = 100, 1, False  # as after a move: 1 thread
        bos = torch.full((4, 4, 1), tiny.special_id)
        dec.step(bos)
        dec.step(bos)
        assert len(dec.tuner.times) == 2 and torch.get_num_threads() == 1
        dec.step(bos)  # the window's last step (the loop never feeds position 3)
        assert len(dec.tuner.times) == 3 and torch.get_num_threads() == 2
    finally:
        threads.forget(tiny.model.decoder)
        torch.set_num_threads(before)


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
        _at_one(tuner_for(tiny.model.decoder, cpu, 2))  # as after a move: steps run on 1 thread
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
            _at_one(tuner_for(tiny.model.decoder, cpu, 2))
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


def test_a_decoder_dropped_unfinished_is_counted_out(tiny):
    """A decoder driven by hand and dropped mid-window must not block the tuner for good."""
    import gc

    from _engine import make_cond

    from musicgen_nb.engine import Decoder

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        _at_one(tuner_for(tiny.model.decoder, torch.device("cpu"), 2))
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
