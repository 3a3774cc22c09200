"""The weight table: what the engine runs, and what it refuses."""

from __future__ import annotations

import pytest
import torch
from _engine import make_cond

import musicgen_nb as mg
from musicgen_nb.engine import Decoder, table
from musicgen_nb.engine import quantize as Q


def test_unsupported_layers_are_refused():
    s = mg.load("tiny")
    layer = s.model.decoder.model.decoder.layers[1]
    layer.fc2 = torch.nn.Sequential(layer.fc2)
    with pytest.raises(TypeError, match="fc2: every linear of the decoder must be nn.Linear"):
        Decoder(s.model, make_cond(s), max_len=4)
    layer.activation_fn = torch.nn.ReLU()
    with pytest.raises(TypeError, match="exact GELU"):
        Decoder(s.model, make_cond(s), max_len=4)


def test_table_modes_and_fused_parts(tiny):
    """fp32 on the CPU is the matrix-vector mode; int8 parts of one fused layer are found
    only when they cover it in order."""
    t = table.weight_table(tiny.model.decoder.model.decoder.layers)
    assert t.mode == table.MATVEC and not t.fused_qkv
    assert len(t.weights) == 8 * len(tiny.model.decoder.model.decoder.layers)
    assert len(t.norms) == 6 * len(tiny.model.decoder.model.decoder.layers)
    torch.manual_seed(0)
    fused = Q.Int8Linear.fuse([torch.nn.Linear(8, 4), torch.nn.Linear(8, 2)])
    a, b = Q.Int8Part(fused, 0, 4), Q.Int8Part(fused, 4, 6)
    assert table.fused_parts([a, b]) is fused
    assert table.fused_parts([b, a]) is None and table.fused_parts([a]) is None
    assert table.fused_parts([torch.nn.Linear(2, 2)]) is None and table.fused_parts([]) is None
    s = mg.load("tiny", precision="int8")
    t = table.weight_table(s.model.decoder.model.decoder.layers)
    assert t.mode in (table.KERNEL, table.INT8, table.DEQUANT) and t.fused_qkv
