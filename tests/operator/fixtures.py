"""Shared builders of ResonanceCluster bodies for the operator's unit tests."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from resonance_operator.api.spec import ResonanceCluster, parse

REPO = Path(__file__).resolve().parents[2]
CRD_PATH = REPO / "crds" / "resonance.liminal.dev_resonanceclusters.yaml"


def crd() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CRD_PATH.read_text())
    return loaded


def spec_schema() -> dict[str, Any]:
    schema: dict[str, Any] = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schema


def apply_schema_defaults(value: Any, schema: dict[str, Any]) -> Any:
    """Structural defaulting as the API server does it: fill absent fields with ``default``, recursively."""
    if isinstance(value, dict) and schema.get("type") == "object":
        out = dict(value)
        for name, sub in schema.get("properties", {}).items():
            if name not in out and "default" in sub:
                out[name] = copy.deepcopy(sub["default"])
            if name in out:
                out[name] = apply_schema_defaults(out[name], sub)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for name in out:
                if name not in schema.get("properties", {}):
                    out[name] = apply_schema_defaults(out[name], extra)
        return out
    if isinstance(value, list) and "items" in schema:
        return [apply_schema_defaults(item, schema["items"]) for item in value]
    return value


def body(
    spec: dict[str, Any] | None = None, *, name: str = "demo", namespace: str = "team-a", **extra: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "resonance.liminal.dev/v1alpha1",
        "kind": "ResonanceCluster",
        "metadata": {"name": name, "namespace": namespace, "uid": "uid-1234", "generation": 3},
        "spec": spec if spec is not None else {"worker": {"image": "registry.example/resonance-worker:1.0"}},
        **extra,
    }


def cluster(spec: dict[str, Any] | None = None, **kwargs: Any) -> ResonanceCluster:
    return parse(body(spec, **kwargs))


def with_worker(**worker: Any) -> dict[str, Any]:
    return {"worker": {"image": "registry.example/resonance-worker:1.0", **worker}}
