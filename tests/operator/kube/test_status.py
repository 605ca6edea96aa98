"""The status write: only when changed, over the version it was computed against, again after a 409."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from resonance_operator.api.spec import ResonanceCluster, parse
from resonance_operator.errors import ConflictError
from resonance_operator.kube.status import ATTEMPTS, write_status

from tests.operator import fixtures

PATH = "/apis/resonance.liminal.dev/v1alpha1/namespaces/team-a/resonanceclusters/demo"


class Kube:
    """Refuses the first ``conflicts`` status patches with 409; ``fresh`` is what a GET reads then."""

    def __init__(self, conflicts: int = 0, fresh: list[dict[str, Any] | None] | None = None) -> None:
        self.conflicts = conflicts
        self.fresh = list(fresh or [])
        self.patches: list[tuple[Mapping[str, Any], str | None]] = []
        self.gets = 0

    async def patch_status(
        self, path: str, status: Mapping[str, Any], *, resource_version: str | None = None
    ) -> None:
        assert path == PATH
        self.patches.append((status, resource_version))
        if len(self.patches) <= self.conflicts:
            raise ConflictError(409, "PATCH", path, "the object has been modified")

    async def get(self, path: str) -> dict[str, Any] | None:
        assert path == PATH
        self.gets += 1
        return self.fresh.pop(0)


def cluster(status: dict[str, Any]) -> ResonanceCluster:
    body = fixtures.body(status=status)
    body["metadata"]["resourceVersion"] = "41"
    return parse(body)


def render(previous: Mapping[str, Any]) -> dict[str, Any]:
    """The new status depends on the one it replaces, as conditions' lastTransitionTime does."""
    return {"workers": "2/2", "replaced": previous.get("workers")}


async def test_an_unchanged_status_is_not_written() -> None:
    kube = Kube()
    done = await write_status(kube, cluster({"workers": "2/2", "replaced": "2/2"}), render)
    assert not done.written and kube.patches == [] and kube.gets == 0
    assert done.status == {"workers": "2/2", "replaced": "2/2"}


async def test_a_changed_status_is_written_over_the_version_it_was_computed_from() -> None:
    kube = Kube()
    done = await write_status(kube, cluster({"workers": "1/2"}), render)
    assert done.written and done.previous == {"workers": "1/2"}
    assert kube.patches == [({"workers": "2/2", "replaced": "1/2"}, "41")] and kube.gets == 0


async def test_a_conflict_reads_the_cluster_again_and_renders_against_what_is_there() -> None:
    fresh = {"metadata": {"resourceVersion": "42"}, "status": {"workers": "0/2"}}
    kube = Kube(conflicts=1, fresh=[fresh])
    done = await write_status(kube, cluster({"workers": "1/2"}), render)
    assert done.written and done.previous == {"workers": "0/2"}
    assert kube.patches == [
        ({"workers": "2/2", "replaced": "1/2"}, "41"),
        ({"workers": "2/2", "replaced": "0/2"}, "42"),
    ]
    # Someone else already wrote what we would: nothing left to write.
    same = {"metadata": {"resourceVersion": "43"}, "status": {"workers": "2/2", "replaced": "2/2"}}
    kube = Kube(conflicts=1, fresh=[same])
    done = await write_status(kube, cluster({"workers": "1/2"}), render)
    assert not done.written and len(kube.patches) == 1 and kube.gets == 1


async def test_a_cluster_deleted_meanwhile_gets_no_status_and_endless_conflicts_raise() -> None:
    kube = Kube(conflicts=1, fresh=[None])
    done = await write_status(kube, cluster({}), render)
    assert not done.written and kube.gets == 1
    busy = {"metadata": {"resourceVersion": "50"}, "status": {}}
    kube = Kube(conflicts=ATTEMPTS, fresh=[busy] * ATTEMPTS)
    with pytest.raises(ConflictError):
        await write_status(kube, cluster({}), render)
    assert len(kube.patches) == ATTEMPTS and kube.gets == ATTEMPTS - 1


async def test_a_body_without_a_resource_version_is_written_without_a_lock() -> None:
    kube = Kube()
    await write_status(kube, fixtures.cluster(), render)
    assert kube.patches == [({"workers": "2/2", "replaced": None}, None)]
