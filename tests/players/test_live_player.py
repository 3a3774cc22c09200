"""The live player's kernel side: chunk messages with binary buffers, the final audio,
resends for a late front end, Stop, and mg.players.live. (The browser side is in
tests/e2e/test_browser_stream.py.)"""

from __future__ import annotations

import time

import numpy as np
import pytest

import musicgen_nb as mg
from musicgen_nb.players.live_player import LivePlayer, render_stream


class Recording(LivePlayer):
    """Keeps what would go over the comm (there is no kernel in these tests)."""

    def send(self, content, buffers=None):
        self.wire = getattr(self, "wire", [])
        self.wire.append((content, buffers or []))


def _pcm(msg, buffers):
    return np.frombuffer(buffers[0], dtype="<f4").reshape(msg["channels"], msg["samples"])


def test_play_sends_every_chunk_as_binary_pcm(tiny):
    st = tiny.stream(["drums", "bass"], duration=1.6, seed=2, chunk=0.5)
    p = Recording(st, item=1)
    g = p.play()
    chunks = [(m, b) for m, b in p.wire if m["type"] == "chunk"]
    assert p.sent == len(chunks) == len(st.chunks) >= 3
    assert [m["index"] for m, _ in chunks] == list(range(len(chunks)))
    assert [m["final"] for m, _ in chunks] == [False] * (len(chunks) - 1) + [True]
    offset = 0
    for m, b in chunks:
        assert isinstance(b[0], bytes) and len(b[0]) == 4 * m["channels"] * m["samples"]
        assert m["offset"] == offset
        offset += m["samples"]
    joined = np.concatenate([_pcm(m, b) for m, b in chunks], axis=-1)
    np.testing.assert_allclose(joined, g.audio[1], atol=1e-5)  # item 1, as float32
    assert p.label == "bass" and p.total == pytest.approx(1.6)
    assert p.sample_rate == 32000 and p.steps_per_s > 0
    assert p.piece == pytest.approx(0.5 + st.decoder.hold / 50)
    assert p.final_url.startswith("data:audio/") and p.final_name.endswith(
        ("_seed3.ogg", "_seed3.wav")  # item 1 of seed=2 has seed 3
    )
    assert not p.running and not p.stopped


def test_a_late_front_end_gets_everything_again(tiny):
    p = Recording(tiny.stream("x", duration=1.0, seed=0, chunk=0.5))
    p.play()
    before = len(p.wire)
    p._on_msg(p, {"type": "ready"}, [])
    again = p.wire[before:]
    assert [m for m, _ in again] == [m for m, _ in p.wire[:before] if m["type"] != "reset"]
    assert all(b for m, b in again if m["type"] == "chunk")


def test_stop_from_the_front_end_keeps_what_was_made(tiny):
    p = Recording(tiny.stream("x", duration=4.0, seed=0, chunk=0.25))
    p.start()
    deadline = time.time() + 60
    while p.sent < 2 and time.time() < deadline:
        time.sleep(0.01)
    p._on_msg(p, {"type": "stop"}, [])
    g = p.wait(60)
    assert g.interrupted and p.stopped
    sent = sum(m["samples"] for m, _ in p.wire if m["type"] == "chunk")
    assert sent == g.audio.shape[-1] < 4 * 32000
    with pytest.raises(ValueError, match="stream is None"):
        Recording().play()


def test_a_second_stream_resets_the_front_end(tiny):
    p = Recording()
    p.play(tiny.stream("a", duration=0.5, seed=0))
    p.play(tiny.stream("b", duration=0.5, seed=1))
    kinds = [m["type"] for m, _ in p.wire]
    assert kinds.count("reset") == 2 and p.label == "b"
    assert p._messages and all(m["type"] == "chunk" for m, _ in p._messages)
    assert len(p._messages) == 1  # only the last stream is kept for resends


def test_live_checks_its_input(tiny):
    st = tiny.stream("x", duration=0.5, seed=0)
    with pytest.raises(TypeError, match="stream must be a Stream from MusicGen.stream"):
        mg.players.live("not a stream")
    with pytest.raises(ValueError, match="item must be an int >= 0"):
        mg.players.live(st, item=-1)
    p = mg.players.live(st)
    assert isinstance(p, LivePlayer) and p.stream is st and p.sent == 0
    other = tiny.stream("x", duration=0.5, seed=0)
    next(iter(other))
    with pytest.raises(ValueError, match="already iterated"):
        mg.players.live(other)
    other.close()


