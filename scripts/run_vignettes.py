"""Execute the Jupyter vignettes and write each one, executed, as a notebook and as HTML.

Every notebook runs top to bottom in a fresh ``python3`` kernel (ipykernel of the Python that
runs this script) with its own folder as the working directory. A notebook whose cell raises, or
that runs past its time limit, fails the run: the script says which notebook and which cell in
one line (``run_vignettes: FAILED ...``) and exits with status 1, after running the others.

Usage (from the repository root; ``bash scripts/setup.sh`` installs what it needs)::

    .venv/bin/python scripts/run_vignettes.py                 # every vignettes/*.ipynb
    .venv/bin/python scripts/run_vignettes.py vignettes/pyclams-python.ipynb --timeout 600
    .venv/bin/python scripts/run_vignettes.py --out-dir /tmp/rendered   # leave the repo as is

Written to ``--out-dir`` (default ``vignettes/rendered``) for each notebook ``NAME.ipynb`` that
succeeded: ``NAME.ipynb`` (with outputs) and ``NAME.html``. Nothing is written for a notebook
that failed. The time limit of a notebook is ``--timeout`` seconds, or the number in its
metadata under ``run_vignettes.timeout`` when there is one.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
from nbconvert import HTMLExporter

from pyclams._files import atomic_path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DIR = REPO / "vignettes"
DEFAULT_OUT = DEFAULT_DIR / "rendered"
DEFAULT_TIMEOUT = 1200.0
KERNEL = "python3"

log = logging.getLogger("run_vignettes")
#: terminal colour codes in IPython tracebacks
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class Outcome:
    """What running one notebook gave: ``error`` is None when every cell ran."""

    path: Path
    seconds: float
    error: str | None = None


def kernel_environment() -> None:
    """Make the ``python3`` kernel start with the Python that runs this script.

    ipykernel's kernel spec starts ``python`` from ``PATH``; with this interpreter's folder
    first on ``PATH`` that is this virtual environment's Python, even when it is not activated.
    """
    bindir = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if path.split(os.pathsep)[0] != bindir:
        os.environ["PATH"] = bindir + os.pathsep + path


def notebook_timeout(nb: nbformat.NotebookNode, default: float) -> float:
    """The notebook's time limit: ``metadata.run_vignettes.timeout`` or ``default``."""
    value = nb.metadata.get("run_vignettes", {}).get("timeout")
    if value is None:
        return default
    if not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"metadata run_vignettes.timeout must be a positive number, "
                         f"not {value!r}")
    return float(value)


