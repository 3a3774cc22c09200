"""The widgets' front-end files load from the install or the checkout."""

from __future__ import annotations

import pytest

from musicgen_nb.players.assets import asset


@pytest.mark.parametrize(
    "name", ["live_player.js", "live_player.css", "synced_player.js", "synced_player.css"]
)
def test_every_front_end_file_loads(name):
    text = asset(name)
    assert isinstance(text, str) and len(text) > 100


def test_a_missing_file_names_itself():
    with pytest.raises(FileNotFoundError, match="'nothing.js' is missing"):
        asset("nothing.js")
