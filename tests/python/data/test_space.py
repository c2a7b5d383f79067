import numpy as np
import pytest

from pyclams.data.space import GeneSpace, HarmonySpace, space_from_config
from pyclams.errors import PyClamsInputError


def test_gene_space_round_trip_and_inverse(ref, query):
    space, features = GeneSpace.fit(ref, layer=None, is_log=None, n_top_genes=50,
                                    batch_key=None)
    assert features.n_features == space.n_features == 50 == len(space.var_names)
    back = space_from_config(space.to_config(), space.integration_config(), space.tensors())
    a, _ = space.transform(query)
    b, overlap = back.transform(query)
    assert overlap == 1.0
    np.testing.assert_array_equal(a.rows(np.arange(5)), b.rows(np.arange(5)))
    x = a.rows(np.arange(5))
    logx = space.inverse(x)
    assert (logx >= 0).all()
    # where no zero was clipped off, inverse() undoes the standardisation
    kept = logx > 0
    np.testing.assert_allclose(space.preprocessor.standardise(logx)[kept], x[kept], atol=1e-4)


def test_harmony_space_is_tied_to_its_query(ref, query):
    genes, features = GeneSpace.fit(ref, layer=None, is_log=None, n_top_genes=50,
                                    batch_key=None)
    space, pcs = HarmonySpace.fit_joint(genes, features, ref, query, query_layer=None,
                                        batch_key=None, n_pcs=5, seed=0)
    assert pcs.n_features == space.n_features == 5 and space.var_names[0] == "PC1"
    back = space_from_config(space.to_config(), space.integration_config(), space.tensors())
    assert isinstance(back, HarmonySpace)
    fm, _ = back.transform(query)
    assert fm.n_cells == query.n_obs
    assert back.last_input == {"kind": "counts", "log_base": None, "log_base_source": None}
    with pytest.raises(PyClamsInputError, match="works only on those same cells"):
        back.transform(query[::-1])
