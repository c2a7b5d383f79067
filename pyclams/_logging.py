"""The package logger: ``logging.getLogger("pyclams")``."""

from __future__ import annotations

import logging

logger = logging.getLogger("pyclams")
if not logger.handlers:
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("pyclams: %(message)s"))
    logger.addHandler(_handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
