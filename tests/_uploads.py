"""Audio file bytes as a browser upload sends them, for the studio tests."""

import io

import numpy as np
import soundfile as sf


def wav_bytes(seconds=0.5, sr=16000, channels=1):
    buf = io.BytesIO()
    data = (
        np.random.default_rng(0).standard_normal((int(seconds * sr), channels)).astype(np.float32)
        * 0.1
    )
    sf.write(buf, data, sr, format="WAV")
    return buf.getvalue()
