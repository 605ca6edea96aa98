"""e2e fixtures: a cluster reached only through ``KUBECONFIG``.

``make test`` starts the harness's control plane and sets ``KUBECONFIG`` and
``RESONANCE_REQUIRE_K8S=1``; then a missing cluster is an error, not a skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from e2e.kube import kubectl, unique_name


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.path):
            item.add_marker(pytest.mark.k8s)


@pytest.fixture(scope="session")
def kubeconfig() -> str:
    path = os.environ.get("KUBECONFIG", "")
    if not path or not os.path.exists(path):
        if os.environ.get("RESONANCE_REQUIRE_K8S") == "1":
            pytest.fail("KUBECONFIG is not set or missing, but RESONANCE_REQUIRE_K8S=1")
        pytest.skip("no cluster: set KUBECONFIG (or run `make cluster-up`)")
    return path


@pytest.fixture
def namespace(kubeconfig: str) -> Iterator[str]:
    """A throwaway namespace, deleted after the test."""
    name = unique_name("e2e")
    kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        kubectl("delete", "namespace", name, "--wait=false", check=False)
