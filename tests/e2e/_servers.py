"""Jupyter servers on 127.0.0.1 and Chromium settings for the real-browser tests.

Shared by ``test_browser_studio.py`` and ``test_browser_stream.py``: one notebook
written to a temporary root, one server started there and stopped after.

The tests wait on states (a cell's execution count, a widget's ``data-state``, a
message's text), never on durations. ``BOUND`` is only the bound after which a
state that never comes fails the test: it is generous, so that a busy machine
(load 5 on 2 cores) is slower but never fails.
"""

from __future__ import annotations

import contextlib
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

CHROMIUM = "/usr/bin/chromium"
#: Milliseconds to wait for a state before failing (kernel start, generation, a reply).
BOUND = 600_000
ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]  # fmt: skip


def write_notebook(path: Path, *sources: str) -> None:
    """A notebook of code cells, on the ``python3`` kernel."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in sources]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_server(proc, url: str, token: str, log: Path, name: str) -> None:
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as r:
                json.load(r)
            return
        except Exception:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited:\n" + log.read_text()) from None
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"{name} did not start:\n" + log.read_text())


@contextlib.contextmanager
def _server(cmd, root: Path, name: str, env=None):
    log_path = root / f"{name.split()[0].lower()}.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=root, env=env)
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


@contextlib.contextmanager
def jupyterlab(root: Path, tmp_path_factory):
    """JupyterLab serving ``root``; yields ``dict(url, token, root)``."""
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
    with _server(cmd, root, "JupyterLab", env) as proc:
        url = f"http://127.0.0.1:{port}"
        _wait_for_server(proc, url, token, root / "jupyterlab.log", "JupyterLab")
        yield dict(url=url, token=token, root=root)


@contextlib.contextmanager
def classic_notebook(root: Path):
    """Classic Notebook 6 serving ``root``; yields ``dict(url, token, root)``."""
    port, token = _free_port(), secrets.token_hex(16)
    cmd = [
        sys.executable, "-m", "notebook", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        f"--NotebookApp.token={token}", f"--NotebookApp.notebook_dir={root}", "--allow-root",
    ]  # fmt: skip
    with _server(cmd, root, "Notebook 6") as proc:
        url = f"http://127.0.0.1:{port}"
        _wait_for_server(proc, url, token, root / "notebook.log", "Notebook 6")
        yield dict(url=url, token=token, root=root)


def run_cell(page, index: int, *, bound: float = BOUND) -> str:
    """Run JupyterLab cell ``index`` and wait until it has run; returns its prompt (``[n]:``).

    The kernel may still be connecting when the page shows Idle, and a Ctrl+Enter then
    is lost: a press counts once the cell's prompt shows it queued (``[*]:``) or run.
    """
    prompt = page.locator(".jp-Cell .jp-InputPrompt").nth(index)
    before = prompt.inner_text()
    for _ in range(5):
        page.locator(".jp-StatusBar-TextItem", has_text="Idle").first.wait_for(timeout=bound)
        page.locator(".jp-Cell .jp-InputArea-editor").nth(index).click()
        page.keyboard.press("Control+Enter")
        try:  # accepted: the prompt changes at once (a state; 30 s is only for a lost press)
            page.wait_for_function(
                "([el, before]) => el.textContent.trim() !== before.trim()",
                arg=[prompt.element_handle(), before],
                timeout=30_000,
            )
            break
        except Exception:
            continue
    page.wait_for_function(
        "el => /\\[\\d+\\]/.test(el.textContent)", arg=prompt.element_handle(), timeout=bound
    )
    return prompt.inner_text()


def cell_output(page, index: int) -> str:
    """The text of cell ``index``'s output area."""
    return page.locator(".jp-Cell").nth(index).locator(".jp-OutputArea").inner_text()


def audio_duration(page, audio, timeout: float = BOUND) -> float:
    """The duration of the ``<audio>`` that locator ``audio`` finds, once its metadata loads.

    Bounded: an element that never loads (an error, or no source) fails after ``timeout`` ms
    with its state, where a bare ``loadedmetadata`` promise would wait forever.
    """
    el = audio.element_handle(timeout=timeout)
    try:
        page.wait_for_function(
            "el => el.readyState >= 1 || el.error !== null", arg=el, timeout=timeout
        )
    except Exception:
        state = el.evaluate(
            "el => ({readyState: el.readyState, networkState: el.networkState,"
            " src: (el.currentSrc || el.src).slice(0, 40), connected: el.isConnected})"
        )
        raise AssertionError(
            f"<audio> metadata did not load in {timeout / 1000:g} s: {state}"
        ) from None
    error = el.evaluate("el => el.error && [el.error.code, el.error.message]")
    assert error is None, f"<audio> could not load: {error}"
    return el.evaluate("el => el.duration")
