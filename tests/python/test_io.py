import json
import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from pyclams import CLAMS, load
from pyclams.errors import ModelFormatError


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
