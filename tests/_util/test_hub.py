"""The one rule for whether a hub checkpoint can be had: cache, offline switches, the hub's answer."""

from __future__ import annotations

import pytest

from musicgen_nb._util.hub import cached_or_reachable, hub_offline, in_hub_cache


@pytest.mark.parametrize("var", ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"])
@pytest.mark.parametrize("value, off", [("1", True), ("true", True), ("ON", True), ("0", False),
                                        ("", False)])  # fmt: skip
def test_both_offline_switches_turn_the_hub_off(monkeypatch, var, value, off):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv(var, value)
    assert hub_offline() is off


def test_the_cache_is_read_where_the_environment_says_now(monkeypatch, tmp_path):
    snap = tmp_path / "hub" / "models--someone--clap" / "snapshots" / "abc"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    (tmp_path / "hub" / "models--someone--clap" / "refs").mkdir()
    (tmp_path / "hub" / "models--someone--clap" / "refs" / "main").write_text("abc")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty"))
    assert not in_hub_cache("someone/clap") and not cached_or_reachable("someone/clap")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert in_hub_cache("someone/clap") and cached_or_reachable("someone/clap")
