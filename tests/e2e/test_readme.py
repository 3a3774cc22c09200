"""The README's examples run as written, with stand-ins, and its quoted error is the real one.

The ```python blocks of README.md run in order, in one namespace, in a fresh process with
stand-ins on (``MUSICGEN_NB_STANDIN=1``: ``mg.load("small")`` loads ``tiny``), in a temporary
folder holding what the README says it holds (``intro.wav``, ``tune.wav``, ``my_tunes/``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")

SETUP = """
import musicgen_nb as mg
from musicgen_nb import finetune
mg.audio.write("intro.wav", mg.audio.sine(220.0, 2.0, 32000), 32000)
mg.audio.write("tune.wav", mg.audio.sine(330.0, 3.0, 32000), 32000)
finetune.synth_dataset("my_tunes", seconds=1.0)
del mg, finetune
"""


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, re.M | re.S)


def test_the_readme_has_python_examples():
    blocks = python_blocks(README)
    assert len(blocks) >= 4 and "mg.load(" in blocks[0]


def test_the_readme_examples_run_as_written(tmp_path):
    pytest.importorskip("peft")
    pytest.importorskip("pyarrow")
    script = SETUP + "\n".join(
        f"print('--- README block {i}', flush=True)\n{block}"
        for i, block in enumerate(python_blocks(README))
    )
    (tmp_path / "readme.py").write_text(script, encoding="utf-8")
    env = {**os.environ, "MUSICGEN_NB_STANDIN": "1", "HF_HUB_OFFLINE": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "readme.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "(1, 1, 256000) (1, 4, 400)" in proc.stdout  # the shapes the README shows
    assert (tmp_path / "runs" / "g" / "manifest.parquet").exists()


def test_the_readme_quotes_the_real_offline_error(tmp_path, monkeypatch):
    import musicgen_nb as mg
    from musicgen_nb.models import ModelUnavailableError

    quoted = re.search(r"^ModelUnavailableError: (.*?)\.\.\.$", README, re.M).group(1)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.delenv("MUSICGEN_NB_STANDIN", raising=False)
    with pytest.raises(ModelUnavailableError) as err:
        mg.load("facebook/musicgen-small")
    assert str(err.value).startswith(quoted), (str(err.value), quoted)
