"""The model directory: ``model.safetensors`` (arrays) + ``config.json`` (everything else).

No pickle anywhere: arrays are read with :mod:`safetensors` and metadata with :mod:`json`, so a
model directory from a stranger cannot run code. ``config.json`` is strict JSON (a value that
is not finite is written as ``null``) and records the SHA-256 of the weights file; a mismatch
(a tampered or half-copied directory) is an error, as is a format version newer than this
pyclams understands, and a directory whose parts disagree (:func:`check_consistency`).

``config.json`` (format version 1; the R package reads the same file):

==================  ================================================================================
key                 content
==================  ================================================================================
format              ``"pyclams-model"``
format_version      integer; readers refuse a newer one
pyclams_version     version that wrote the model
model_id            16 hex digits: hash of the network weights
preset              ``"clams"``, ``"jem"`` or ``"classifier"`` (older files: others)
classes             list of ``{"name": str, "n_cells": int}`` in the network's output order
preprocess          ``input_kind`` (``"counts"``/``"log"``), ``genes`` (model genes in input
                    order), ``size_genes``, ``clip``, ``target_sum``, ``extra``, ``n_top_genes``,
                    ``log_base`` (base of a log-normalised reference, null for counts),
                    ``log_base_source`` (``"detected"``/``"guessed"``/``"given"``, null for
                    counts), ``harmonise`` (true: log input is un-logged and normalised like
                    counts; false or absent, in older files: it is used as it is)
network             ``n_input``, ``n_classes`` and the architecture (:class:`ResNetMLP`)
training            ``train``, ``sgld``, ``generative`` settings, ``labels_key``, ``seed``, ...
calibration         ``temperature`` (> 0), ``n_scores``, ``held_out``
metrics             held-out accuracy / ECE, ``best_epoch``, ``diverged``
history             per-epoch table (column -> list), ``best_epoch``, divergence
integration         null, or ``{"method": "harmony", "n_pcs", "batch_key", "query_cells"}``
weights_sha256      SHA-256 of ``model.safetensors``
==================  ================================================================================

Arrays in ``model.safetensors``: ``net.*`` (the network's state dict), ``preprocess.mean`` and
``preprocess.sd`` (one value per model gene), ``calibration.scores`` and
``calibration.predicted`` (held-out reference cells), ``calibration.neighbours`` (each
held-out cell and its 30 nearest held-out cells, int32; absent in files written before
query-aware calibration), ``sampling.class_means`` (classes x
features) and, with Harmony, ``harmony.*``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file, save_file

from ._files import os_error_text, umask_mode
from ._version import __version__
from .data.space import space_from_config
from .ebm.losses import PRESETS, GenerativeLossConfig
from .errors import ModelFormatError, PyClamsInputError
from .nn.build import network_from_config
from .ood.calibrator import Calibrator
from .training.history import History

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


def strict_json(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def write_model_dir(path: str | os.PathLike, config: dict, tensors: dict[str, np.ndarray], *,
                    overwrite: bool = False, names: dict[str, list[str]] | None = None) -> Path:
    """Write ``tensors`` and ``config`` as the model directory ``path``.

    The directory is built under a temporary name beside ``path`` and renamed into place when
    complete: an error (a full disk, a kill) leaves any previous model at ``path`` intact.
    Files get the user's umask (like any file the user creates). ``names`` (e.g. the classes
    and genes in the network's order) are also stored in the checksummed weights file, so that
    a reordered ``config.json`` is caught at load.
    """
    out = check_model_target(path, overwrite=overwrite)
    try:
        return _write_model_dir(out, config, tensors, names)
    except (OSError, SafetensorError) as err:
        raise PyClamsInputError(f"cannot write the model to {out}: {os_error_text(err)}; "
                                "nothing was changed there") from None


def check_model_target(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """``path`` as a place a model can be saved to (checked before any training).

    Errors: a file, a non-empty directory that holds no model, a model without
    ``overwrite``, a place where nothing can be created.
    """
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ModelFormatError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not (out / CONFIG_FILE).exists():
            raise ModelFormatError(f"{out} is a non-empty directory that holds no model; "
                                   "choose an empty or new directory")
        if not overwrite:
            raise ModelFormatError(f"{out} already holds a model; pass overwrite=True to "
                                   "replace it")
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    try:  # the only sure test: create (and remove) something there
        os.rmdir(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
    except OSError as err:
        raise PyClamsInputError(f"cannot write the model to {out}: {os_error_text(err)} in "
                                f"{parent}") from None
    return out


def _write_model_dir(out: Path, config: dict, tensors: dict[str, np.ndarray],
                     names: dict[str, list[str]] | None) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        arrays = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
        meta = {k: json.dumps(list(v)) for k, v in (names or {}).items()}
        save_file(arrays, str(tmp / WEIGHTS_FILE), metadata=meta or None)
        cfg = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **config,
               "weights_sha256": _sha256(tmp / WEIGHTS_FILE)}
        (tmp / CONFIG_FILE).write_text(json.dumps(strict_json(cfg), indent=1, allow_nan=False))
        for f in (WEIGHTS_FILE, CONFIG_FILE):
            os.chmod(tmp / f, umask_mode())
        os.chmod(tmp, umask_mode(0o777))
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / "model")
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def read_model_dir(path: str | os.PathLike
                   ) -> tuple[dict, dict[str, np.ndarray], dict[str, list[str]]]:
    """Read and verify a model directory; return ``(config, tensors, names)``: ``names`` are
    the name lists stored with the weights (``classes``, ``genes``; empty for older files)."""
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
    if isinstance(version, bool) or not isinstance(version, int):
        raise ModelFormatError(f"{cfg_path}: format_version must be an integer, not "
                               f"{version!r}")
    if version > FORMAT_VERSION:
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
        with safe_open(str(w_path), framework="np") as fh:
            meta = fh.metadata() or {}
    except Exception as err:  # safetensors raises its own error types
        raise ModelFormatError(f"{w_path} cannot be read as safetensors: {err}") from None
    names = {k[len("names."):]: [str(v) for v in json.loads(value)]
             for k, value in meta.items() if k.startswith("names.")}
    return cfg, tensors, names


# ---------------------------------------------------------------------------- a CLAMS model
# ``model`` below is a :class:`pyclams.CLAMS` (a higher layer: not imported here)
def model_config(model: Any) -> dict:
    """Everything of a fitted model that goes into ``config.json`` (see the module docs)."""
    space = model.space
    return {
        "pyclams_version": __version__, "model_id": model.model_id, "preset": model.preset,
        "classes": [{"name": c, "n_cells": model.class_counts[c]} for c in model.classes],
        "preprocess": {**space.to_config(), "n_top_genes": model.n_top_genes},
        "network": model.net.config,
        "training": {"train": model.train_config.to_dict(), "sgld": model.sgld_config.to_dict(),
                     "generative": model.gen_config.to_dict(), **model.fit_params},
        "calibration": model.calibrator.to_config(),
        "metrics": model.metrics_, "history": model.history_.to_dict(),
        "integration": space.integration_config(),
    }


def model_tensors(model: Any) -> dict[str, np.ndarray]:
    """Every array of a fitted model, by its name in ``model.safetensors``."""
    t = {f"net.{k}": v.detach().cpu().numpy() for k, v in model.net.state_dict().items()}
    t.update(model.space.tensors())
    t.update(model.calibrator.tensors())
    t["sampling.class_means"] = model.class_means
    return t


def save_model(model: Any, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write a fitted model to the directory ``path``."""
    names = {"names.classes": list(model.classes),
             "names.genes": list(model.space.preprocessor.genes)}
    return write_model_dir(path, model_config(model), model_tensors(model),
                           overwrite=overwrite, names=names)


