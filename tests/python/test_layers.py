"""The house's layers: no module of pyclams imports from a layer above its own.

From the bottom: shared helpers; data in; networks; the energy-based parts; calibration and
OOD calls, and the training loop; the result schema; model files; the user class; the
entry points (CLI, R bridge, demo, plots, file-to-file annotation, the top-level API).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "pyclams"

LAYERS = [
    {"errors", "_logging", "_version", "_settings", "_progress", "_config", "_files", "_h5ad_read",
     "_threads", "metrics"},
    {"data", "simulate"},
    {"nn"},
    {"ebm"},
    {"ood", "training"},
    {"result"},
    {"io"},
    {"model"},
    {"demo", "pl", "cli", "r_bridge", "h5ad_annotate", "__init__", "__main__"},
]


def _room(module: str) -> str:
    """``pyclams.data.space`` -> ``data``; ``pyclams`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _layer(room: str) -> int:
    if room.startswith("_r_"):  # modules of the R bridge
        return len(LAYERS) - 1
    for i, rooms in enumerate(LAYERS):
        if room in rooms:
            return i
    raise AssertionError(f"pyclams.{room} is in no layer: add it to LAYERS in {__file__}")


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, name: str | None = None) -> set[str]:
    """Every pyclams module that ``path`` (module ``name``) imports, also inside functions."""
    name = name or _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target == "pyclams" or target.startswith("pyclams."):
                for a in node.names:  # a submodule, or a name defined in ``target``
                    sub = f"{target}.{a.name}"
                    found.add(sub if _is_module(sub) else target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("pyclams"))
    return {t for t in found if _is_module(t)}


def _is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:]) if "." in name else Path()
    return name == "pyclams" or (PKG / rel).with_suffix(".py").exists() or (PKG / rel).is_dir()


def _modules() -> list[Path]:
    return sorted(PKG.rglob("*.py"))


def test_every_module_has_a_layer():
    for path in _modules():
        _layer(_room(_module_name(path)))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PKG)))
def test_no_import_from_a_higher_layer(path):
    mine = _room(_module_name(path))
    for target in _imports(path):
        theirs = _room(target)
        assert _layer(theirs) <= _layer(mine), (
            f"{_module_name(path)} (layer {_layer(mine)}) imports {target} "
            f"(layer {_layer(theirs)})")


def test_the_check_sees_a_violation(tmp_path):
    """The checker itself: a data module importing the user class is caught."""
    fake = tmp_path / "fake.py"
    fake.write_text("def f():\n    from ..model import CLAMS\n    from .loader import x\n")
    found = _imports(fake, "pyclams.data.fake")
    assert found == {"pyclams.model", "pyclams.data.loader"}
    assert _layer(_room("pyclams.model")) > _layer(_room("pyclams.data.fake"))
