"""Tests for musicgen_nb.audio.ogg: reproducible OGG Vorbis bytes for embedded players."""

import io

import numpy as np
import pytest
import soundfile as sf

from musicgen_nb.audio.ogg import OGG_SERIAL, encode_compressed, fix_ogg_serial, ogg_crc

SR = 32000


def _noise(seconds, sr=SR, seed=0):
    return (0.3 * np.random.default_rng(seed).standard_normal(int(seconds * sr))).astype(np.float32)


def _pages(data):
    """(serial, page bytes) of every Ogg page."""
    pos, out = 0, []
    while pos < len(data):
        assert data[pos : pos + 4] == b"OggS"
        n = data[pos + 26]
        end = pos + 27 + n + sum(data[pos + 27 : pos + 27 + n])
        out.append((int.from_bytes(data[pos + 14 : pos + 18], "little"), data[pos:end]))
        pos = end
    return out


def test_ogg_serial_rewrite_keeps_valid_checksums():
    buf = io.BytesIO()
    sf.write(buf, _noise(0.5), SR, format="OGG", subtype="VORBIS")
    fixed = fix_ogg_serial(buf.getvalue())
    pos = pages = 0
    while pos < len(fixed):
        assert fixed[pos : pos + 4] == b"OggS"
        n = fixed[pos + 26]
        end = pos + 27 + n + sum(fixed[pos + 27 : pos + 27 + n])
        page = bytearray(fixed[pos:end])
        crc = int.from_bytes(page[22:26], "little")
        page[22:26] = b"\0\0\0\0"
        assert ogg_crc(bytes(page)) == crc
        pos, pages = end, pages + 1
    assert pages >= 3
    assert sf.read(io.BytesIO(fixed))[0].shape[0] == SR // 2


def test_ogg_crc_is_the_ogg_polynomial():
    assert ogg_crc(b"") == 0
    # CRC-32/MPEG-2 differs from Ogg's only in its initial value and final xor; the well-known
    # check value of Ogg's variant (CRC-32/OGG, init 0, no xor) for "123456789" is 0x89a1897f.
    assert ogg_crc(b"123456789") == 0x89A1897F


def test_encode_compressed_is_reproducible_and_decodable():
    samples = np.ascontiguousarray(np.stack([_noise(1.0), _noise(1.0, seed=1)], axis=1))
    a, fmt = encode_compressed(samples, SR)
    b, _ = encode_compressed(samples, SR, "ogg")
    assert fmt == "ogg" and a == b  # the same audio gives the same bytes
    assert {serial for serial, _ in _pages(a)} == {OGG_SERIAL}
    data, sr = sf.read(io.BytesIO(a), always_2d=True)
    assert sr == SR and data.shape == (SR, 2)


def test_encode_compressed_wav_and_fallback(monkeypatch):
    samples = np.clip(_noise(0.1), -1, 1)[:, None]
    data, fmt = encode_compressed(samples, SR, "wav")
    assert fmt == "wav" and data[:4] == b"RIFF"
    np.testing.assert_allclose(sf.read(io.BytesIO(data))[0], samples[:, 0], atol=1 / 32767 + 1e-6)

    real_write = sf.write

    def no_vorbis(file, data, sr, format=None, subtype=None):
        if format == "OGG":
            raise sf.LibsndfileError(0, "no Vorbis here")
        return real_write(file, data, sr, format=format, subtype=subtype)

    monkeypatch.setattr(sf, "write", no_vorbis)
    data, fmt = encode_compressed(samples, SR, "ogg")
    assert fmt == "wav" and data[:4] == b"RIFF"


def test_fix_ogg_serial_refuses_other_bytes():
    with pytest.raises(ValueError, match="not an Ogg stream: page sync lost"):
        fix_ogg_serial(b"RIFF" + bytes(40))
