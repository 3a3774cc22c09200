"""End to end: a stream plays in JupyterLab, in a real headless Chromium.

A notebook streams 4 s of the offline ``tiny`` model in 0.5 s chunks into the
live player. The test reads the front end's own state: every chunk was
scheduled on the Web Audio clock right where the previous one ended (no gap
larger than one sample period), nothing stalled, and once the stream ended the
final one-pass audio replaced the chunks (an <audio> element of the whole clip).
Then the studio plays as it generates, and Stop keeps what was heard: the studio's clip
is 60 s (15 windows of tiny), so that Stop lands while it runs even on a busy machine.
Every wait is on a state (``data-state`` of the player, a cell's prompt, a message),
bounded by ``_servers.BOUND``. Screenshots go to build/stream-*.png.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _servers import (
    ARGS,
    BOUND,
    CHROMIUM,
    audio_duration,
    cell_output,
    jupyterlab,
    run_cell,
    write_notebook,
)

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason="needs Debian's chromium (tests/e2e/install_browser.sh)"
    ),
]

STREAM_CELL = """import musicgen_nb as mg
s = mg.load("tiny")
st = s.stream("lo-fi beat", duration=4.0, seed=7, chunk=0.5)
st"""
# While the player plays it: st.wait() waits for the player (it used to raise).
WAIT_CELL = """g = st.wait()
print("waited", g.audio.shape, g is st.generation, len(st.chunks) > 1)"""
STUDIO_CELL = """st2 = mg.studio(s, save_dir="outputs")
st2.prompt.value = "ambient pads"
st2.duration.value = 60.0  # long: Stop lands while it runs, however busy the machine"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    write_notebook(root / "stream.ipynb", STREAM_CELL, STUDIO_CELL, WAIT_CELL)
    with jupyterlab(root, tmp_path_factory) as server:
        yield server


STATE = """el => { const s = el.mgnbLive; return {
  status: s.status, stalls: s.stalls, replaced: s.replaced, received: s.received,
  sampleRate: s.ctx ? s.ctx.sampleRate : 0, total: s.totalSamples, finalIndex: s.finalIndex,
  scheduled: s.scheduled.map(x => ({index: x.index, offset: x.offset, samples: x.samples,
                                    when: x.when, duration: x.duration})),
  chunksWithData: [...s.chunks.values()].filter(c => c.data).length,
  played: s.ctx ? s.ctx.currentTime : 0 }; }"""


def _state(selector: str, *states: str) -> str:
    """A page function: the live player under ``selector`` is in one of ``states``."""
    return (
        f"() => {{ const e = document.querySelector({selector!r});"
        f" return !!e && {list(states)!r}.includes(e.dataset.state); }}"
    )


def test_stream_plays_gaplessly_in_jupyterlab(lab):
    from playwright.sync_api import sync_playwright

    shots = ROOT / "build"
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1400})
        try:
            page.goto(f"{lab['url']}/lab/tree/stream.ipynb?token={lab['token']}", timeout=90_000)
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
            live = page.locator(".mgnb-live").first
            run_cell(page, 0)  # `st` as the cell's last line shows the live player
            live.wait_for(timeout=BOUND)

            # While it plays: the playing state, then screenshots.
            page.wait_for_function(  # playing, on a running AudioContext clock
                "() => { const e = document.querySelector('.mgnb-live');"
                " return !!e && e.dataset.state === 'playing' && e.mgnbLive.ctx.currentTime > 0; }",
                timeout=BOUND,
            )
            mid = live.evaluate(STATE)
            live.screenshot(path=str(shots / "stream-playing.png"))
            run_cell(page, 2)  # st.wait() while the player plays
            assert "waited (1, 1, 128000) True True" in cell_output(page, 2)
            page.wait_for_function(  # the Web Audio clock moved on (or the stream ended)
                "t => { const s = document.querySelector('.mgnb-live').mgnbLive;"
                " return s.status !== 'playing' || s.ctx.currentTime > t + 0.5; }",
                arg=mid["played"],
                timeout=BOUND,
            )
            live.screenshot(path=str(shots / "stream-playing-2.png"))
            assert mid["sampleRate"] == 32000
            assert mid["played"] > 0, "the AudioContext clock must run (audio is playing)"

            page.wait_for_function(
                "() => document.querySelector('.mgnb-live').mgnbLive.replaced", timeout=BOUND
            )
            end = live.evaluate(STATE)
            live.screenshot(path=str(shots / "stream-done.png"))
            sched = end["scheduled"]
            assert end["stalls"] == 0, end
            assert [x["index"] for x in sched] == list(range(end["finalIndex"] + 1))
            assert sched[0]["offset"] == 0
            period = 1 / end["sampleRate"]
            for a, b in zip(sched, sched[1:], strict=False):
                assert b["offset"] == a["offset"] + a["samples"], (a, b)  # the clip, once
                gap = b["when"] - (a["when"] + a["duration"])
                assert abs(gap) <= period, f"chunks {a['index']}->{b['index']}: gap {gap} s"
            assert end["total"] == 4 * 32000 == sched[-1]["offset"] + sched[-1]["samples"]
            # The final one-pass audio replaced the chunks: their samples are freed and an
            # <audio> element holds the whole clip for replay and download.
            assert end["status"] == "done" and end["chunksWithData"] == 0
            audio = live.locator("audio")
            duration = audio_duration(page, audio)
            assert abs(duration - 4.0) < 0.05, duration
            href = live.locator("a.mgnb-live-download").get_attribute("download")
            assert href.endswith((".ogg", ".wav")), href

            # The studio plays as it generates; Stop keeps what was heard. (The prompt is set
            # by the cell: typing it is test_browser_studio's, and a typed value may still be
            # held back by ipywidgets' throttle when the click goes out.)
            run_cell(page, 1)
            studio = page.locator(".mgnb-studio")
            studio.wait_for(timeout=BOUND)
            assert studio.locator("textarea").first.input_value() == "ambient pads"
            studio.locator("button.widget-button", has_text="Generate").click()
            slive = studio.locator(".mgnb-live")
            page.wait_for_function(
                "() => { const e = document.querySelector('.mgnb-studio .mgnb-live');"
                " return e && e.dataset.state === 'playing' && e.mgnbLive.received >= 4 * 32000; }",
                timeout=BOUND,
            )
            stop = studio.locator("button.widget-button", has_text="Stop")
            assert stop.is_enabled(), "the 60 s run ended before Stop"
            stop.click()  # at once: the screenshot comes after
            page.wait_for_function(_state(".mgnb-studio .mgnb-live", "stopped"), timeout=BOUND)
            studio.get_by_text("stopped: kept").wait_for(timeout=BOUND)
            page.wait_for_function(
                "() => document.querySelector('.mgnb-studio .mgnb-live').mgnbLive.finalIndex >= 0",
                timeout=BOUND,
            )
            heard = slive.evaluate(STATE)
            assert heard["stalls"] == 0, heard
            kept = audio_duration(page, studio.locator(".mgnb-player audio"))
            # The run kept exactly the audio the live player received (and played).
            assert 4.0 <= kept < 60.0
            assert abs(kept - heard["received"] / 32000) < 0.05, (kept, heard["received"])
            assert "(stopped)" in studio.locator("table.mgnb-history tbody tr").first.inner_text()
            studio.screenshot(path=str(shots / "stream-studio-stopped.png"))
        except Exception:
            page.screenshot(path=str(shots / "stream-failure.png"), full_page=True)
            raise
        finally:
            browser.close()
