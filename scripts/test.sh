#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# one torch thread: CPU training flushes denormal floats on the main thread only (worker
# threads would crawl once the loss nears 0), and it keeps the timings predictable
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
.venv/bin/ruff check pyclams tests benchmarks scripts
# the package's tests, then the benchmark's (benchmarks/tests: not installed with pyclams)
.venv/bin/python -m pytest tests/python benchmarks/tests -q
# the Jupyter vignettes (every vignettes/*.ipynb): a cell that errors fails here. Rendered into
# a temporary folder: the committed vignettes/rendered/ changes only when built on purpose
# (.venv/bin/python scripts/run_vignettes.py)
rendered=$(mktemp -d)
.venv/bin/python scripts/run_vignettes.py --out-dir "$rendered"
rm -rf "$rendered"
if command -v R >/dev/null; then bash scripts/test_r.sh; fi
