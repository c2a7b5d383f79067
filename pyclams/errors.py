"""Errors a user can act on.

Every check that rejects input raises :class:`PyClamsInputError` (a ``ValueError``) with a
one-line reason; the command line prints that line and exits with status 2.
"""

from __future__ import annotations


class PyClamsInputError(ValueError):
    """Bad input: a wrong argument, malformed data or an unusable model directory."""


class ModelFormatError(PyClamsInputError):
    """A model directory that is incomplete, tampered with or written by a newer pyclams."""
