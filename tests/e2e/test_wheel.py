"""The wheel and the sdist ship every module, the C++ sources and the data files, and the
installed wheel, outside the checkout, builds its kernels from the shipped sources and
generates a 1 s int8 clip."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "musicgen_nb"
DATA = ("*.cpp", "*.h", "*.json", "*.cfg", "*.ogg", "py.typed")


def source_files() -> set[str]:
    """Every module and data file of the package, relative to the repository root."""
    files = {p for p in PACKAGE.rglob("*.py")}
    for pattern in DATA:
        files |= set(PACKAGE.rglob(pattern))
    return {p.relative_to(ROOT).as_posix() for p in files if "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """The wheel and sdist, built from a copy of the checkout (a build writes egg-info beside
    its sources, and nothing a test writes may land in the source tree)."""
    tmp = tmp_path_factory.mktemp("dist")
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT, check=True,
        capture_output=True, text=True,
    ).stdout.splitlines()  # fmt: skip
    src = tmp / "src"
    for name in files:
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    out = tmp / "out"
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--wheel", "--sdist", "--outdir", str(out),
         str(src)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return out


def test_the_wheel_ships_every_module_and_data_file(dist):
    (wheel,) = dist.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = source_files() - names
    assert missing == set()
    assert any(n.startswith("musicgen_nb/_kernels/csrc/") and n.endswith(".cpp") for n in names)
    assert {"musicgen_nb/_widgets/live_player.js", "musicgen_nb/py.typed"} <= names


def test_the_sdist_ships_every_module_and_data_file(dist):
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert source_files() - names == set()
    assert {"widgets/live_player.js", "docs/architecture.md", "CHANGELOG.md"} <= names


def test_the_installed_wheel_builds_its_kernels_and_generates_int8(dist, tmp_path):
    (wheel,) = dist.glob("*.whl")
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
         str(wheel)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    code = (
        "import musicgen_nb as mg, musicgen_nb._kernels as K\n"
        "s = mg.load('tiny', precision='int8')\n"
        "g = s.generate('jazz', duration=1.0, seed=0, progress=False)\n"
        "print(mg.__file__)\n"
        "print(K.status()['loaded'], s.model.decoder.lm_heads[0].fused.backend, g.audio.shape)\n"
    )
    # A fresh cache: the kernels are compiled from the wheel's csrc/, not found prebuilt.
    env = dict(os.environ, PYTHONPATH=str(site), MUSICGEN_NB_CACHE=str(tmp_path / "cache"))
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    where, status = result.stdout.strip().splitlines()[-2:]
    assert Path(where).is_relative_to(site)
    assert status == "True kernel (1, 1, 32000)", status
    built = list((tmp_path / "cache").rglob("*.cpp"))
    assert built, "the kernels were not built from the shipped sources"


def test_the_installed_wheel_gives_transformers_kernels_their_standins(dist, tmp_path):
    """The plugin of the installed wheel: a kernel whose code uses transformers alone."""
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("nbval")
    (wheel,) = dist.glob("*.whl")
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
         str(wheel)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
    }
    nb.cells = [nbformat.v4.new_code_cell(
        "import sys\nfrom transformers import MusicgenForConditionalGeneration as M\n"
        "m = M.from_pretrained('facebook/musicgen-small')\n"
        "assert m.config.musicgen_nb_standin == 'standin', m.config\n"
        "import musicgen_nb\n"
        f"assert musicgen_nb.__file__.startswith({str(site)!r}), musicgen_nb.__file__"
    )]  # fmt: skip
    nbformat.write(nb, tmp_path / "nb.ipynb")
    env = dict(os.environ, PYTHONPATH=str(site), HF_HUB_OFFLINE="1")
    env.pop("MUSICGEN_NB_STANDIN", None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:musicgen_nb",
         "-p", "musicgen_nb.pytest_plugin", "--nbval-lax", "--musicgen-standin", "nb.ipynb"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "1 passed" in result.stdout
