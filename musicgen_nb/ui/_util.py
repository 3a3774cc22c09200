"""Private helpers of the UI: uploads, compact payloads, display bundles."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

#: Largest upload accepted by the studio, in bytes.
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
UPLOAD_TYPES = (".wav", ".flac", ".ogg", ".mp3")
#: Where plotly figures are drawn (README: supported front ends).
PLOTLY_FRONT_ENDS = "drawn in JupyterLab >= 4, Notebook >= 7, Colab and VS Code"


def upload_files(value) -> list[tuple[str, bytes]]:
    """(name, bytes) of a FileUpload value.

    For ipywidgets 8 (tuple of dicts) and ipywidgets 7 / Colab (dict of name ->
    {"content", "metadata"}).
    """
    if not value:
        return []
    if isinstance(value, dict):  # ipywidgets 7
        return [(name, bytes(item["content"])) for name, item in value.items()]
    return [(item["name"], bytes(item["content"])) for item in value]


def read_audio_bytes(name: str, data: bytes) -> tuple[np.ndarray, int]:
    """Decode an uploaded audio file to (float32 [channels, samples], sample rate).

    Raises
    ------
    ValueError
        For a file over :data:`MAX_UPLOAD_BYTES`, an unsupported type, or bytes
        that are not readable audio; the message names the file.
    """
    if len(data) > MAX_UPLOAD_BYTES:
        raise ValueError(
            f"{name}: {len(data) / 1e6:.1f} MB is over the {MAX_UPLOAD_BYTES / 1e6:.0f} MB upload limit"
        )
    suffix = Path(name).suffix.lower()
    if suffix not in UPLOAD_TYPES:
        raise ValueError(
            f"{name}: unsupported file type {suffix or '(none)'}; use one of {', '.join(UPLOAD_TYPES)}"
        )
    import soundfile as sf

    try:
        audio, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
        audio = audio.T
    except Exception:
        try:  # mp3 and other formats libsndfile cannot read
            import tempfile

            import librosa

            with tempfile.NamedTemporaryFile(suffix=suffix) as tmp:
                tmp.write(data)
                tmp.flush()
                audio, sr = librosa.load(tmp.name, sr=None, mono=False)
            audio = np.atleast_2d(audio).astype(np.float32)
        except Exception as exc:
            raise ValueError(
                f"{name}: could not read audio from this file ({type(exc).__name__})"
            ) from None
    if audio.size == 0:
        raise ValueError(f"{name}: the file holds no audio samples")
    return np.ascontiguousarray(audio, dtype=np.float32), int(sr)


def codes_payload(codes: np.ndarray, max_frames: int) -> tuple[str, int, int]:
    """Base64 of codes ``[K, T]`` as little-endian uint16, every n-th frame past ``max_frames``."""
    codes = np.asarray(codes)
    step = max(1, int(np.ceil(codes.shape[-1] / max_frames)))
    kept = np.ascontiguousarray(codes[:, ::step].astype("<u2"))
    return base64.b64encode(kept.tobytes()).decode("ascii"), kept.shape[0], kept.shape[1]


def spectrogram_payload(
    audio: np.ndarray, sr: int, *, bins: int = 64, max_cols: int = 800
) -> tuple[str, list]:
    """Base64 of a log-mel spectrogram as uint8 ``[bins, cols]`` (80 dB range)."""
    import librosa

    mono = np.asarray(audio, dtype=np.float32).reshape(-1, np.asarray(audio).shape[-1]).mean(0)
    if mono.size == 0:
        return "", [bins, 0]
    hop = max(256, int(np.ceil(mono.size / max_cols)))
    mel = librosa.feature.melspectrogram(y=mono, sr=sr, n_fft=2048, hop_length=hop, n_mels=bins)
    db = librosa.power_to_db(mel, ref=np.max(mel) if mel.max() > 0 else 1.0, top_db=80.0)
    img = np.clip((db + 80.0) / 80.0 * 255.0, 0, 255).astype(np.uint8)
    return base64.b64encode(np.ascontiguousarray(img).tobytes()).decode("ascii"), list(img.shape)


def after_this_cell(callback) -> bool:
    """Call ``callback()`` once when the IPython cell running now ends; False outside IPython."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with ipywidgets
        return False
    shell = get_ipython()
    if shell is None:  # no cell to wait for
        return False

    def once(result):
        shell.events.unregister("post_run_cell", once)
        callback()

    shell.events.register("post_run_cell", once)
    return True


def one_line(exc: BaseException) -> str:
    """A readable one-line message for an exception."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def escape(text) -> str:
    """``text`` as HTML-escaped text (quotes too), for widget HTML values."""
    return html.escape(str(text), quote=True)


def widget_bundle(widget, **kwargs) -> dict:
    """The mime bundle that shows ``widget``.

    Its own ``_repr_mimebundle_`` on ipywidgets 8, and on ipywidgets 7 (Colab), which has
    none, the same widget-view bundle that its ``_ipython_display_`` sends, built from the
    model id.
    """
    own = getattr(widget, "_repr_mimebundle_", None)
    if own is not None:
        return own(**kwargs)
    from ipywidgets._version import __protocol_version__

    plain = repr(widget)
    data = {"text/plain": plain if len(plain) <= 110 else plain[:110] + "…"}
    if widget._view_name is not None:
        major, minor = (int(v) for v in __protocol_version__.split(".")[:2])
        data["application/vnd.jupyter.widget-view+json"] = {
            "version_major": major,
            "version_minor": minor,
            "model_id": widget._model_id,
        }
    return data


def display_bundle(obj) -> dict:
    """An ``Output`` widget's display_data entry for ``obj``.

    Built without capturing (so a background thread may call it). In a kernel, IPython's formatters (and so
    the notebook's plotly renderer) decide the mime types; elsewhere a plotly
    figure falls back to its JSON mime type.
    """
    data, metadata = {}, {}
    try:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None:
            data, metadata = shell.display_formatter.format(obj)
    except Exception:
        data = {}
    if not data or set(data) == {"text/plain"}:
        if hasattr(obj, "to_plotly_json"):
            import json

            data = {"application/vnd.plotly.v1+json": json.loads(obj.to_json())}
        else:
            data = {"text/plain": repr(obj)}
        metadata = {}
    if hasattr(obj, "to_plotly_json"):
        # A front end that cannot draw plotly (classic Notebook 6) shows this line instead of
        # nothing, or of the figure's whole repr.
        title = obj.layout.title.text or "figure"
        data = dict(data, **{"text/plain": f"plotly figure: {title} ({PLOTLY_FRONT_ENDS})"})
    return {"output_type": "display_data", "data": data, "metadata": metadata}
