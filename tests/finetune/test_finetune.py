"""The public face of musicgen_nb.finetune: the lazy attribute and the re-exported names."""

from __future__ import annotations

import musicgen_nb as mg
from musicgen_nb import finetune as FT


def test_lazy_attribute():
    assert mg.finetune is FT and "finetune" in dir(mg)


def test_the_public_names_stay():
    assert sorted(FT.__all__) == sorted([
        "DataError", "Dataset", "Window", "FineTune", "dataset", "train", "token_accuracy",
        "logits", "sequences", "masked_loss", "codec_key", "apply_adapter", "adapter_provenance",
        "synth_dataset", "loss_figure",
    ])  # fmt: skip
    assert all(callable(getattr(FT, name)) for name in FT.__all__)
    # The adapter format and the loss figure live below; finetune re-exports the same objects.
    from musicgen_nb.checkpoints import adapter
    from musicgen_nb.viz.loss import loss_figure

    assert FT.apply_adapter is adapter.apply_adapter and FT.loss_figure is loss_figure
    assert (FT.CONFIG_FILE, FT.CHECKPOINT, FT.LORA_WEIGHTS) == (
        adapter.CONFIG_FILE, adapter.CHECKPOINT, adapter.LORA_WEIGHTS,
    )  # fmt: skip
