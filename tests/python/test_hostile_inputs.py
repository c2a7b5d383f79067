"""Hostile and careless inputs (issue 11): each gives one clear line (exit 2 from the CLI, a
``PyClamsInputError`` from Python) or works, and nothing the user owns is lost or half-written.

Each test names the case of the issue it pins down; the cases that were already fine and must
stay fine are at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import pyclams
from pyclams.cli import main
from pyclams.errors import ModelFormatError, PyClamsInputError

from .conftest import assert_unchanged, make_counts, snapshot


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name or ".old-" in p.name)


@pytest.fixture(scope="module")
def saved(tmp_path_factory, trained_model):
    """A model directory and a query file, written once."""
    d = tmp_path_factory.mktemp("hostile")
    trained_model.save(d / "model")
    make_counts(20, n_classes=4, seed=1, prefix="q").write_h5ad(d / "q.h5ad")
    make_counts(30, n_classes=3, seed=0).write_h5ad(d / "ref.h5ad")
    return d


def _cli(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    return code, err


def _one_line(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, err


# ------------------------------------------------------------------ 1. data loss
@pytest.mark.parametrize("stage", ["copy", "fields"])
def test_failed_in_place_annotate_keeps_the_input(saved, tmp_path, capsys, monkeypatch, stage):
    # the output is a copy of the query with the new fields written into it: the disk may
    # fill while copying or while writing the fields
    import pyclams.h5ad_annotate as h5

    q = tmp_path / "q.h5ad"
    q.write_bytes((saved / "q.h5ad").read_bytes())
    before = _sha(q)

    def full_disk_copy(src, key, out, name):
        out.create_dataset("partial", data=[1, 2, 3])
        raise OSError(28, "No space left on device")

    def full_disk_field(*args, **kwargs):
        raise OSError(28, "No space left on device")
    if stage == "copy":
        monkeypatch.setattr(h5.h5py.Group, "copy", lambda self, src, out, name: full_disk_copy(
            self, src, out, name))
    else:
        monkeypatch.setattr(h5, "write_elem", full_disk_field)
    code, err = _cli(capsys, "annotate", q, "--model", saved / "model", "-o", q, "--quiet")
    _one_line(code, err, "No space left on device", str(q))
    assert _sha(q) == before and _leftovers(tmp_path) == []


@pytest.mark.skipif(sys.platform == "win32", reason="ulimit")
def test_in_place_annotate_under_a_file_size_limit_keeps_the_input(saved, tmp_path):
    q = tmp_path / "q.h5ad"
    q.write_bytes((saved / "q.h5ad").read_bytes())
    before = _sha(q)
    limit_kb = q.stat().st_size // 1024 + 4  # the input fits, the annotated output does not
    cmd = (f"ulimit -f {limit_kb}; exec {sys.executable} -m pyclams annotate {q} --model "
           f"{saved / 'model'} -o {q} --quiet --device cpu")
    res = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert _sha(q) == before and _leftovers(tmp_path) == []


# ------------------------------------------------------------------ 2. config.json
@pytest.mark.parametrize("edit, needle", [
    (lambda c: c["classes"].reverse(), "another order"),
    (lambda c: c["preprocess"]["genes"].reverse(), "another order"),
    (lambda c: c["calibration"].update(temperature=0), "temperature"),
    (lambda c: c["classes"].pop(), "outputs"),
    (lambda c: c["preprocess"]["genes"].pop(), "genes but"),
])
def test_inconsistent_model_directory_is_refused_by_info_and_annotate(
        saved, tmp_path, capsys, edit, needle):
    d = tmp_path / "m"
    d.mkdir()
    for f in (saved / "model").iterdir():
        (d / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((d / "config.json").read_text())
    edit(cfg)
    (d / "config.json").write_text(json.dumps(cfg))
    _one_line(*_cli(capsys, "info", d), needle, "config.json")
    _one_line(*_cli(capsys, "annotate", saved / "q.h5ad", "--model", d, "-o",
                    tmp_path / "o.h5ad", "--quiet"), needle)
    assert not (tmp_path / "o.h5ad").exists()


# ------------------------------------------------------------------ 3. CLI options
@pytest.mark.parametrize("flag, value, needle", [
    ("--epochs", "0", "at least 1"), ("--epochs", "-1", "at least 1"),
    ("--batch-size", "0", "at least 2"), ("--epochs", "ten", "not a whole number"),
    ("--n-top-genes", "0", "at least 1"), ("--seed", "-3", "at least 0"),
])
def test_bad_training_options_exit_2_before_reading_data(saved, tmp_path, capsys, flag, value,
                                                         needle):
    _one_line(*_cli(capsys, "train", saved / "ref.h5ad", "--labels-key", "cell_type", "-o",
                    tmp_path / "m", flag, value), needle, flag)
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("flag, value", [("--ood-fdr", "0"), ("--ood-fdr", "1.5"),
                                         ("--ood-fdr", "x"), ("--min-gene-overlap", "2")])
def test_bad_annotate_options_exit_2(saved, tmp_path, capsys, flag, value):
    _one_line(*_cli(capsys, "annotate", saved / "q.h5ad", "--model", saved / "model", "-o",
                    tmp_path / "o.h5ad", flag, value), flag)


@pytest.mark.parametrize("target, needle", [
    ("model", "already holds a model"), ("file", "not a directory"),
    ("unwritable", "cannot write the model"),
])
def test_train_output_is_checked_before_training(saved, tmp_path, capsys, monkeypatch, target,
                                                 needle):
    import pyclams.model
    monkeypatch.setattr(pyclams.model.CLAMS, "fit",
                        lambda *a, **k: pytest.fail("trained before checking -o"))
    # "unwritable": nothing can be created there, for root too (its parent is a file)
    out = {"model": saved / "model", "file": saved / "q.h5ad",
           "unwritable": saved / "q.h5ad" / "model"}[target]
    _one_line(*_cli(capsys, "train", saved / "ref.h5ad", "--labels-key", "cell_type", "-o",
                    out), needle)


# ------------------------------------------------------------------ 4. inputs users have
def test_backed_anndata_is_annotated_like_an_in_memory_one(trained_model, saved):
    backed = ad.read_h5ad(saved / "q.h5ad", backed="r")
    in_memory = ad.read_h5ad(saved / "q.h5ad")
    pd.testing.assert_frame_equal(trained_model.predict(backed),
                                  trained_model.predict(in_memory))


def test_float16_values_work(trained_model, saved):
    q = ad.read_h5ad(saved / "q.h5ad")
    q16 = q.copy()
    q16.X = q16.X.toarray().astype(np.float16)  # scipy has no float16 sparse matrices
    a, b = trained_model.predict(q), trained_model.predict(q16)
    assert (a["label_raw"] == b["label_raw"]).all()


@pytest.mark.parametrize("bad, needle", [
    (lambda q: q[:0].copy(), "0 cells"),
    (lambda q: q.X.toarray(), "must be an AnnData object, not ndarray"),
    (lambda q: q.to_df(), "must be an AnnData object, not DataFrame"),
    (lambda q: "q.h5ad", "must be an AnnData object, not str"),
])
def test_non_anndata_and_empty_queries_are_one_error(trained_model, saved, bad, needle):
    q = ad.read_h5ad(saved / "q.h5ad")
    with pytest.raises(PyClamsInputError, match=needle):
        trained_model.predict(bad(q))


@pytest.mark.parametrize("kwargs, needle", [
    ({"ood_fdr": "0.1"}, "ood_fdr must be a number"), ({"batch_size": 0}, "batch_size"),
    ({"ood_fdr": 0}, "ood_fdr must be in"), ({"key_added": ""}, "key_added"),
    ({"key_added": None}, "key_added"),
])
def test_bad_annotate_arguments_leave_the_query_unchanged(trained_model, saved, kwargs, needle):
    q = ad.read_h5ad(saved / "q.h5ad")
    snap = snapshot(q)
    with pytest.raises(PyClamsInputError, match=needle):
        trained_model.annotate(q, **kwargs)
    assert_unchanged(q, snap)


@pytest.mark.parametrize("kwargs, needle", [
    ({"max_epochs": 0}, "max_epochs"), ({"max_epochs": -1}, "max_epochs"),
    ({"batch_size": 0}, "batch_size"), ({"seed": -1}, "seed"), ({"seed": 1.5}, "seed"),
])
def test_bad_training_arguments_are_refused(saved, kwargs, needle):
    ref = ad.read_h5ad(saved / "ref.h5ad")
    with pytest.raises(PyClamsInputError, match=needle):
        pyclams.train(ref, labels_key="cell_type", device="cpu", verbose=False, **kwargs)


@pytest.mark.parametrize("where, needle", [("dir", "is a directory"), ("proc", "/proc")])
def test_bad_annotate_outputs_exit_2(saved, tmp_path, capsys, where, needle):
    out = tmp_path if where == "dir" else Path("/proc/x.h5ad")
    _one_line(*_cli(capsys, "annotate", saved / "q.h5ad", "--model", saved / "model", "-o",
                    out, "--quiet"), needle)


def test_saving_a_model_to_an_unwritable_place_is_one_error(trained_model):
    with pytest.raises(PyClamsInputError, match="cannot write the model"):
        trained_model.save("/proc/pyclams_model")


def test_capital_suffixes_are_read(saved, tmp_path, capsys):
    q = tmp_path / "Q.H5AD"
    q.write_bytes((saved / "q.h5ad").read_bytes())
    code, err = _cli(capsys, "annotate", q, "--model", saved / "model", "-o",
                     tmp_path / "out.h5ad", "--quiet")
    assert code == 0, err


# ------------------------------------------------------------------ 5. overwrites and keys
def test_annotate_twice_needs_overwrite(trained_model, saved, tmp_path, capsys):
    q = ad.read_h5ad(saved / "q.h5ad")
    q.uns["mine"] = {"keep": 1}
    trained_model.annotate(q)
    snap = snapshot(q)
    with pytest.raises(PyClamsInputError, match="already has clams_label"):
        trained_model.annotate(q)
    assert_unchanged(q, snap)
    trained_model.annotate(q, overwrite=True, ood_fdr=0.2)
    assert q.uns["clams"]["params"]["ood_fdr"] == 0.2 and q.uns["mine"] == {"keep": 1}
    # the CLI the same way: an annotated file needs --overwrite
    q.write_h5ad(tmp_path / "annotated.h5ad")
    _one_line(*_cli(capsys, "annotate", tmp_path / "annotated.h5ad", "--model",
                    saved / "model", "-o", tmp_path / "again.h5ad", "--quiet"),
              "--overwrite")
    assert not (tmp_path / "again.h5ad").exists()
    code, err = _cli(capsys, "annotate", tmp_path / "annotated.h5ad", "--model",
                     saved / "model", "-o", tmp_path / "again.h5ad", "--overwrite", "--quiet")
    assert code == 0, err


# ------------------------------------------------------------------ 6. messages
def test_a_query_logged_twice_gets_its_own_diagnostic(trained_model, saved):
    q = ad.read_h5ad(saved / "q.h5ad")
    lognorm = sp.csr_matrix(q.X)
    lognorm = sp.diags(1e4 / np.asarray(lognorm.sum(1)).ravel()) @ lognorm
    lognorm = lognorm.tocsr()
    lognorm.data = np.log1p(np.log1p(lognorm.data))
    q.X = lognorm
    with pytest.raises(PyClamsInputError, match="log-transformed twice"):
        trained_model.predict(q)


def test_unknown_ood_classes_in_evaluate_exit_2(saved, tmp_path, capsys):
    code, err = _cli(capsys, "annotate", saved / "q.h5ad", "--model", saved / "model", "-o",
                     tmp_path / "o.h5ad", "--quiet")
    assert code == 0, err
    _one_line(*_cli(capsys, "evaluate", tmp_path / "o.h5ad", "--truth-key", "cell_type",
                    "--ood-classes", "type9,typo"), "['type9', 'typo']", "do not occur")


@pytest.mark.parametrize("kwargs", [{"n_steps": -3}, {"n_steps": 0}, {"n": 0},
                                    {"step_size": -1.0}, {"noise": float("nan")}])
def test_sample_refuses_bad_settings(trained_model, kwargs):
    with pytest.raises(PyClamsInputError):
        trained_model.sample(**{"n": 5, **kwargs})


# ------------------------------------------------------------------ 7. permissions
def test_model_files_follow_the_umask(trained_model, tmp_path):
    old = os.umask(0o022)
    try:
        trained_model.save(tmp_path / "m")
    finally:
        os.umask(old)
    modes = {f.name: f.stat().st_mode & 0o777 for f in (tmp_path / "m").iterdir()}
    assert modes == {"config.json": 0o644, "model.safetensors": 0o644}


# ------------------------------------------------------------------ cases that stay good
def test_good_cases_stay_good(trained_model, saved, tmp_path, capsys):
    # in-place annotate works and the result reads back
    q = tmp_path / "q.h5ad"
    q.write_bytes((saved / "q.h5ad").read_bytes())
    code, err = _cli(capsys, "annotate", q, "--model", saved / "model", "-o", q, "--quiet")
    assert code == 0, err
    assert "clams_label" in ad.read_h5ad(q).obs and _leftovers(tmp_path) == []
    # a model loads without unpickling and is repeatable on the CPU
    m = pyclams.load(saved / "model", device="cpu")
    assert m.model_id == trained_model.model_id
    # a missing model file is one error
    with pytest.raises(ModelFormatError, match="not a model directory"):
        pyclams.load(tmp_path / "nothing")