def check_consistency(path: str | os.PathLike, cfg: dict, tensors: dict[str, np.ndarray],
                      names: dict[str, list[str]]) -> None:
    """The parts of a model directory agree: classes with the network's outputs, genes with
    its inputs and the scaling vectors, a positive temperature, unique names."""
    where = Path(path) / CONFIG_FILE
    classes = [c.get("name") if isinstance(c, dict) else None for c in cfg["classes"]]
    if not classes or not all(isinstance(c, str) for c in classes):
        raise ModelFormatError(f"{where}: 'classes' must be a list of {{name, n_cells}}")
    if len(set(classes)) != len(classes):
        raise ModelFormatError(f"{where}: class names are not unique")
    net = cfg["network"]
    if net.get("n_classes") != len(classes):
        raise ModelFormatError(f"{where}: {len(classes)} classes but the network has "
                               f"{net.get('n_classes')} outputs")
    head = tensors.get("net.head.weight")
    if head is None or head.shape[0] != len(classes):
        raise ModelFormatError(f"{where}: the classes do not match the weights' output layer")
    genes = cfg["preprocess"].get("genes") or []
    if len(set(genes)) != len(genes):
        raise ModelFormatError(f"{where}: gene names are not unique")
    _check_order(where, "classes", classes, names.get("classes"))
    _check_order(where, "genes", genes, names.get("genes"))
    for key in ("preprocess.mean", "preprocess.sd"):
        if key not in tensors or tensors[key].shape != (len(genes),):
            raise ModelFormatError(f"{where}: {len(genes)} genes but {key} does not have one "
                                   "value per gene")
    if not cfg.get("integration") and net.get("n_input") != len(genes):
        raise ModelFormatError(f"{where}: {len(genes)} genes but the network has "
                               f"{net.get('n_input')} inputs")
    t = cfg["calibration"].get("temperature")
    if isinstance(t, bool) or not isinstance(t, int | float) or not (math.isfinite(t) and t > 0):
        raise ModelFormatError(f"{where}: calibration temperature must be a positive number, "
                               f"not {t!r}")
    pred = tensors.get("calibration.predicted")
    if pred is not None and pred.size and (pred.min() < 0 or pred.max() >= len(classes)):
        raise ModelFormatError(f"{where}: calibration classes out of range")
    nbrs, scores = tensors.get("calibration.neighbours"), tensors.get("calibration.scores")
    if nbrs is not None and scores is not None and (
            nbrs.ndim != 2 or nbrs.shape[0] != scores.size
            or (nbrs.size and (nbrs.min() < 0 or nbrs.max() >= scores.size))):
        raise ModelFormatError(f"{where}: calibration neighbourhoods do not match the "
                               "held-out cells")


