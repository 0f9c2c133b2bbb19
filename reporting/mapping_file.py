"""The mapping file: the one module that writes, reads and validates it.

A mapping file (``<network>.json``, written by evaluate.py) holds one network's verified
mappings: per (t, threshold) the target of every layer, predicted, verified and test accuracy,
speedup, energy gain and the exact evaluations spent; the baselines side by side; the lifetime
schedule. Its format is ``reporting/schemas/mapping.schema.json`` (version 1). Reading validates
the whole document against the schema, so a value out of place (a mapping entry of 2, a
network given as a string) is an error naming where it is, never a traceback later.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from accuracy.oracle import MappingError
from common.io import atomic_write
from workloads.registry import NetworkSpec

SCHEMA_PATH = Path(__file__).parent / "schemas" / "mapping.schema.json"
SCHEMA_VERSION = 2


def _schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


def validate_document(document: Any, source: str = "mapping file") -> dict[str, Any]:
    """``document`` if it is a valid mapping file of this version, else a MappingError saying where not."""
    import jsonschema

    if not isinstance(document, dict) or document.get("schema_version") != SCHEMA_VERSION:
        raise MappingError(f"{source} is not a version-{SCHEMA_VERSION} mapping file (written by evaluate.py)")
    try:
        jsonschema.validate(document, _schema())
    except jsonschema.ValidationError as error:
        where = "/".join(str(part) for part in error.absolute_path) or "(top level)"
        raise MappingError(f"{source} is not a valid mapping file: at {where}: {error.message}") from None
    layers = len(document["network"]["layers"])
    for where, result in _results(document):
        targets = [1 if layer["target"] == "analog" else 0 for layer in result["layers"]]
        if len(result["mapping"]) != layers or targets != result["mapping"]:
            raise MappingError(f"{source} is not a valid mapping file: at {where}: the mapping has "
                               f"{len(result['mapping'])} entries for {layers} layers or disagrees with its layers' targets")
    return document


def _results(document: dict[str, Any]):
    for k, result in enumerate(document["results"]):
        yield f"results/{k}", result
    for k, result in enumerate(document["baselines"]):
        yield f"baselines/{k}", result
    for k, result in enumerate(document["lifetime"]["points"]):
        yield f"lifetime/points/{k}", result


def write_mapping_file(path: str | Path, document: dict[str, Any]) -> Path:
    """Validate ``document`` and write it atomically."""
    validate_document(document, "the document to write")
    return atomic_write(Path(path), json.dumps(document, indent=2) + "\n")


def read_mapping_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise MappingError(f"mapping file {path} does not exist")
    try:
        document = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise MappingError(f"mapping file {path} is not valid JSON: {error}") from error
    return validate_document(document, f"mapping file {path}")


def select(document: dict[str, Any], t_s: float | None = None, threshold: float | None = None) -> dict[str, Any]:
    """The result for (t_s, threshold), or the first one when not given."""
    results = document.get("results") or []
    for result in results:
        if (t_s is None or result["t_s"] == t_s) and (threshold is None or result["threshold"] == threshold):
            return result
    raise MappingError(f"no mapping for t_s={t_s}, threshold={threshold}; the file has "
                       f"{[(r['t_s'], r['threshold']) for r in results]}")


def mapping_of(result: dict[str, Any]) -> np.ndarray:
    """A result's mapping as booleans (True = analog); entries were validated as 0 or 1."""
    return np.array(result["mapping"], dtype=int) == 1


def check_same_network(document: dict[str, Any], spec: NetworkSpec, layer_names: list[str]) -> None:
    network = document["network"]
    if network["name"] != spec.name or network["layers"] != layer_names:
        raise MappingError(f"the mapping file is for network {network['name']!r} "
                           f"({len(network['layers'])} layers), not {spec.name!r} ({len(layer_names)} layers)")
    if network["checkpoint_sha256"] != spec.checkpoint_sha256():
        raise MappingError(f"the mapping file was made for another checkpoint of {spec.name!r}")
