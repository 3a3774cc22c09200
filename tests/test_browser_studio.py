"""End to end: the studio in JupyterLab, driven in a real headless Chromium.

Starts JupyterLab on 127.0.0.1, opens a notebook that shows the studio on the
offline ``tiny`` model, types a prompt, double-clicks Generate, and checks the
audio element, the history and that one run happened. A screenshot is saved to
build/studio.png. CI installs Debian's chromium (tests/browser/install.sh).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason="needs Debian's chromium (tests/browser/install.sh)"
    ),
]
ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]  # fmt: skip


def _wav(seconds: float = 0.5, sr: int = 16000) -> bytes:
    import io

    import numpy as np
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.zeros(int(seconds * sr), dtype=np.float32), sr, format="WAV")
    return buf.getvalue()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            'import musicgen_nb as mg\nst = mg.studio("tiny", save_dir="outputs")\nst.duration.value = 1.0'
        )
    ]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, root / "studio.ipynb")
    port, token = _free_port(), secrets.token_hex(16)
    cmd = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--allow-root",
        "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]  # fmt: skip
    # Private settings and workspaces: no news toast over the panel, no saved layout.
    settings = tmp_path_factory.mktemp("lab-settings")
    news = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env = dict(
        os.environ,
        JUPYTERLAB_SETTINGS_DIR=str(settings),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp_path_factory.mktemp("lab-workspaces")),
    )
    log = open(root / "lab.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=root, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as r:
                json.load(r)
            break
        except Exception:
            if proc.poll() is not None:
                raise RuntimeError(
                    "JupyterLab exited:\n" + (root / "lab.log").read_text()
                ) from None
            time.sleep(0.5)
    else:
        proc.kill()
        raise RuntimeError("JupyterLab did not start:\n" + (root / "lab.log").read_text())
    yield dict(url=url, token=token, root=root)
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


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
            for _ in range(3):  # the kernel may still be connecting on the first try
                page.locator(".jp-StatusBar-TextItem", has_text="Idle").first.wait_for(
                    timeout=120_000
                )
                page.locator(".jp-Cell .jp-InputArea-editor").first.click()
                page.keyboard.press("Control+Enter")
                try:
                    studio.wait_for(timeout=60_000)
                    break
                except Exception:
                    continue
            studio.wait_for(timeout=1_000)

            assert studio.get_by_text("No audio yet").is_visible()  # the player's empty state
            prompt = studio.locator("textarea").first
            prompt.fill("lo-fi beat with warm piano")
            prompt.press("Tab")  # commit the value to the kernel
            page.wait_for_timeout(500)
            generate = studio.locator("button", has_text="Generate")
            generate.dblclick()

            rows = studio.locator("table.mgnb-history tbody tr")
            rows.first.wait_for(timeout=120_000)
            page.wait_for_function(
                "() => { const b = [...document.querySelectorAll('.mgnb-studio button')]"
                ".find(x => x.textContent.includes('Generate')); return b && !b.disabled; }",
                timeout=60_000,
            )
            page.wait_for_timeout(2000)  # a second run, if one had started, would show by now
            assert rows.count() == 1, "a double click must start exactly one run"
            assert "lo-fi beat with warm piano" in rows.first.inner_text()

            audio = studio.locator(".mgnb-player audio")
            duration = audio.evaluate(
                "el => new Promise(resolve => { if (el.readyState >= 1) resolve(el.duration);"
                " else el.addEventListener('loadedmetadata', () => resolve(el.duration)); })"
            )
            assert duration > 0.9, f"audio duration {duration}"

            canvas = studio.locator(".mgnb-player canvas").first
            assert canvas.evaluate("c => c.width") == 50  # one column per token frame
            box = canvas.bounding_box()
            page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] / 2)  # seek
            page.wait_for_timeout(300)
            now = audio.evaluate("el => el.currentTime")
            assert 0.3 < now < 0.7, f"clicking the grid should seek to the middle, got {now}"
            status = studio.locator(".widget-html", has_text="loaded").first.inner_text()
            assert "cpu" in status and "float32" in status, status
            studio.screenshot(path=str(shot))

            # The plotly token grid and spectrogram, drawn when their accordion opens.
            studio.get_by_text("plotly figures").first.click()
            plots = studio.locator(".js-plotly-plot")
            plots.nth(1).wait_for(timeout=60_000)
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