def _short(text: str, width: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _describe_cell(nb: nbformat.NotebookNode, index: int, line: tuple[int, str] | None = None
                   ) -> str:
    """``cell 7 (code cell 3, line 2: 'its source line')``; without ``line`` the cell's first
    line. Cells count from 1, over all cells of the notebook and over its code cells."""
    code_no = sum(1 for c in nb.cells[: index + 1] if c.cell_type == "code")
    if line is None:
        first = next((ln for ln in nb.cells[index].source.splitlines() if ln.strip()), "")
        return f"cell {index + 1} (code cell {code_no}: {_short(first)!r})"
    return f"cell {index + 1} (code cell {code_no}, line {line[0]}: {_short(line[1])!r})"


def _failing_line(err: CellExecutionError) -> tuple[int, str] | None:
    """The line of the cell where the error was raised (IPython marks it ``---->``)."""
    in_cell = False
    for ln in _ANSI.sub("", err.traceback or "").splitlines():
        if ln.startswith("Cell In["):
            in_cell = True
        elif in_cell and (m := re.match(r"-+> (\d+) (.*)", ln)):
            return int(m.group(1)), m.group(2)
        elif in_cell and ln.startswith("File "):  # left the cell without a marked line
            return None
    return None


def _error_summary(err: CellExecutionError) -> str:
    """The exception's name and message from a cell error, on one line."""
    if err.ename:
        value = " ".join(str(err.evalue).split())
        return f"{err.ename}: {value}" if value else err.ename
    return " ".join(str(err).split())[:200]


def execute(nb: nbformat.NotebookNode, *, cwd: Path, timeout: float) -> str | None:
    """Run every code cell of ``nb`` in place (outputs kept); return None, or what failed.

    ``timeout`` bounds the whole notebook: each cell may use what the cells before it left.
    """
    client = NotebookClient(nb, kernel_name=KERNEL, timeout=int(timeout),
                            resources={"metadata": {"path": str(cwd)}},
                            record_timing=False, allow_errors=False)
    deadline = time.monotonic() + timeout
    index = -1
    try:
        with client.setup_kernel():
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CellTimeoutError(f"no time left ({timeout:g} s)")
                client.timeout = max(1, int(left))
                client.execute_cell(cell, index)
    except CellTimeoutError:
        return (f"{_describe_cell(nb, index)} was still running when the notebook's time "
                f"limit of {timeout:g} s ran out")
    except CellExecutionError as err:
        log.error("%s", _ANSI.sub("", str(err)))  # the cell and its traceback
        return f"{_describe_cell(nb, index, _failing_line(err))} raised {_error_summary(err)}"
    except DeadKernelError as err:
        return f"the kernel died in {_describe_cell(nb, index)}: {_short(str(err), 200)}"
    except Exception as err:  # e.g. the kernel did not start: no python3 kernel spec
        where = f" in {_describe_cell(nb, index)}" if index >= 0 else " before its first cell"
        return f"stopped{where}: {type(err).__name__}: {_short(str(err), 200)}"
    return None


def write_outputs(nb: nbformat.NotebookNode, name: str, out_dir: Path) -> list[Path]:
    """Write the executed notebook and its HTML rendering; return their paths."""
    ipynb = out_dir / f"{name}.ipynb"
    html = out_dir / f"{name}.html"
    with atomic_path(ipynb) as tmp:
        nbformat.write(nb, str(tmp))
    body, _ = HTMLExporter().from_notebook_node(nb)
    with atomic_path(html) as tmp:
        tmp.write_text(body, encoding="utf-8")
    return [ipynb, html]


def run_notebook(path: Path, *, out_dir: Path, default_timeout: float) -> Outcome:
    """Execute one notebook; on success write its outputs to ``out_dir``."""
    start = time.monotonic()
    try:
        nb = nbformat.read(str(path), as_version=4)
        timeout = notebook_timeout(nb, default_timeout)
    except Exception as err:  # no file, not JSON, not a notebook, bad metadata: all one line
        return Outcome(path, 0.0, f"cannot be read: {' '.join(str(err).split())}")
    log.info("running %s (time limit %g s)", path, timeout)
    error = execute(nb, cwd=path.resolve().parent, timeout=timeout)
    seconds = time.monotonic() - start
    if error is None:
        for written in write_outputs(nb, path.stem, out_dir):
            log.info("wrote %s (%.0f kB)", written, written.stat().st_size / 1024)
    return Outcome(path, seconds, error)


def find_notebooks(paths: list[str]) -> list[Path]:
    """The notebooks named, or every ``vignettes/*.ipynb`` when none is."""
    if not paths:
        found = sorted(DEFAULT_DIR.glob("*.ipynb"))
        if not found:
            raise SystemExit(f"run_vignettes: no notebooks in {DEFAULT_DIR}")
        return [Path(os.path.relpath(p)) for p in found]
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise SystemExit(f"run_vignettes: no such notebook: {', '.join(missing)}")
    return [Path(p) for p in paths]


def main(argv: list[str] | None = None) -> int:
    """Run the notebooks; return 0 when all succeeded, else 1."""
    parser = argparse.ArgumentParser(
        description="Execute Jupyter vignettes; write each, executed, as .ipynb and .html.")
    parser.add_argument("notebooks", nargs="*",
                        help="notebooks to run (default: every vignettes/*.ipynb)")
    parser.add_argument("--out-dir", default=str(DEFAULT_OUT),
                        help="where the executed notebooks and HTML go "
                             "(default: vignettes/rendered)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help="time limit of each notebook in seconds, unless its metadata "
                             "sets run_vignettes.timeout (default: %(default)g)")
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("run_vignettes: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    kernel_environment()
    outcomes = [run_notebook(p, out_dir=Path(args.out_dir), default_timeout=args.timeout)
                for p in find_notebooks(args.notebooks)]
    for o in outcomes:
        if o.error is None:
            log.info("ok %s (%.0f s)", o.path, o.seconds)
        else:
            # the one line to read: which notebook, which cell, what went wrong
            print(f"run_vignettes: FAILED {o.path}: {o.error}", file=sys.stderr)
    return 1 if any(o.error for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
