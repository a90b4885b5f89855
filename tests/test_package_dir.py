"""``dir(hipsml)`` lists the training names without importing them (JAX is imported on first use)."""

from __future__ import annotations

import json
import subprocess
import sys


def test_dir_lists_the_lazy_training_names_without_importing_jax() -> None:
    code = (
        "import json, sys, hipsml; names = dir(hipsml); "
        "print(json.dumps([names, 'jax' in sys.modules, 'hipsml.train' in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    names, jax_loaded, train_loaded = json.loads(out)
    assert {"train_som", "train_cnn", "predict_cnn", "load_som", "SOMConfig", "CNNConfig"} <= set(names)
    assert "predict" not in names  # the deprecated name still works, but is not advertised
    assert {"open_survey", "cutouts", "open_dataset", "__version__"} <= set(names)
    assert names == sorted(names) and len(names) == len(set(names))
    assert not jax_loaded and not train_loaded  # listing is not importing
    import hipsml

    assert set(hipsml.__all__) <= set(dir(hipsml))  # every public name is listed
