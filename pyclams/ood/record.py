"""What the type and OOD calls record in ``uns``, keyed by type name, and what they tell the user.

:func:`.labels.cell_labels` and :meth:`.calibrator.Calibrator.flag` report per-type facts by
class index; :func:`name_records` turns them into what ``uns[key]`` stores (lists in the order
of ``classes``: type names may hold "/", which h5ad would read back as nested keys; type names
where a list of types is reported) and logs what it says about predicted types.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._logging import logger

#: what a per-type record holds for a type no query cell was predicted as
NO_MAP = {"shift": np.nan, "scale": np.nan, "n_query": 0, "n_reference": 0, "source": "",
          "displacement": np.nan, "suspect": False, "known_mode": 0}


def per_class_lists(maps: dict[int, dict[str, Any]], n_classes: int) -> dict[str, list]:
    """``{class index: {field: value}}`` as ``{field: [value of class 0, 1, ...]}``."""
    fields = next(iter(maps.values())).keys() if maps else NO_MAP.keys()
    return {f: [maps.get(c, NO_MAP).get(f, NO_MAP.get(f)) for c in range(n_classes)]
            for f in fields}


def name_records(calls: dict[str, Any], label_info: dict[str, Any],
                 classes: list[str]) -> None:
    """Rewrite ``calls`` and ``label_info`` in place for ``uns`` (see the module) and log which
    predicted types were calibrated on a small known group or look suspect."""
    if "class_maps" in calls:
        calls["class_maps"] = per_class_lists(calls["class_maps"], len(classes))
    if "graph_purity" in label_info:
        purity = label_info["graph_purity"]
        label_info["graph_purity"] = [float(purity.get(c, np.nan)) for c in range(len(classes))]
    if "graph_absorbing" in label_info:
        label_info["graph_absorbing"] = [classes[c] for c in label_info["graph_absorbing"]]
        if label_info["graph_absorbing"]:
            logger.info("the query's neighbourhood graph does not keep predicted type(s) %s "
                        "apart from a type it mixes in: their cells keep their own type, with "
                        "their type's p(y|x) averaged over the neighbourhood as confidence "
                        "(uns[key]['graph_absorbing'])", label_info["graph_absorbing"])
    if calls.get("known_mode_classes"):
        calls["known_mode_classes"] = [classes[c] for c in calls["known_mode_classes"]]
        logger.info("predicted type(s) %s split into a small group scoring like known cells "
                    "and a larger group far below it: each was calibrated on its small "
                    "group, so that the larger one can be flagged as a type the reference "
                    "lacks (uns[key]['class_maps']['known_mode'])",
                    calls["known_mode_classes"])
    if calls.get("suspect_classes"):
        calls["suspect_classes"] = [classes[c] for c in calls["suspect_classes"]]
        logger.warning(
            "predicted type(s) %s score far lower, relative to their reference cells, than "
            "the other types: they may be made up mostly of a type the reference lacks, "
            "which the query-aware call cannot flag. Inspect them (uns[key]['class_maps']; "
            "calibration='class' judges them against the reference alone)",
            calls["suspect_classes"])
