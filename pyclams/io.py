"""The model directory: ``model.safetensors`` (arrays) + ``config.json`` (everything else).

No pickle anywhere: arrays are read with :mod:`safetensors` and metadata with :mod:`json`, so a
model directory from a stranger cannot run code. ``config.json`` records the SHA-256 of the
weights file; a mismatch (a tampered or half-copied directory) is an error, as is a format version
newer than this pyclams understands.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from .errors import ModelFormatError

FORMAT_NAME = "pyclams-model"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
REQUIRED_KEYS = ("format", "format_version", "pyclams_version", "classes", "preprocess",
                 "network", "calibration", "weights_sha256")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_model_dir(path: str | os.PathLike, config: dict, tensors: dict[str, np.ndarray], *,
                    overwrite: bool = False) -> Path:
    """Write ``tensors`` and ``config`` into directory ``path`` (created if needed)."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ModelFormatError(f"{out} exists and is not a directory")
    if (out / CONFIG_FILE).exists() and not overwrite:
        raise ModelFormatError(f"{out} already holds a model; pass overwrite=True to replace it")
    out.mkdir(parents=True, exist_ok=True)
    arrays = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    save_file(arrays, str(out / WEIGHTS_FILE))
    cfg = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **config,
           "weights_sha256": _sha256(out / WEIGHTS_FILE)}
    tmp = out / (CONFIG_FILE + ".tmp")
    tmp.write_text(json.dumps(cfg, indent=1, allow_nan=True))
    tmp.replace(out / CONFIG_FILE)
    return out


def read_model_dir(path: str | os.PathLike) -> tuple[dict, dict[str, np.ndarray]]:
    """Read and verify a model directory; return ``(config, tensors)``."""
    d = Path(path)
    if not d.is_dir():
        raise ModelFormatError(f"{d} is not a model directory (it does not exist or is a file)")
    cfg_path, w_path = d / CONFIG_FILE, d / WEIGHTS_FILE
    for p in (cfg_path, w_path):
        if not p.exists():
            raise ModelFormatError(f"{d} is incomplete: {p.name} is missing")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelFormatError(f"{cfg_path} is not valid JSON: {err}") from None
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT_NAME:
        raise ModelFormatError(f"{cfg_path} is not a pyclams model configuration")
    version = cfg.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFormatError(
            f"{d} has model format version {version}, newer than this pyclams understands "
            f"({FORMAT_VERSION}); upgrade pyclams (pip install -U pyclams)")
    missing = [k for k in REQUIRED_KEYS if k not in cfg]
    if missing:
        raise ModelFormatError(f"{cfg_path} lacks {missing}; the directory is incomplete")
    if _sha256(w_path) != cfg["weights_sha256"]:
        raise ModelFormatError(
            f"{w_path} does not match the checksum in {cfg_path.name}: the weights were changed "
            "or only partly copied")
    try:
        tensors = load_file(str(w_path))
    except Exception as err:  # safetensors raises its own error types
        raise ModelFormatError(f"{w_path} cannot be read as safetensors: {err}") from None
    return cfg, tensors
