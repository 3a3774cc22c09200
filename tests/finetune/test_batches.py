"""Training batches: delay-pattern targets, text states, the loss, the data order."""

from __future__ import annotations

import numpy as np
import torch

import musicgen_nb as mg
from musicgen_nb import finetune as FT
from musicgen_nb.conditioning import stack_states, text_states
from musicgen_nb.finetune.batches import batch_indices, data_fingerprint, forward, step_seed


def test_targets_follow_the_delay_pattern_and_transformers_loss(s):
    rng = np.random.default_rng(0)
    codes = [rng.integers(0, 2048, (4, 7)), rng.integers(0, 2048, (4, 5))]
    inputs, labels = FT.sequences(s, codes)
    for b, c in enumerate(codes):
        p = mg.patterns.build("delay", 4, c.shape[-1])
        ref = mg.patterns.interleave(c, p, special_id=s.special_id)  # [K, T + K - 1]
        n = ref.shape[-1]
        np.testing.assert_array_equal(labels[b, :, :n].numpy(), ref)
        assert (labels[b, :, n:] == s.special_id).all()  # batch padding
    assert (inputs[:, :, 0] == s.special_id).all()  # BOS
    assert torch.equal(inputs[:, :, 1:], labels[:, :, :-1])
    texts = ["warm pad", None]
    states = text_states(s, texts)
    h, m = stack_states(states, texts, s.device)
    with torch.no_grad():
        lg = forward(s.model.decoder, inputs, h, m)
        ours, _, count = FT.masked_loss(lg, labels, s.special_id)
        # transformers builds its inputs from the labels and masks the special token itself.
        theirs = s.model.decoder(
            labels=labels.transpose(1, 2), encoder_hidden_states=h,
            encoder_attention_mask=m.long(), use_cache=False,
        ).loss  # fmt: skip
    assert int(count) == 4 * (7 + 5)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_stack_states_pads_to_the_longest_caption(s):
    texts = ["a", "a much longer caption with many more words in it", None]
    states = text_states(s, texts)
    assert set(states) == {"a", texts[1], None}
    h, m = stack_states(states, texts, s.device)
    width = states[texts[1]][0].shape[1]
    assert h.shape[:2] == m.shape == (3, width)
    assert not m[2].any() and (h[2] == 0).all()  # unconditional: zero states, empty mask
    assert m[0].sum() < m[1].sum() and not m[0, m[0].sum() :].any()


def test_batch_indices_are_epoch_shuffles_and_stateless():
    n, bs = 5, 2
    flat = [i for step in range(5) for i in batch_indices(n, bs, seed=3, step=step)]
    assert sorted(flat[:n]) == list(range(n)) and sorted(flat[n : 2 * n]) == list(range(n))
    assert batch_indices(n, bs, seed=3, step=4) == flat[8:10]  # no state: any step, any time
    assert step_seed(3, 1, 1) != step_seed(3, 1, 2) and 0 <= step_seed(3, 1, 1) < 2**63


def test_data_fingerprint_follows_codes_and_captions():
    codes = np.zeros((4, 3), dtype=np.int64)
    a = [FT.Window(codes, "a", "x.wav", 0)]
    assert data_fingerprint(a) == data_fingerprint([FT.Window(codes.copy(), "a", "y.wav", 5)])
    assert data_fingerprint(a) != data_fingerprint([FT.Window(codes, "b", "x.wav", 0)])
    assert data_fingerprint(a) != data_fingerprint([FT.Window(codes + 1, "a", "x.wav", 0)])
