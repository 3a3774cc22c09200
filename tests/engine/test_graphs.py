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


def test_an_eager_recorder_runs_the_graph_path_on_the_cpu():
    from musicgen_nb.engine.graphs import capture, eager

    x = torch.zeros(2)
    graph, out = capture(lambda: x.add_(1) * 10, [x], eager)
    assert x.tolist() == [0.0, 0.0]  # recording puts the state back
    graph.replay()
    graph.replay()
    assert out.tolist() == [20.0, 20.0] and x.tolist() == [2.0, 2.0]  # one output, overwritten


def test_a_pool_is_shared_by_decoders_one_after_another_and_private_beside_one():
    from musicgen_nb.engine.graphs import drop, pool_of, take

    class Dec:
        holding = True

    lm, a, b = torch.nn.Linear(1, 1), Dec(), Dec()
    shared = take(lm, a)
    assert take(lm, b) is not shared and pool_of(lm) is shared
    a.holding = False
    assert take(lm, b) is shared and shared.holder() is b
    drop(lm)
    assert pool_of(lm) is None
