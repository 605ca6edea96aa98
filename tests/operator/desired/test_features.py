"""``spec.features`` rendered for the workers: the ConfigMap in the workers' own format, mounted at
a fixed path; changing a flag changes that ConfigMap only, never a Pod template (no rollout)."""

from __future__ import annotations

import json
from typing import Any

from resonance_operator.api.spec import ResonanceCluster
from resonance_operator.desired import features, settings, worker
from resonance_worker.domain.features import FeatureContext, parse_feature_text

from tests.operator import fixtures

FLAGS: list[dict[str, Any]] = [
    {"name": "new-lobby", "rollout": 25},
    {
        "name": "lobby-test",
        "variants": [{"name": "control", "weight": 50}, {"name": "question", "weight": 50}],
        "targeting": {"tenants": ["acme"], "claims": {"plan": ["pro"]}},
        "gates": {"rpc": ["room.join"], "namespaces": ["beta"]},
        "outcomes": ["room.join"],
    },
]


def with_flags(flags: list[dict[str, Any]]) -> ResonanceCluster:
    return fixtures.cluster({**fixtures.with_worker(), "features": flags})


def test_the_configmap_holds_the_flags_in_the_workers_format() -> None:
    cluster = with_flags(FLAGS)
    body = features.configmap(cluster)
    assert body["metadata"]["name"] == "demo-features"
    loaded = parse_feature_text(body["data"]["features.json"])  # the worker's own parser accepts it
    assert [flag.name for flag in loaded.flags] == ["new-lobby", "lobby-test"]
    assert loaded.gated_rpc == {"room.join": ("lobby-test",)}
    assert loaded.evaluate(FeatureContext(user="u", tenant="acme", claims={"plan": "pro"}))["lobby-test"] in {
        "control",
        "question",
    }
    assert json.loads(features.configmap(with_flags([]))["data"]["features.json"]) == []


def test_changing_flags_changes_only_the_features_configmap_not_the_pods() -> None:
    before, after = with_flags(FLAGS), with_flags([{**FLAGS[0], "rollout": 75}, FLAGS[1]])
    assert features.configmap(before) != features.configmap(after)
    assert worker.deployment(before) == worker.deployment(after)
    assert worker.pod_template(before) == worker.pod_template(after)
    assert worker.revision(before) == worker.revision(after)
    assert settings.settings_configmap(before) == settings.settings_configmap(after)


def test_every_worker_pod_mounts_the_flags_where_the_setting_points() -> None:
    cluster = with_flags(FLAGS)
    template = worker.pod_template(cluster)
    container = template["spec"]["containers"][0]
    assert {"name": "features", "mountPath": "/etc/resonance/features", "readOnly": True} in container[
        "volumeMounts"
    ]
    assert {"name": "features", "configMap": {"name": "demo-features", "optional": True}} in template["spec"][
        "volumes"
    ]
    env = settings.worker_environment(cluster).plain
    assert env["RESONANCE_FEATURES_FILE"] == "/etc/resonance/features/features.json"
