"""Compressed audio for embedding in notebooks: OGG Vorbis with reproducible bytes.

libsndfile draws each Ogg stream's serial number from the clock, so the same audio would
give different bytes (and notebook diffs) on every run. :func:`fix_ogg_serial` rewrites
it to :data:`OGG_SERIAL` and recomputes each page's checksum. :func:`encode_compressed`
falls back to 16-bit WAV where the local libsndfile cannot write Vorbis.

Examples
--------
>>> import numpy as np
>>> data, fmt = encode_compressed(np.zeros((8000, 1), np.float32), 8000)
>>> fmt in ("ogg", "wav") and len(data) > 0
True
"""

from __future__ import annotations

import io
import struct

import numpy as np

#: The fixed Ogg stream serial ("mgnb"): it makes the bytes reproducible.
OGG_SERIAL = 0x6D676E62


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else (r << 1)
        table.append(r & 0xFFFFFFFF)
    return table


_CRC = _crc_table()


def ogg_crc(data: bytes) -> int:
    """The Ogg page checksum: CRC-32, polynomial 0x04c11db7, not reflected, init 0.

    Examples
    --------
    >>> ogg_crc(b""), hex(ogg_crc(b"OggS"))
    (0, '0x5fb0a94f')
    """
    crc = 0
    table = _CRC
    for b in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ table[(crc >> 24) ^ b]
    return crc


def fix_ogg_serial(data: bytes, serial: int = OGG_SERIAL) -> bytes:
    """Rewrite every page's stream serial number to ``serial`` and redo its checksum.

    libsndfile draws the serial from the clock, so the same audio would give
    different bytes (and notebook diffs) on every run.

    Raises
    ------
    ValueError
        When ``data`` is not a sequence of Ogg pages.

    Examples
    --------
    >>> fix_ogg_serial(b"RIFF" + bytes(40))
    Traceback (most recent call last):
    ...
    ValueError: not an Ogg stream: page sync lost
    """
    out = bytearray(data)
    pos = 0
    while pos + 27 <= len(out):
        if out[pos : pos + 4] != b"OggS":
            raise ValueError("not an Ogg stream: page sync lost")
        n_seg = out[pos + 26]
        body = sum(out[pos + 27 : pos + 27 + n_seg])
        end = pos + 27 + n_seg + body
        struct.pack_into("<I", out, pos + 14, serial)
        struct.pack_into("<I", out, pos + 22, 0)
        struct.pack_into("<I", out, pos + 22, ogg_crc(bytes(out[pos:end])))
        pos = end
    return bytes(out)


def encode_compressed(samples: np.ndarray, sr: int, fmt: str = "ogg") -> tuple[bytes, str]:
    """float32 ``[N, C]`` -> (file bytes, format actually used).

    ``fmt="ogg"`` writes Vorbis with the fixed serial, or 16-bit WAV when libsndfile
    cannot (no Vorbis support, or a rate Vorbis refuses); ``fmt="wav"`` writes 16-bit WAV.

    Examples
    --------
    >>> import numpy as np
    >>> data, fmt = encode_compressed(np.zeros((800, 2), np.float32), 8000, "wav")
    >>> data[:4], fmt
    (b'RIFF', 'wav')
    """
    import soundfile as sf

    if fmt == "ogg":
        try:
            buf = io.BytesIO()
            sf.write(buf, samples, sr, format="OGG", subtype="VORBIS")
            return fix_ogg_serial(buf.getvalue()), "ogg"
        except Exception:  # libsndfile without Vorbis, or a rate Vorbis refuses
            pass
    buf = io.BytesIO()
    sf.write(buf, samples, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue(), "wav"
