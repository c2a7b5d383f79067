import json

import pytest

from pyclams.cli import main

from .conftest import make_counts


@pytest.fixture
def files(tmp_path):
    ref = make_counts(50, n_classes=3, seed=0)
    q = make_counts(30, n_classes=4, seed=1, prefix="q")
    ref.write_h5ad(tmp_path / "ref.h5ad")
    q.write_h5ad(tmp_path / "q.h5ad")
    return tmp_path


def test_train_annotate_evaluate_info(files, capsys):
    d = files
    assert main(["train", str(d / "ref.h5ad"), "--labels-key", "cell_type", "-o",
                 str(d / "model"), "--epochs", "6", "--seed", "1", "--quiet",
                 "--device", "cpu"]) == 0
    assert main(["annotate", str(d / "q.h5ad"), "--model", str(d / "model"), "-o",
                 str(d / "out.h5ad"), "--ood-fdr", "0.1", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(d / "out.h5ad"), "--truth-key", "cell_type", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["accuracy"] > 0.8 and report["n_ood"] == 30
    assert {"macro_f1", "ece", "auroc_log_px", "auroc_max_p", "ood_rejected"} <= set(report)
    assert main(["evaluate", str(d / "out.h5ad"), "--truth-key", "cell_type",
                 "--ood-classes", "type3"]) == 0
    capsys.readouterr()
    assert main(["info", str(d / "model")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert set(info["classes"]) == {"type0", "type1", "type2"} and info["input"] == "counts"


@pytest.mark.parametrize("argv,message", [
    (["train", "{d}/ref.h5ad", "--labels-key", "nope", "-o", "{d}/m"], "not a column"),
    (["train", "{d}/missing.h5ad", "--labels-key", "cell_type", "-o", "{d}/m"], "no such file"),
    (["annotate", "{d}/q.h5ad", "--model", "{d}/none", "-o", "{d}/o.h5ad"], "not a model"),
    (["evaluate", "{d}/q.h5ad", "--truth-key", "cell_type"], "run `pyclams annotate`"),
    (["train", "{d}/ref.h5ad", "--labels-key", "cell_type", "-o", "{d}/m", "--integrate",
      "harmony"], "needs --query"),
])
def test_user_errors_exit_2_with_one_line(files, capsys, argv, message):
    code = main([a.format(d=files) for a in argv] + ["--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1
