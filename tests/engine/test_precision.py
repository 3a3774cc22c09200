"""The precision policy: what ``auto`` picks per device (faked), what stays fp32, TF32 off."""

from __future__ import annotations

import pytest
import torch
from _devices import on_cuda

import musicgen_nb as mg
from musicgen_nb.engine.precision import (
    KEEP_FP32,
    auto_dtype,
    describe,
    device_facts,
    exact_convolutions,
    fake_device,
    fp32_parts,
    keep_fp32_names,
    place,
    resolve_precision,
)

CUDA = torch.device("cuda")


@pytest.mark.parametrize(
    ("capability", "expected"),
    [
        ((7, 5), torch.float16),
        ((7, 0), torch.float16),
        ((8, 0), torch.bfloat16),
        ((9, 0), torch.bfloat16),
    ],
)
def test_auto_is_fp16_where_bf16_is_not_native(capability, expected):
    """A T4 (sm75) emulates bf16: auto must take fp16 there, bf16 from Ampere on."""
    with fake_device("cuda", capability=capability):
        assert auto_dtype(CUDA) == expected
        assert (
            resolve_precision("auto", CUDA)
            == {torch.float16: "fp16", torch.bfloat16: "bf16"}[expected]
        )
    assert auto_dtype(torch.device("cpu")) == torch.float32
    with fake_device("mps", capability=None):
        assert auto_dtype(torch.device("mps")) == torch.float16


def test_faking_is_scoped_and_nests():
    with fake_device("cuda", capability=(8, 0)):
        with fake_device("cuda", capability=(7, 5), free_bytes=5) as inner:
            assert device_facts("cuda") == inner and inner.faked and not inner.bf16_native
        assert device_facts("cuda").capability == (8, 0)
    assert not device_facts("cuda").faked
    assert describe("cpu")["auto"] == "fp32"
    with pytest.raises(ValueError, match="kind must be"):
        with fake_device("tpu"):
            pass


def test_explicit_precisions_are_checked():
    assert resolve_precision("bf16", CUDA) == "bf16"
    with pytest.raises(ValueError, match="weight-only int8 for the CPU"):
        resolve_precision("int8", CUDA)
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp8", torch.device("cpu"))
    assert mg.models.resolve_precision is resolve_precision  # still where it was


def test_keep_fp32_names_are_checked():
    assert keep_fp32_names(KEEP_FP32) == KEEP_FP32 and keep_fp32_names([]) == ()
    assert fp32_parts(("text_encoder",)) == ("text_encoder", "enc_to_dec_proj")
    with pytest.raises(TypeError, match="keep_fp32 must be a tuple"):
        keep_fp32_names("text_encoder")
    with pytest.raises(ValueError, match="keep_fp32 may name"):
        keep_fp32_names(("decoder",))
    with pytest.raises(ValueError, match="keep_fp32 may name"):
        mg.load("tiny", keep_fp32=("lm_heads",))


def test_place_keeps_text_encoder_and_codec_in_fp32():
    model = mg.load("tiny").model
    ref = {n: p.detach().clone() for n, p in model.text_encoder.named_parameters()}
    place(model, torch.device("cpu"), torch.float16)
    assert (
        model.decoder.dtype == torch.float16 and model.enc_to_dec_proj.weight.dtype == torch.float32
    )
    assert model.audio_encoder.dtype == torch.float32
    assert all(torch.equal(p, ref[n]) for n, p in model.text_encoder.named_parameters())
    place(model, torch.device("cpu"), torch.bfloat16, keep_fp32=())
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_exact_convolutions_turns_tf32_off_and_restores():
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = True
    try:
        with exact_convolutions():
            assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        assert torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


@pytest.mark.gpu
def test_auto_on_the_real_gpu_follows_native_bf16():
    assert on_cuda()
    native = torch.cuda.get_device_capability() >= (8, 0)
    s = mg.load("tiny", device="cuda")
    assert s.dtype == (torch.bfloat16 if native else torch.float16)
    assert s.model.text_encoder.dtype == s.model.audio_encoder.dtype == torch.float32
    g = s.generate("jazz", duration=1, seed=0, progress=False)
    assert g.codes.shape == (1, 4, 50)


@pytest.mark.gpu
def test_chunk_decoder_keeps_100_db_on_cuda_with_tf32_allowed(tiny):
    """cuDNN allows TF32 convolutions by default (Ampere+): decoding turns them off."""
    import numpy as np

    from musicgen_nb.streaming.chunk_decoder import ChunkDecoder, snr_db

    torch.backends.cudnn.allow_tf32 = True
    codes = np.random.default_rng(0).integers(0, 2048, (1, 4, 131))
    ref = tiny.decode(codes)
    d = ChunkDecoder(tiny, method="exact")
    parts = []
    for i in range(0, 131, 7):
        d.push(codes[..., i : i + 7])
        parts.append(d.pull())
    parts.append(d.pull(final=True))
    assert snr_db(ref, np.concatenate(parts, axis=-1)) >= 100
    assert torch.backends.cudnn.allow_tf32  # restored


@pytest.mark.parametrize("name", ["tiny", "tiny-melody"])
def test_transformers_generate_runs_beside_the_fp32_parts(name, device):
    """transformers' own generate on a half session (T5, its projection and EnCodec in fp32):
    the bridge hooks cast at the seams, and are added once."""
    s = mg.load(name, precision="fp16", device=device)
    inputs = s.processor(text=["jazz"], padding=True, return_tensors="pt").to(s.device)
    with torch.inference_mode():
        audio = s.model.generate(**inputs, max_new_tokens=6, do_sample=True, guidance_scale=3.0)
    assert audio.dtype == torch.float32 and torch.isfinite(audio).all()
    hooks = len(s.model.enc_to_dec_proj._forward_hooks)
    place(s.model, s.device, torch.float16)
    assert len(s.model.enc_to_dec_proj._forward_hooks) == hooks == 1


def test_exact_convolutions_is_thread_safe():
    """Two threads inside at once (stream worker and consumer): the flags stay off until both
    are out, then come back as they were."""
    import threading

    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = True
    inside, leave, seen = threading.Barrier(2), threading.Event(), []

    def second():
        with exact_convolutions():
            inside.wait()
            leave.wait()
            seen.append(torch.backends.cudnn.allow_tf32)

    t = threading.Thread(target=second)
    try:
        with exact_convolutions():
            t.start()
            inside.wait()  # both inside
        assert not torch.backends.cudnn.allow_tf32  # the first out does not restore under the other
        leave.set()
        t.join()
        assert seen == [False] and torch.backends.cudnn.allow_tf32  # the last out restores
    finally:
        leave.set()
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before
