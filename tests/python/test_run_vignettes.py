"""scripts/run_vignettes.py: a notebook that runs is written out; one that errors fails the run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "run_vignettes.py"


def _notebook(path: Path, *cells: str, metadata: dict | None = None) -> Path:
    nb = new_notebook(cells=[new_markdown_cell("# a tiny vignette"),
                             *(new_code_cell(c) for c in cells)])
    nb.metadata.update(metadata or {})
    nbformat.write(nb, str(path))
    return path


def _child_env() -> dict[str, str]:
    """This process's environment less the LD_LIBRARY_PATH that rpy2 exports once R has
    started here (test_r_bridge runs first): with R's library folders first, a child Python
    can load another build's libpython (seen: pyenv's 3.11.7 took Debian's 3.11 from
    /usr/lib/x86_64-linux-gnu, and its regular expressions failed inside nbconvert)."""
    env = dict(os.environ)
    r_home = env.get("R_HOME")
    if r_home and env.get("LD_LIBRARY_PATH", "").startswith(os.path.join(r_home, "lib")):
        del env["LD_LIBRARY_PATH"]
    return env


def _run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], cwd=cwd,
                          env=_child_env(), capture_output=True, text=True, timeout=120)


def test_good_notebook_is_executed_and_written(tmp_path):
    nb = _notebook(tmp_path / "good.ipynb",
                   "import os, sys\nprint('answer', 6 * 7)",
                   "print(sys.executable)\nprint(os.getcwd())")
    out = tmp_path / "rendered"
    res = _run(nb, "--out-dir", out, "--timeout", "60", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    executed = nbformat.read(str(out / "good.ipynb"), as_version=4)
    texts = [o.get("text", "") for c in executed.cells if c.cell_type == "code"
             for o in c.outputs]
    assert texts[0] == "answer 42\n"
    # the kernel is the Python that ran the script, in the notebook's folder
    exe, cwd = texts[1].splitlines()
    assert Path(exe).resolve() == Path(sys.executable).resolve()
    assert Path(cwd).resolve() == tmp_path.resolve()
    html = (out / "good.html").read_text()
    assert "answer 42" in html and "<html" in html
    assert "ok " in res.stderr and "FAILED" not in res.stderr


def test_erroring_cell_fails_the_run_and_names_it(tmp_path):
    good = _notebook(tmp_path / "a_good.ipynb", "x = 1")
    bad = _notebook(tmp_path / "b_bad.ipynb", "x = 1", "y = x + 1\nraise ValueError('boom')",
                    "print('never runs')")
    out = tmp_path / "rendered"
    res = _run(good, bad, "--out-dir", out, "--timeout", "60", cwd=tmp_path)
    assert res.returncode == 1
    failed = [ln for ln in res.stderr.splitlines() if "FAILED" in ln]
    assert failed == [f"run_vignettes: FAILED {bad}: cell 3 (code cell 2, line 2: "
                      "\"raise ValueError('boom')\") raised ValueError: boom"]
    # the good one is still run and written; nothing is written for the bad one
    assert (out / "a_good.ipynb").is_file() and (out / "a_good.html").is_file()
    assert not (out / "b_bad.ipynb").exists() and not (out / "b_bad.html").exists()


def test_notebook_time_limit_from_metadata(tmp_path):
    slow = _notebook(tmp_path / "slow.ipynb", "import time", "time.sleep(60)",
                     metadata={"run_vignettes": {"timeout": 3}})
    res = _run(slow, "--out-dir", tmp_path / "rendered", cwd=tmp_path)
    assert res.returncode == 1
    assert (f"FAILED {slow}: cell 3 (code cell 2: 'time.sleep(60)') was still running when "
            "the notebook's time limit of 3 s ran out") in res.stderr


def test_unreadable_notebook_fails(tmp_path):
    broken = tmp_path / "broken.ipynb"
    broken.write_text(json.dumps({"cells": "not a list"}))
    res = _run(broken, "--out-dir", tmp_path / "rendered", cwd=tmp_path)
    assert res.returncode == 1
    assert f"FAILED {broken}: cannot be read" in res.stderr
