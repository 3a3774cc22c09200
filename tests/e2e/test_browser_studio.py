"""End to end: the studio in a real headless Chromium, in two front ends.

JupyterLab 4 with ipywidgets 8 (the main venv): starts JupyterLab on 127.0.0.1,
opens a notebook that shows the studio on the offline ``tiny`` model, types a
prompt, double-clicks Generate, and checks the audio element, the history and
that one run happened. A screenshot is saved to build/studio.png. Every wait is on
a state: the typed prompt is echoed back by the kernel before the click, and the
count of runs is printed by a cell, which the kernel runs after both clicks.

Classic Notebook 6 with ipywidgets 7 (the Colab-like venv of ``make test-colab``),
a lighter case: the studio shown from its ipywidgets-7 mime bundle, its icons
drawn by Font Awesome 4, one run, and the figures' toggle button and Output.
Screenshot: build/studio-classic.png.

Each case runs where its front end is installed and skips elsewhere. CI installs
Debian's chromium (tests/e2e/install_browser.sh).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from _servers import (
    ARGS,
    BOUND,
    CHROMIUM,
    audio_duration,
    cell_output,
    classic_notebook,
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


def _wav(seconds: float = 0.5, sr: int = 16000) -> bytes:
    import io

    import numpy as np
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.zeros(int(seconds * sr), dtype=np.float32), sr, format="WAV")
    return buf.getvalue()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    pytest.importorskip("jupyterlab", reason="the JupyterLab case needs jupyterlab (main venv)")
    root = tmp_path_factory.mktemp("lab")
    write_notebook(root / "studio.ipynb", STUDIO_CELL, COUNT_CELL)
    with jupyterlab(root, tmp_path_factory) as server:
        yield server


STUDIO_CELL = """import ipywidgets as W
import traitlets
import musicgen_nb as mg
st = mg.studio("tiny", save_dir="outputs")
st.duration.value = 1.0
echo = W.Label()  # the prompt as the kernel has it: a state the test waits on
echo.add_class("mgnb-echo")
traitlets.dlink((st.prompt, "value"), (echo, "value"))
echo"""
# Run after both clicks of the double click (the kernel takes messages in order).
COUNT_CELL = """st.wait()
print("runs:", len(st.records))"""
ECHOED = "text => document.querySelector('.mgnb-echo').textContent.includes(text)"


def test_studio_in_a_real_browser(lab):
    from playwright.sync_api import sync_playwright

    shot = ROOT / "build" / "studio.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1500})
        try:
            page.goto(f"{lab['url']}/lab/tree/studio.ipynb?token={lab['token']}", timeout=90_000)
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
            studio = page.locator(".mgnb-studio")
            run_cell(page, 0)
            studio.wait_for(timeout=BOUND)

            assert studio.get_by_text("No audio yet").is_visible()  # the player's empty state
            prompt = studio.locator("textarea").first
            prompt.fill("lo-fi beat with warm piano")
            prompt.press("Tab")  # commit the value to the kernel
            # ipywidgets may hold a typed value back (its throttle) while a click goes out:
            # wait until the kernel has it (it echoes it back).
            page.wait_for_function(ECHOED, arg="lo-fi beat with warm piano", timeout=BOUND)
            generate = studio.locator("button.widget-button", has_text="Generate")
            generate.dblclick()

            rows = studio.locator("table.mgnb-history tbody tr")
            rows.first.wait_for(timeout=BOUND)
            # The kernel runs this cell after both clicks; st.wait() waits for any run.
            run_cell(page, 1)
            assert "runs: 1" in cell_output(page, 1), "a double click must start exactly one run"
            assert rows.count() == 1
            assert "lo-fi beat with warm piano" in rows.first.inner_text()

            audio = studio.locator(".mgnb-player audio")
            duration = audio_duration(page, audio)
            assert duration > 0.9, f"audio duration {duration}"

            canvas = studio.locator(".mgnb-player canvas").first
            assert canvas.evaluate("c => c.width") == 50  # one column per token frame
            box = canvas.bounding_box()
            page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] / 2)  # seek
            page.wait_for_function(
                "el => el.currentTime > 0", arg=audio.element_handle(), timeout=BOUND
            )
            now = audio.evaluate("el => el.currentTime")
            assert 0.3 < now < 0.7, f"clicking the grid should seek to the middle, got {now}"
            status = studio.locator(".widget-html", has_text="loaded").first.inner_text()
            assert "cpu" in status and "float32" in status, status
            studio.screenshot(path=str(shot))

            # The plotly token grid and spectrogram, drawn when their toggle button is pressed.
            studio.get_by_text("plotly figures").first.click()
            plots = studio.locator(".js-plotly-plot")
            plots.nth(1).wait_for(timeout=BOUND)
            assert plots.count() == 2
            studio.screenshot(path=str(shot.with_name("studio-figures.png")))

            # Uploads through the real FileUpload: a bad file gives one message, a good one is kept.
            # (ipywidgets 8 keeps its <input type=file> out of the DOM: go through the chooser.)
            def upload(name, data):
                with page.expect_file_chooser(timeout=30_000) as chooser:
                    studio.locator("button", has_text="audio prompt").click()
                chooser.value.set_files(
                    files=[{"name": name, "mimeType": "audio/wav", "buffer": data}]
                )

            upload("bad.wav", b"not audio")
            studio.get_by_text("bad.wav: could not read audio").wait_for(timeout=30_000)
            upload("clip.wav", _wav())
            studio.get_by_text("audio prompt: clip.wav").wait_for(timeout=30_000)
            assert studio.get_by_text("could not read audio").count() == 0
            assert not generate.is_disabled()
        except Exception:
            page.screenshot(path=str(shot.with_name("studio-failure.png")), full_page=True)
            raise
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000


def _classic_notebook_6() -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("notebook").startswith("6.") and version("ipywidgets").startswith("7.")
    except PackageNotFoundError:
        return False


@pytest.fixture(scope="module")
def classic(tmp_path_factory):
    if not _classic_notebook_6():
        pytest.skip("needs classic Notebook 6 with ipywidgets 7 (the venv of make test-colab)")
    root = tmp_path_factory.mktemp("classic")
    write_notebook(
        root / "studio.ipynb",
        "import musicgen_nb as mg\n"
        "from IPython.display import display\n"
        'st = mg.studio("tiny", display=False, save_dir="outputs")\n'
        "st.duration.value = 1.0\n"
        "display(st._repr_mimebundle_(), raw=True)  # ipywidgets 7: the bundle from the model id",
    )
    with classic_notebook(root) as server:
        yield server


class _WidgetManagerLoad:
    """Watches classic Notebook's websocket for the widget manager's first load: its
    comm_info_request for ``jupyter.widget`` comms, the kernel's reply to it, and any
    request_state it then sends (a widget loaded a second time)."""

    def __init__(self, page):
        self.asked, self.answered, self.reloaded = set(), False, 0
        page.on("websocket", self._watch)

    def _watch(self, ws) -> None:
        ws.on("framesent", lambda f: self._frame(f, sent=True))
        ws.on("framereceived", lambda f: self._frame(f, sent=False))

    def _frame(self, frame, *, sent: bool) -> None:
        if not isinstance(frame, str) or not ("comm_info_" in frame or "request_state" in frame):
            return
        msg = json.loads(frame)
        kind = msg["header"]["msg_type"]
        if sent and kind == "comm_msg" and msg["content"]["data"].get("method") == "request_state":
            self.reloaded += 1
        if sent and kind == "comm_info_request":
            if msg["content"].get("target_name") == "jupyter.widget":
                self.asked.add(msg["header"]["msg_id"])
        elif not sent and kind == "comm_info_reply":
            self.answered |= msg["parent_header"].get("msg_id") in self.asked


def test_studio_in_classic_notebook_6_with_ipywidgets_7(classic):
    from playwright.sync_api import sync_playwright

    shot = ROOT / "build" / "studio-classic.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1400})
        console, load = [], _WidgetManagerLoad(page)
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
        try:
            page.goto(f"{classic['url']}/notebooks/studio.ipynb?token={classic['token']}")
            # Run the cell only once widgetsnbextension's widget manager has loaded what the
            # kernel already had. Output that arrives before the manager exists is drawn as
            # text/plain. And widgets opened while the manager asks the kernel for its comms
            # (comm_info_request, its fallback when ipywidgets 7 has no control comm) can be
            # loaded twice: a second model takes the comm and the view shows the first, which
            # never updates again (seen here: the player stayed at "No audio yet").
            page.wait_for_function(
                "() => window.Jupyter && Jupyter.notebook && Jupyter.notebook.kernel"
                " && Jupyter.notebook.kernel.is_connected()"
                " && Jupyter.notebook.kernel.widget_manager !== undefined",
                timeout=120_000,
            )
            deadline = time.monotonic() + 60
            while not load.answered and time.monotonic() < deadline:
                page.wait_for_timeout(100)
            assert load.answered, f"the widget manager's first load did not end: {load.asked}"
            page.wait_for_timeout(500)  # the reply is handled (no comms yet: nothing to load)
            page.evaluate("() => Jupyter.notebook.execute_all_cells()")
            studio = page.locator(".mgnb-studio")
            page.wait_for_function(  # the studio shows, or the cell ends without it
                "() => document.querySelector('.mgnb-studio')"
                " || typeof Jupyter.notebook.get_cell(0).input_prompt_number === 'number'",
                timeout=240_000,
            )
            try:
                studio.wait_for(timeout=15_000)
            except Exception:
                printed = page.locator(".output_area").all_inner_texts()
                raise AssertionError(f"the cell ended without the studio: {printed}") from None
            assert studio.get_by_text("No audio yet").is_visible()  # the anywidget player
            assert load.reloaded == 0, "the widget manager loaded a studio widget twice"

            # Icons: each one has a glyph in this front end's Font Awesome (4.7).
            glyphs = studio.locator("i.fa").evaluate_all(
                "els => els.map(e => [e.className, getComputedStyle(e, '::before').content])"
            )
            icons = {c for c, _ in glyphs}
            assert any("fa-history" in c for c in icons), icons
            blank = [c for c, content in glyphs if content in ("none", "normal", '""', "")]
            assert not blank, f"icons without a glyph in Font Awesome 4: {blank}"

            prompt = studio.locator("textarea").first
            prompt.fill("lo-fi beat with warm piano")
            prompt.press("Tab")  # commit the value to the kernel
            page.wait_for_timeout(500)
            studio.locator("button", has_text="Generate").click()
            rows = studio.locator("table.mgnb-history tbody tr")
            rows.first.wait_for(timeout=120_000)
            assert "lo-fi beat with warm piano" in rows.first.inner_text()
            audio = studio.locator(".mgnb-player audio")
            duration = audio_duration(page, audio)
            assert duration > 0.9, f"audio duration {duration}"

            # The figures: a toggle button shows an Output (no Accordion), which fills in. This
            # front end has no plotly renderer: each figure shows its one-line text instead.
            toggle = studio.locator("button", has_text="plotly figures")
            output = studio.locator(".jupyter-widgets-output-area")  # ipywidgets 7's Output
            assert output.count() == 1 and not output.is_visible()
            toggle.click()
            lines = output.locator(".output_area", has_text="plotly figure:")
            lines.nth(1).wait_for(timeout=60_000)
            assert lines.count() == 2 and "drawn in JupyterLab" in lines.first.inner_text()
            studio.screenshot(path=str(shot))
            toggle.click()
            output.wait_for(state="hidden", timeout=30_000)
        except Exception:
            page.screenshot(path=str(shot.with_name("studio-classic-failure.png")), full_page=True)
            print("browser console:", *console, sep="\n  ")
            print("server log:", (classic["root"] / "notebook.log").read_text()[-4000:])
            raise
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
