"""Tests for musicgen_nb._util.display: the renderer registry the core's results use."""

from __future__ import annotations

import pytest

from musicgen_nb._util import display


@pytest.fixture
def clean_registry(monkeypatch):
    monkeypatch.setattr(display, "_RENDERERS", {})


def test_renderer_is_none_until_registered(clean_registry):
    assert display.renderer("generation") is None
    display.register("generation", str.upper)
    assert display.renderer("generation") is str.upper
    assert display.renderer("stream") is None


def test_a_string_target_is_imported_on_first_use_and_kept(clean_registry):
    display.register("example", "html:escape")
    import html

    first = display.renderer("example")
    assert first is html.escape and first("<b>") == "&lt;b&gt;"
    assert display.renderer("example") is first


def test_register_replaces_an_earlier_renderer(clean_registry):
    display.register("generation", str.upper)
    display.register("generation", str.lower)
    assert display.renderer("generation")("AbC") == "abc"


def test_a_bad_string_target_fails_when_used(clean_registry):
    display.register("broken", "musicgen_nb_no_such_module:render")
    with pytest.raises(ModuleNotFoundError, match="musicgen_nb_no_such_module"):
        display.renderer("broken")
    display.register("missing", "html:no_such_function")
    with pytest.raises(AttributeError, match="no_such_function"):
        display.renderer("missing")


@pytest.mark.parametrize("kind, target", [(1, str.upper), ("generation", 3), ("generation", None)])
def test_register_names_bad_arguments(clean_registry, kind, target):
    with pytest.raises(
        TypeError, match=r"register\(kind: str, target: callable or 'module:function'\)"
    ):
        display.register(kind, target)
    assert display.renderer("generation") is None