def _check_order(where: Path, what: str, names: list[str], stored: list[str] | None) -> None:
    """``names`` (from config.json) against the order stored with the weights: the same names
    in another order would silently swap labels or genes. Renaming (other names, same count)
    is a legitimate edit."""
    if stored is None:  # written before pyclams 0.1.0 stored names with the weights
        return
    if len(stored) != len(names):
        raise ModelFormatError(f"{where}: {len(names)} {what} but the weights were trained "
                               f"with {len(stored)}")
    if names != stored and sorted(names) == sorted(stored):
        raise ModelFormatError(f"{where}: the {what} are in another order than the weights "
                               "were trained with; restore the original order")


def load_model(cls: type, path: str | os.PathLike, *, device: torch.device) -> Any:
    """A ``cls`` (:class:`~pyclams.CLAMS`) from the model directory ``path``."""
    cfg, t, names = read_model_dir(path)
    try:
        check_consistency(path, cfg, t, names)
        train = cfg["training"]
        # presets of the paper's comparison (benchmarks/) load as what they are at inference
        preset = cfg["preset"] if cfg["preset"] in PRESETS else "classifier"
        model = cls(preset=preset, n_top_genes=cfg["preprocess"]["n_top_genes"],
                    train=train["train"], sgld=train["sgld"],
                    generative=GenerativeLossConfig.from_dict(train["generative"]))
        model.preset = str(cfg["preset"])
        model.net = network_from_config(cfg["network"])
        state = {k[4:]: torch.from_numpy(v.copy()) for k, v in t.items() if k.startswith("net.")}
        model.net.load_state_dict(state, strict=True)
        model.space = space_from_config(cfg["preprocess"], cfg.get("integration"), t)
        model.classes = [c["name"] for c in cfg["classes"]]
        model.class_counts = {c["name"]: int(c["n_cells"]) for c in cfg["classes"]}
        model.calibrator = Calibrator.from_config(cfg["calibration"], t)
        model.class_means = t["sampling.class_means"]
        model.metrics_ = cfg.get("metrics") or {}
        model.history_ = History.from_dict(cfg.get("history") or {})
        model.fit_params = {k: v for k, v in train.items()
                            if k not in ("train", "sgld", "generative")}
    except ModelFormatError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise ModelFormatError(f"{path} is not a consistent pyclams model: {err}") from None
    model.device = device
    model.path_ = str(Path(path).resolve())
    model.net.to(device).eval()
    return model
