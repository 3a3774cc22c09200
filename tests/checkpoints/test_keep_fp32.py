"""Tests for musicgen_nb.checkpoints.keep_fp32: the kept list lives for one load only."""

from __future__ import annotations

import pytest
from transformers import MusicgenMelodyForConditionalGeneration as Cls

from musicgen_nb.checkpoints.keep_fp32 import kept_fp32


def test_parts_are_added_for_the_block_and_an_existing_list_is_restored():
    assert "_keep_in_fp32_modules_strict" not in Cls.__dict__
    Cls._keep_in_fp32_modules_strict = ["mine"]
    try:
        with pytest.raises(RuntimeError, match="load failed"):
            with kept_fp32(Cls, ("text_encoder", "audio_encoder")):
                assert Cls._keep_in_fp32_modules_strict == [
                    "^audio_encoder.",
                    "^text_encoder.",
                    "mine",
                ]
                raise RuntimeError("load failed")
        assert Cls._keep_in_fp32_modules_strict == ["mine"]
    finally:
        del Cls._keep_in_fp32_modules_strict
    with kept_fp32(Cls, ()):
        assert "_keep_in_fp32_modules_strict" not in Cls.__dict__
