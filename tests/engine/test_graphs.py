"""Shape buckets of the static step, and its CUDA graphs (those only where CUDA exists)."""

from __future__ import annotations

import pytest
import torch

from musicgen_nb.engine.graphs import CACHE_STEP, TEXT_STEP, bucket, capture


def test_buckets_round_up_to_a_multiple():
    assert [bucket(n, CACHE_STEP) for n in (0, 1, 63, 64, 65, 1503)] == [64, 64, 64, 64, 128, 1536]
    assert [bucket(n, TEXT_STEP) for n in (5, 16, 17)] == [16, 16, 32]


@pytest.mark.parametrize(("n", "step"), [(-1, 16), (3, 0), (2.5, 16), (3, "16")])
def test_bad_bucket_arguments_are_named(n, step):
    with pytest.raises(ValueError, match="bucket needs n >= 0 and step >= 1"):
        bucket(n, step)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_a_captured_step_replays_on_its_buffers_and_restores_the_state():
    pos = torch.zeros(1, dtype=torch.long, device="cuda")
    table = torch.arange(10.0, device="cuda")
    out_buf = torch.zeros(1, device="cuda")

    def step():
        out_buf.copy_(table.index_select(0, pos))
        pos.add_(1)
        return out_buf * 2

    graph, out = capture(step, [pos])
    assert pos.tolist() == [0]  # the warm-up's advances were undone
    seen = []
    for _ in range(3):
        graph.replay()
        seen.append(out.tolist()[0])
    assert seen == [0.0, 2.0, 4.0] and pos.tolist() == [3]
