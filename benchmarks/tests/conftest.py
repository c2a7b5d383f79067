"""Tests of the benchmark (``benchmarks/clams_benchmark``): it is not installed with pyclams, so
``benchmarks/`` goes on ``sys.path`` here; shared synthetic data live in ``synthetic.py``."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
for path in (HERE.parent, HERE):  # clams_benchmark, and this folder's helper modules
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


@pytest.fixture(autouse=True)
def _propagate_pyclams_logs(monkeypatch):
    """Let caplog see pyclams' log records (the package logger does not propagate)."""
    monkeypatch.setattr(logging.getLogger("pyclams"), "propagate", True)
