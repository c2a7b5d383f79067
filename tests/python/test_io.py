import json
import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from pyclams import CLAMS, load
from pyclams.errors import ModelFormatError, PyClamsInputError


def test_round_trip_gives_identical_predictions(trained_model, query, tmp_path):
    trained_model.save(tmp_path / "m")
    loaded = load(tmp_path / "m", device="cpu")
    assert loaded.model_id == trained_model.model_id
    pd.testing.assert_frame_equal(trained_model.predict(query), loaded.predict(query))
    assert loaded.classes == trained_model.classes
    assert loaded.temperature == trained_model.temperature
    pd.testing.assert_frame_equal(loaded.history, trained_model.history)
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["format_version"] == 1 and cfg["preprocess"]["genes"] == loaded.preprocessor.genes
    with pytest.raises(ModelFormatError, match="already holds a model"):
        trained_model.save(tmp_path / "m")
    trained_model.save(tmp_path / "m", overwrite=True)


def test_load_never_unpickles(trained_model, tmp_path, monkeypatch):
    trained_model.save(tmp_path / "m")

    def refuse(*a, **k):
        raise AssertionError("unpickling attempted")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    m = CLAMS.load(tmp_path / "m", device="cpu")
    assert m.is_fitted


def test_tampered_incomplete_and_newer_directories(trained_model, tmp_path):
    d = tmp_path / "m"
    trained_model.save(d)
    weights = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(weights[:-8] + b"\x00" * 8)
    with pytest.raises(ModelFormatError, match="checksum"):
        load(d)
    (d / "model.safetensors").write_bytes(weights)
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**cfg, "format_version": 99}))
    with pytest.raises(ModelFormatError, match="newer"):
        load(d)
    del cfg["classes"]
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFormatError, match="lacks"):
        load(d)
    (d / "config.json").unlink()
    with pytest.raises(ModelFormatError, match="missing"):
        load(d)
    with pytest.raises(ModelFormatError, match="not a model directory"):
        load(tmp_path / "nothing")
    assert np.isfinite(trained_model.temperature)


def _edit_config(d, edit):
    cfg = json.loads((d / "config.json").read_text())
    edit(cfg)
    (d / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize("edit, match", [
    (lambda c: c["classes"].reverse(), "classes are in another order"),
    (lambda c: c["preprocess"]["genes"].reverse(), "genes are in another order"),
    (lambda c: c["classes"].pop(), "network has 3 outputs"),
    (lambda c: c["preprocess"]["genes"].pop(), "99 genes but the weights"),
    (lambda c: c["calibration"].update(temperature=0), "temperature must be a positive"),
    (lambda c: c["calibration"].update(temperature=None), "temperature must be a positive"),
    (lambda c: c["classes"].__setitem__(1, dict(c["classes"][0])), "not unique"),
    (lambda c: c.update(format_version="1"), "format_version must be an integer"),
])
def test_inconsistent_config_is_caught_at_load(trained_model, tmp_path, edit, match):
    d = tmp_path / "m"
    trained_model.save(d)
    _edit_config(d, edit)
    with pytest.raises(ModelFormatError, match=match):
        load(d, device="cpu")


def test_renaming_a_class_in_config_is_a_legitimate_edit(trained_model, query, tmp_path):
    d = tmp_path / "m"
    trained_model.save(d)
    _edit_config(d, lambda c: c["classes"][0].update(name="renamed"))
    m = load(d, device="cpu")
    assert m.classes[0] == "renamed" and m.classes[1:] == trained_model.classes[1:]
    df = m.predict(query)
    assert set(df["label_raw"]) <= set(m.classes)


def test_config_is_strict_json(trained_model, tmp_path):
    """(File permissions: test_hostile_inputs.py::test_model_files_follow_the_umask.)"""
    trained_model.metrics_["not_finite"] = float("nan")
    try:
        trained_model.save(tmp_path / "m")
    finally:
        del trained_model.metrics_["not_finite"]
    text = (tmp_path / "m" / "config.json").read_text()
    cfg = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert cfg["metrics"]["not_finite"] is None
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temporary left behind


def test_a_failed_save_keeps_the_previous_model(trained_model, tmp_path, monkeypatch):
    import pyclams.io as io
    d = tmp_path / "m"
    trained_model.save(d)
    before = {f.name: f.read_bytes() for f in d.iterdir()}

    def disk_full(*a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(io, "save_file", disk_full)
    with pytest.raises(PyClamsInputError, match="No space left on device; nothing was changed"):
        trained_model.save(d, overwrite=True)
    assert {f.name: f.read_bytes() for f in d.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_a_model_written_before_the_reorganisation_loads_and_predicts_the_same():
    from pathlib import Path

    from .conftest import make_counts
    files = Path(__file__).parent / "files"
    m = load(files / "model_format1", device="cpu")
    assert m.model_id == "eb582a9aa663fe06"
    old = pd.read_csv(files / "model_format1_predictions.csv", index_col=0)
    new = m.predict(make_counts(10, n_classes=4, seed=1, prefix="q"))
    assert new["label"].astype(str).tolist() == old["label"].tolist()
    assert new["is_ood"].tolist() == old["is_ood"].tolist()
    for col in ("confidence", "log_px", "ood_pvalue"):
        np.testing.assert_allclose(new[col], old[col], rtol=1e-5)


def test_held_out_neighbourhoods_are_stored_and_checked(trained_model, tmp_path):
    from pyclams import io

    d = tmp_path / "m"
    trained_model.save(d)
    cfg, tensors, names = io.read_model_dir(d)
    nbrs = tensors["calibration.neighbours"]
    assert nbrs.shape == (trained_model.calibrator.n_scores, 31)
    io.check_consistency(d, cfg, tensors, names)
    for bad in (nbrs[:-1], nbrs + nbrs.shape[0], nbrs[:, 0]):
        with pytest.raises(ModelFormatError, match="neighbourhoods do not match"):
            io.check_consistency(d, cfg, {**tensors, "calibration.neighbours": bad}, names)
