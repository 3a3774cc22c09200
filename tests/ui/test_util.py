from _uploads import wav_bytes

from musicgen_nb.ui._util import read_audio_bytes, upload_files


def test_upload_values_of_ipywidgets_7_and_8():
    v8 = ({"name": "a.wav", "content": memoryview(b"xyz"), "size": 3, "type": "audio/wav"},)
    v7 = {"a.wav": {"content": b"xyz", "metadata": {"name": "a.wav"}}}
    assert upload_files(v8) == upload_files(v7) == [("a.wav", b"xyz")]
    audio, sr = read_audio_bytes("x.wav", wav_bytes(0.25, 8000, channels=2))
    assert audio.shape == (2, 2000) and sr == 8000


def test_after_this_cell_calls_back_once_when_the_cell_ends():
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    calls = []
    shell.user_ns["calls"] = calls
    cell = "from musicgen_nb.ui._util import after_this_cell; ok = after_this_cell(lambda: calls.append(1)); during = len(calls)"
    assert shell.run_cell(cell).success
    assert shell.user_ns["ok"] and shell.user_ns["during"] == 0 and calls == [1]
    assert shell.run_cell("pass").success and calls == [1]  # once, not after every cell


def test_after_this_cell_is_false_outside_ipython():
    import subprocess
    import sys

    code = "from musicgen_nb.ui._util import after_this_cell; print(after_this_cell(print))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
