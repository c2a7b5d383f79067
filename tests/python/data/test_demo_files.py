"""The bundled demo files: paths (read by the R package's clams_demo_data()) and contents."""

import pytest

from pyclams.data.demo import LABELS_KEY, demo_path, demo_query, demo_reference


def test_demo_path_names_the_bundled_files():
    for which, n_cells in (("reference", 800), ("query", 2638)):
        path = demo_path(which)
        assert path.is_file() and path.suffix == ".h5ad"
        adata = demo_reference() if which == "reference" else demo_query()
        assert adata.n_obs == n_cells and LABELS_KEY in adata.obs


def test_demo_path_refuses_other_names():
    with pytest.raises(ValueError, match="reference"):
        demo_path("atlas")
