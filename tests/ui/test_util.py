from _uploads import wav_bytes

from musicgen_nb.ui._util import read_audio_bytes, upload_files


def test_upload_values_of_ipywidgets_7_and_8():
    v8 = ({"name": "a.wav", "content": memoryview(b"xyz"), "size": 3, "type": "audio/wav"},)
    v7 = {"a.wav": {"content": b"xyz", "metadata": {"name": "a.wav"}}}
    assert upload_files(v8) == upload_files(v7) == [("a.wav", b"xyz")]
    audio, sr = read_audio_bytes("x.wav", wav_bytes(0.25, 8000, channels=2))
    assert audio.shape == (2, 2000) and sr == 8000


def test_cell_number_is_the_running_cells_execution_count():
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    cell = "from musicgen_nb.ui._util import cell_number; n = cell_number()"
    seen = []
    for _ in range(2):
        assert shell.run_cell(cell, store_history=True).success
        seen.append(shell.user_ns["n"])
    assert seen[1] == seen[0] + 1  # one number per cell, the same all through the cell
