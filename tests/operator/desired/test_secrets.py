from __future__ import annotations

import base64
from typing import Any

from resonance_operator.api.conditions import Reason
from resonance_operator.api.observed import Observed
from resonance_operator.desired import children, secrets, worker
from resonance_operator.status import compute

from tests.operator import fixtures

FRESH = children.FreshSecrets(jwt="j", neo4j_password="n", api_key="k")


def secret(name: str, key: str, value: str, *, version: str = "1") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "uid": f"uid-{name}", "resourceVersion": version},
        "data": {key: base64.b64encode(value.encode()).decode()},
    }


def user_jwt_cluster() -> Any:
    return fixtures.cluster(
        fixtures.with_worker() | {"auth": {"jwtSecretRef": {"name": "mine", "key": "jwt"}}}
    )


def test_generated_secrets_count_by_value_and_the_users_by_version() -> None:
    cluster = fixtures.cluster()
    generated = {"demo-jwt"}
    one = secrets.digest(cluster, {"demo-jwt": secret("demo-jwt", "secret", "a")}, generated)
    assert one == secrets.digest(
        cluster, {"demo-jwt": secret("demo-jwt", "secret", "a", version="9")}, generated
    )
    assert one != secrets.digest(cluster, {"demo-jwt": secret("demo-jwt", "secret", "b")}, generated)
    assert one != secrets.digest(cluster, {}, generated)  # absent is a state of its own

    mine = user_jwt_cluster()
    by_version = secrets.digest(mine, {"mine": secret("mine", "jwt", "weak")}, set())
    # The value never enters the hash (a weak password could be guessed back); any write rolls.
    assert by_version == secrets.digest(mine, {"mine": secret("mine", "jwt", "other")}, set())
    assert by_version != secrets.digest(mine, {"mine": secret("mine", "jwt", "weak", version="2")}, set())


def test_the_rolling_deployment_carries_the_digest_of_what_it_reads() -> None:
    cluster = fixtures.cluster()

    def template_hash(live: dict[str, Any]) -> str | None:
        desired = children.desired_children(
            cluster, service_monitor_crd=False, fresh=FRESH, live_secrets=live
        )
        deployment = next(c.body for c in desired if c.key.kind == "Deployment")
        annotations: dict[str, str] = deployment["spec"]["template"]["metadata"]["annotations"]
        return annotations.get(secrets.SECRETS_HASH_ANNOTATION)

    # Before the Secret exists the digest is of the value about to be created: no roll once it is.
    created = template_hash({})
    assert created == template_hash({"demo-jwt": secret("demo-jwt", "secret", "j")})
    assert created != template_hash({"demo-jwt": secret("demo-jwt", "secret", "rotated")})
    # Without the Secrets observed (older callers) the template has no digest at all.
    plain = children.desired_children(cluster, service_monitor_crd=False, fresh=FRESH)
    deployment = next(c.body for c in plain if c.key.kind == "Deployment")
    assert secrets.SECRETS_HASH_ANNOTATION not in deployment["spec"]["template"]["metadata"]["annotations"]


def test_a_deleted_generated_secret_in_use_is_withheld_until_asked_for() -> None:
    cluster = fixtures.cluster()
    desired = children.desired_children(cluster, service_monitor_crd=False, fresh=FRESH, live_secrets={})
    deployment = next(c.body for c in desired if c.key.kind == "Deployment")
    in_use = secrets.used_by([deployment, None])
    assert "demo-jwt" in in_use
    generated = children.generated_secrets(cluster, FRESH)
    assert secrets.withheld(generated, {}, in_use=in_use) == ["demo-jwt"]
    assert secrets.withheld(generated, {}, in_use=frozenset()) == []  # nothing reads it: created as ever
    assert secrets.withheld(generated, {}, in_use=in_use, regenerate={"demo-jwt"}) == []
    assert secrets.regenerate_requested({secrets.REGENERATE_ANNOTATION: " demo-jwt, x ,"}) == {
        "demo-jwt",
        "x",
    }

    held = children.desired_children(
        cluster,
        service_monitor_crd=False,
        fresh=FRESH,
        live_secrets={},
        withhold=["demo-jwt"],
        held_secrets_hash="kept",
    )
    assert "Secret/demo-jwt" not in {str(c.key) for c in held}
    kept = next(c.body for c in held if c.key.kind == "Deployment")
    assert kept["spec"]["template"]["metadata"]["annotations"][secrets.SECRETS_HASH_ANNOTATION] == "kept"


def test_a_withheld_secret_degrades_the_cluster_with_what_to_do() -> None:
    status = compute.compute(fixtures.cluster(), Observed(children={}), now="t", withheld=["demo-jwt"])
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", Reason.GENERATED_SECRET_MISSING)
    assert f"{secrets.REGENERATE_ANNOTATION}=demo-jwt" in degraded["message"]


def test_the_digest_is_part_of_the_canary_revision() -> None:
    cluster = fixtures.cluster(fixtures.with_worker() | {"rollout": {"strategy": "canary"}})
    assert worker.revision(cluster, secrets_hash="a") != worker.revision(cluster, secrets_hash="b")
    assert worker.revision(cluster) == worker.revision(cluster, secrets_hash=None)
