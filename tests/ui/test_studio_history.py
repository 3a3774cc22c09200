import numpy as np
import pytest


def test_save_writes_files(st, tmp_path):
    st.generate(wait=True)
    paths = st.save(1, tmp_path)
    assert paths and paths[0].exists() and paths[0].with_suffix(".json").exists()
    assert "saved" in st.message.value
    with pytest.raises(ValueError, match="run_id must be one of"):
        st.replay(7)


def test_plotly_figures_of_a_run(st):
    assert st.figures.outputs == () and st.figures.layout.display == "none"
    st.figures_button.value = True  # showing the figures before any run draws nothing
    assert st.figures.outputs == () and st.figures.layout.display is None
    st.generate(wait=True)  # shown: each new run draws its figures
    outs = st.figures.outputs
    assert len(outs) == 2 and all("application/vnd.plotly.v1+json" in o["data"] for o in outs)
    # One short line for front ends without plotly (classic Notebook 6), not the figure's repr.
    plain = [o["data"]["text/plain"] for o in outs]
    assert all(t.startswith("plotly figure: ") and "\n" not in t for t in plain), plain
    figs = st.figures_for(1)
    assert figs[0].data[0].z.shape == (4, 50) and len(figs) == 2
    st.figures_button.value = False
    assert st.figures.layout.display == "none"


def test_figures_open_on_an_earlier_run(st):
    st.generate(wait=True)
    st.generate(wait=True)  # hidden: runs draw nothing
    assert st.figures.outputs == ()
    st.run_picker.value = 1
    st.figures_button.value = True  # the picked run's figures
    shown = st.figures.outputs[0]["data"]["application/vnd.plotly.v1+json"]
    expected = st.figures_for(1)[0].to_plotly_json()["data"][0]["z"]
    np.testing.assert_array_equal(np.asarray(shown["data"][0]["z"]), np.asarray(expected))
