import subprocess
import sys
import time

import musicgen_nb as mg
from musicgen_nb import catalog
from musicgen_nb.checkpoints import OFFLINE, known
from musicgen_nb.checkpoints.loading import param_counts


def test_stored_parameter_counts_match_the_built_architectures():
    assert set(catalog.PARAMS) == set(known())
    for name in known():
        assert catalog.PARAMS[name] == param_counts(name), name


def test_offline_presets_are_the_offline_checkpoints():
    assert catalog.OFFLINE_PRESETS == OFFLINE


def test_the_table_lists_every_known_architecture_in_order():
    df = mg.list_models()
    assert list(df.name) == list(known())
    small = df.set_index("name").loc["small"]
    assert (small.sample_rate, small.frame_rate, small.num_codebooks) == (32000, 50, 4)


def test_list_models_imports_neither_torch_nor_transformers():
    code = (
        "import sys, time; t = time.perf_counter(); import musicgen_nb as mg; df = mg.list_models();"
        "print(len(df), 'torch' in sys.modules, 'transformers' in sys.modules,"
        " round(time.perf_counter() - t, 2))"
    )
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    rows, torch_loaded, transformers_loaded, seconds = out.stdout.split()
    assert (rows, torch_loaded, transformers_loaded) == ("10", "False", "False"), out.stdout
    assert float(seconds) < 10, seconds  # 11-20 s before; about 0.5-1.3 s here, even under load
    assert time.perf_counter() - start < 30
