from __future__ import annotations

from resonance_operator.desired import meta

from tests.operator import fixtures


def test_labels_and_owner_reference() -> None:
    cluster = fixtures.cluster()
    labels = meta.labels(cluster, meta.WORKER)
    assert labels["app.kubernetes.io/managed-by"] == "resonance-operator"
    assert meta.selector_labels(cluster, meta.WORKER).items() <= labels.items()
    assert meta.selector_string(cluster, meta.WORKER) == (
        "app.kubernetes.io/component=worker,resonance.liminal.dev/cluster=demo"
    )
    owner = meta.owner_reference(cluster)
    assert owner == {
        "apiVersion": "resonance.liminal.dev/v1alpha1",
        "kind": "ResonanceCluster",
        "name": "demo",
        "uid": "uid-1234",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert meta.metadata(cluster, "x", meta.REDIS, {"a": "b"})["annotations"] == {"a": "b"}
    assert "annotations" not in meta.metadata(cluster, "x", meta.REDIS)


def test_spec_hash_is_stable_and_changes_with_content() -> None:
    first = meta.with_spec_hash({"kind": "X", "spec": {"a": 1, "b": 2}})
    same = meta.with_spec_hash({"spec": {"b": 2, "a": 1}, "kind": "X"})
    other = meta.with_spec_hash({"kind": "X", "spec": {"a": 1, "b": 3}})
    assert meta.spec_hash(first) == meta.spec_hash(same) != meta.spec_hash(other)
    assert meta.spec_hash(None) is None
    assert meta.spec_hash({"metadata": {}}) is None


def test_int_or_string() -> None:
    assert meta.int_or_string("3") == 3
    assert meta.int_or_string("25%") == "25%"
    assert meta.int_or_string(1) == 1


def test_is_subset_tolerates_server_additions_only() -> None:
    desired = {"spec": {"replicas": 2, "ports": [{"port": 80}], "resources": {"cpu": "0.5"}}}
    live = {
        "spec": {
            "replicas": 2,
            "ports": [{"port": 80, "protocol": "TCP"}],
            "resources": {"cpu": "500m"},
            "x": 1,
        }
    }
    assert meta.is_subset(desired, live)
    assert not meta.is_subset({"spec": {"replicas": 3}}, live)
    assert not meta.is_subset({"spec": {"ports": [{"port": 80}, {"port": 81}]}}, live)
    assert not meta.is_subset({"spec": {"ports": [{"port": 80}]}}, {"spec": {"ports": "80"}})
    assert not meta.is_subset({"spec": {"a": 1}}, {"spec": 5})
    assert not meta.is_subset({"missing": 1}, live)


def test_needs_apply() -> None:
    desired = meta.with_spec_hash(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}}
    )
    live = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "annotations": dict(desired["metadata"]["annotations"]), "uid": "u"},
        "data": {"a": "1"},
    }
    assert not meta.needs_apply(desired, live)
    assert meta.needs_apply(desired, None)
    edited = {**live, "data": {"a": "2"}}
    assert meta.needs_apply(desired, edited)  # a hand edit with the hash left in place
    stale = {**live, "metadata": {"name": "c", "annotations": {meta.SPEC_HASH_ANNOTATION: "old"}}}
    assert meta.needs_apply(desired, stale)