def test_an_item_outside_the_batch_is_refused_up_front(tiny):
    # It was accepted; then the player's thread failed and wait() hung.
    st = tiny.stream("x", duration=0.5, seed=0)
    with pytest.raises(ValueError) as info:
        mg.players.live(st, item=3)
    assert str(info.value) == (
        "item must be an int in [0, 0] (the stream's batch has 1 item), got 3"
    )
    two = tiny.stream(["a", "b"], duration=0.5, seed=0)
    with pytest.raises(ValueError, match=r"item must be an int in \[0, 1\]"):
        Recording(two, item=2)
    p = Recording(item=1)  # no stream yet: checked when one comes
    with pytest.raises(ValueError, match=r"item must be an int in \[0, 0\]"):
        p.play(st)
    assert not hasattr(p, "wire") and not st.started and p.stream is None  # before any work
    assert Recording(two, item=1).play().audio.shape == (2, 1, 16000)


def test_one_live_player_per_stream(tiny):
    # A second player's thread failed (two threads pulling one iterator).
    st = tiny.stream("x", duration=1.0, seed=0, chunk=0.25)
    p = Recording(st)
    for second in (
        lambda: mg.players.live(st),
        lambda: Recording(st),
        lambda: Recording().start(st),
    ):
        with pytest.raises(ValueError, match="stream already has a live player"):
            second()
    assert render_stream(st) is p  # displaying the stream again shows the same player
    g = p.play()
    with pytest.raises(ValueError, match="stream already has a live player"):
        mg.players.live(st)
    q = Recording()
    q.play(tiny.stream("y", duration=0.5, seed=0))
    assert g is st.generation and not g.interrupted and q.sent >= 1


def test_wait_on_a_displayed_stream_waits_for_its_player(tiny, capsys):
    st = tiny.stream("x", duration=1.0, seed=0, chunk=0.25)
    p = render_stream(st)
    p._ipython_display_()  # starts the player's thread; its stream.consumer is that thread
    p._ipython_display_()  # shown again: not played twice
    assert st.consumer is p._thread
    g = st.wait(120)  # from this thread: waits for the player, does not pull chunks itself
    assert g is not None and not g.interrupted and p.wait(60) is g
    assert p.sent == len(st.chunks) == 4


def test_the_front_end_files_ship(tiny):
    p = LivePlayer()
    assert "shouldStart" in p._esm and "msg:custom" in p._esm and ".mgnb-live" in p._css
    assert p.uid.startswith("mgnb-live-") and p.uid != LivePlayer().uid
    bundle = p._repr_mimebundle_()
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    assert "application/vnd.jupyter.widget-view+json" in data


def test_render_stream_is_the_live_player(tiny):
    st = tiny.stream("x", duration=0.5, seed=0)
    p = render_stream(st)
    assert isinstance(p, LivePlayer) and p.stream is st and not st.started
    assert p.margin == pytest.approx(1.15)  # streaming.START_MARGIN, synced to the front end


def test_displaying_a_stream_plays_it_in_the_background(tiny, capsys):
    """Stream._ipython_display_ -> the "stream" renderer mg registers -> a started LivePlayer."""
    st = tiny.stream("x", duration=0.5, seed=0)
    st._ipython_display_()
    deadline = time.time() + 60
    while not st.started and time.time() < deadline:
        time.sleep(0.01)
    g = st.wait(60)
    assert g is not None and g.audio.shape == (1, 1, 16000) and len(st.chunks) >= 1


def test_a_player_thread_that_fails_to_start_is_not_waited_for(tiny, monkeypatch):
    import threading

    st = tiny.stream("x", duration=0.5, seed=0, chunk=0.25)
    p = Recording(st)

    def no_thread(self):
        raise RuntimeError("can't start new thread")

    with monkeypatch.context() as m:
        m.setattr(threading.Thread, "start", no_thread)  # what a process out of threads gets
        with pytest.raises(RuntimeError, match="can't start new thread"):
            p.start()
    assert st.consumer is None and p._thread is None
    g = st.wait(60)  # waited for a thread that never ran (here: None at the timeout)
    assert g is not None and not g.interrupted
