import pytest

from pyclams import OODOptions
from pyclams.errors import PyClamsInputError


def test_defaults_and_flat_arguments_take_precedence():
    assert OODOptions() == OODOptions("conformal", 0.05, "query", 0.5, 10, "auto")
    opts = OODOptions.from_kwargs({"fdr": 0.2, "calibration": "pooled"}, ood_fdr=0.1)
    assert (opts.fdr, opts.calibration, opts.method) == (0.1, "pooled", "conformal")
    assert OODOptions.from_kwargs(OODOptions(fdr=0.3)).fdr == 0.3
    assert opts.to_dict() == {"ood_method": "conformal", "ood_fdr": 0.1,
                              "calibration": "pooled", "min_confidence": 0.5,
                              "n_neighbors": 10, "label_mode": "auto"}
    assert OODOptions.from_kwargs(label_mode="cell").label_mode == "cell"
    assert OODOptions.from_kwargs(n_neighbors=0).n_neighbors == 0
    assert OODOptions(n_neighbors=7.0).n_neighbors == 7  # R sends doubles


@pytest.mark.parametrize("kwargs, match", [
    ({"ood_fdr": 0.0}, "ood_fdr must be in"),
    ({"ood_fdr": 1.5}, "ood_fdr must be in"),
    ({"ood_fdr": "0.1"}, "ood_fdr must be a number"),
    ({"ood_fdr": True}, "ood_fdr must be a number"),
    ({"n_neighbors": 31}, "n_neighbors must be a whole number from 0 to 30"),
    ({"n_neighbors": 2.5}, "n_neighbors must be a whole number"),
    ({"n_neighbors": -1}, "n_neighbors must be a whole number"),
    ({"ood_method": "energy"}, "ood_method must be one of"),
    ({"calibration": "global"}, "calibration must be one of"),
    ({"label_mode": "cluster"}, "label_mode must be one of"),
    ({"min_confidence": 2}, "min_confidence must be in"),
    ({"min_confidence": float("nan")}, "min_confidence must be in"),
])
def test_bad_settings_are_one_clear_error(kwargs, match):
    with pytest.raises(PyClamsInputError, match=match):
        OODOptions.from_kwargs(**kwargs)


def test_unknown_keys_and_types_are_refused():
    with pytest.raises(PyClamsInputError, match="unknown OOD setting"):
        OODOptions.from_kwargs({"alpha": 0.1})
    with pytest.raises(PyClamsInputError, match="must be an OODOptions or a dict"):
        OODOptions.from_kwargs(0.1)
