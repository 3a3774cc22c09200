"""Our environment variables: on/off switches and the cache folder."""

from __future__ import annotations

import pytest

from musicgen_nb._util.env import cache_root, env_switch


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0", False), ("false", False), ("Off", False), ("NO", False), ("1", True), ("yes", True),
     ("on", True), ("TRUE", True), ("", True)],
)  # fmt: skip
def test_switch_spellings(monkeypatch, value, expected):
    monkeypatch.setenv("MG_TEST_SWITCH", value)
    assert env_switch("MG_TEST_SWITCH", default=True) is expected


def test_switch_unset_is_the_default(monkeypatch):
    monkeypatch.delenv("MG_TEST_SWITCH", raising=False)
    assert env_switch("MG_TEST_SWITCH", default=False) is False


@pytest.mark.parametrize("value", ["2", "maybe", "disable"])
def test_switch_refuses_junk_by_name(monkeypatch, value):
    monkeypatch.setenv("MG_TEST_SWITCH", value)
    with pytest.raises(ValueError, match=f"MG_TEST_SWITCH must be .*got '{value}'"):
        env_switch("MG_TEST_SWITCH", default=True)


def test_cache_root_is_the_variable_or_home(monkeypatch, tmp_path):
    monkeypatch.setenv("MUSICGEN_NB_CACHE", str(tmp_path / "new"))
    assert cache_root() == tmp_path / "new"  # missing is fine: it is created when written
    monkeypatch.delenv("MUSICGEN_NB_CACHE")
    assert cache_root().parts[-2:] == (".cache", "musicgen_nb")


def test_cache_root_that_is_a_file_is_named(monkeypatch, tmp_path):
    afile = tmp_path / "f"
    afile.write_text("x")
    monkeypatch.setenv("MUSICGEN_NB_CACHE", str(afile))
    with pytest.raises(ValueError, match=r"MUSICGEN_NB_CACHE='.*f' is a file, not a folder"):
        cache_root()
