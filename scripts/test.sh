#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check pyclams tests
.venv/bin/python -m pytest tests/python -q
if command -v R >/dev/null; then bash scripts/test_r.sh; fi
