"""Issue 18's children: a Sentinel-managed Redis (replicas, password, maxmemory, PDB, anti-affinity),
the workers' Redis settings, and the backup CronJob (pure builders; the real control plane creates
them in e2e/operator/test_data_protection.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from resonance_operator.api import cron, validation
from resonance_operator.api.observed import ChildKey, Observed
from resonance_operator.desired import backup, children, datastores, settings
from resonance_operator.status import compute

from tests.operator import fixtures

FRESH = children.FreshSecrets(jwt="j", neo4j_password="n", redis_password="r")
HA = {"replicas": 3, "sentinel": {"enabled": True}, "password": {"generate": True}, "maxmemory": "512mb"}
S3 = {"s3": {"endpoint": "http://minio:9000", "bucket": "b", "credentialsSecretRef": "creds"}}


def _cluster(**spec: Any) -> Any:
    return fixtures.cluster({**fixtures.with_worker(), **spec})


def test_a_single_redis_stays_as_it_was() -> None:
    body = datastores.redis_stateful_set(_cluster())
    assert body is not None
    container = body["spec"]["template"]["spec"]["containers"][0]
    assert body["spec"]["replicas"] == 1 and container["args"][0] == "redis-server"
    assert "command" not in container and "affinity" not in body["spec"]["template"]["spec"]
    assert datastores.redis_sentinel_service(_cluster()) is None
    assert datastores.redis_pod_disruption_budget(_cluster()) is None
    assert "RESONANCE_REDIS_MODE" not in settings.worker_environment(_cluster()).plain


def test_a_sentinel_managed_redis() -> None:
    cluster = _cluster(redis={"managed": HA, "durability": "replica"})
    body = datastores.redis_stateful_set(cluster)
    assert body is not None and body["spec"]["replicas"] == 3
    pod = body["spec"]["template"]["spec"]
    redis, sentinel = pod["containers"]
    script = redis["command"][2]
    assert "--maxmemory 512mb --maxmemory-policy noeviction" in script
    assert '--requirepass "$REDIS_PASSWORD"' in script and "demo-redis-0.demo-redis.team-a.svc" in script
    assert "sentinel get-master-addr-by-name resonance" in script
    assert redis["env"][0]["valueFrom"]["secretKeyRef"] == {"name": "demo-redis-auth", "key": "password"}
    assert "sentinel monitor resonance $PRIMARY 6379 2" in sentinel["command"][2]
    assert "auth-pass" in sentinel["command"][2]
    assert pod["affinity"]["podAntiAffinity"]
    assert datastores.redis_pod_disruption_budget(cluster)["spec"]["maxUnavailable"] == 1  # type: ignore[index]
    service = datastores.redis_sentinel_service(cluster)
    assert service is not None and service["metadata"]["name"] == "demo-redis-sentinel"
    environment = settings.worker_environment(cluster)
    assert environment.plain["RESONANCE_REDIS_MODE"] == "sentinel"
    assert json.loads(environment.plain["RESONANCE_REDIS_SENTINELS"]) == [
        "demo-redis-sentinel.team-a.svc:26379"
    ]
    assert environment.plain["RESONANCE_REDIS_DURABILITY"] == "replica"
    assert environment.from_secrets["RESONANCE_REDIS_PASSWORD"].name == "demo-redis-auth"
    secrets = [
        c for c in children.desired_children(cluster, service_monitor_crd=False, fresh=FRESH) if c.create_only
    ]
    assert any(c.body["metadata"]["name"] == "demo-redis-auth" for c in secrets)
    policy = datastores.network_policy(cluster)
    assert policy is not None and len(policy["spec"]["ingress"][0]["from"]) == 2  # workers and Redis pods


def test_an_external_sentinel() -> None:
    cluster = _cluster(
        redis={"external": {"url": "redis://:pw@ignored:6379/0", "sentinel": {"addresses": ["s1:26379"]}}}
    )
    plain = settings.worker_environment(cluster).plain
    assert plain["RESONANCE_REDIS_MODE"] == "sentinel" and json.loads(plain["RESONANCE_REDIS_SENTINELS"]) == [
        "s1:26379"
    ]


def test_an_external_redis_cluster() -> None:
    cluster = _cluster(
        redis={"external": {"url": "redis://:pw@ignored:6379/0", "cluster": {"nodes": ["r1:7000"]}}}
    )
    plain = settings.worker_environment(cluster).plain
    assert plain["RESONANCE_REDIS_MODE"] == "cluster"
    assert json.loads(plain["RESONANCE_REDIS_CLUSTER_NODES"]) == ["r1:7000"]
    assert "RESONANCE_REDIS_SENTINELS" not in plain
    assert validation.semantic_errors(cluster, {}) == []


@pytest.mark.parametrize(
    ("redis", "backup_spec", "message"),
    [
        ({"managed": {"replicas": 2}}, None, "needs sentinel.enabled"),
        ({"managed": {"replicas": 2, "sentinel": {"enabled": True}}}, None, "needs replicas of 3"),
        ({"managed": {"replicas": 3, "sentinel": {"enabled": True, "quorum": 4}}}, None, "quorum"),
        ({"managed": {}, "durability": "replica"}, None, "replica needs"),
        (
            {
                "external": {
                    "url": "redis://x:1",
                    "cluster": {"nodes": []},
                    "sentinel": {"addresses": ["s:1"]},
                }
            },
            None,
            "sentinel or cluster, not both",
        ),
        (
            {"external": {"url": "redis://x:1", "cluster": {"nodes": ["a:1"]}}},
            {"destination": S3},
            "not backed up",
        ),
        ({"managed": {}}, {"destination": {}}, "exactly one of pvc or s3"),
        ({"managed": {}}, {"schedule": "61 * * * *", "destination": S3}, "spec.backup.schedule: minute"),
    ],
)
def test_bad_redis_and_backup_specs_are_named(
    redis: dict[str, Any], backup_spec: dict[str, Any] | None, message: str
) -> None:
    spec: dict[str, Any] = {"redis": redis}
    if backup_spec is not None:
        spec["backup"] = backup_spec
    errors = validation.semantic_errors(_cluster(**spec), {})
    assert any(message in e for e in errors), errors


def test_the_backup_cron_job() -> None:
    assert backup.cron_job(_cluster()) is None
    cluster = _cluster(
        redis={"managed": HA}, backup={"schedule": "@daily", "retention": "14d", "destination": S3}
    )
    body = backup.cron_job(cluster)
    assert body is not None and body["spec"]["concurrencyPolicy"] == "Forbid"
    assert body["spec"]["timeZone"] == "Etc/UTC"
    container = body["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["RESONANCE_BACKUP_DESTINATION"]["value"] == "s3"
    assert env["RESONANCE_BACKUP_PREFIX"]["value"] == "team-a/demo"
    assert env["RESONANCE_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "demo-redis-auth"
    assert container["envFrom"] == [
        {"configMapRef": {"name": "demo-worker-settings"}},
        {"secretRef": {"name": "creds"}},
    ]
    on_pvc = backup.cron_job(_cluster(backup={"destination": {"pvc": {"claimName": "keep"}}}))
    assert on_pvc is not None
    volumes = on_pvc["spec"]["jobTemplate"]["spec"]["template"]["spec"]["volumes"]
    assert {"name": "destination", "persistentVolumeClaim": {"claimName": "keep"}} in volumes


def _status(cron_status: dict[str, Any]) -> dict[str, Any]:
    cluster = _cluster(backup={"schedule": "0 3 * * *", "destination": S3})
    key = ChildKey("batch/v1", "CronJob", "demo-backup")
    observed = Observed(children={key: {"status": cron_status}})
    return compute.compute(cluster, observed, now="2026-12-06T01:00:00Z")


def test_status_backup_and_its_condition() -> None:
    none_yet = _status({})
    assert none_yet["backup"] == {"schedule": "0 3 * * *", "active": 0, "next": "2026-12-06T03:00:00Z"}
    by_type = {c["type"]: c for c in none_yet["conditions"]}
    assert by_type["BackupSucceeded"]["reason"] == "NoBackupYet"
    ok = _status({"lastScheduleTime": "2026-12-05T03:00:00Z", "lastSuccessfulTime": "2026-12-05T03:01:10Z"})
    assert ok["backup"]["lastSuccess"] == "2026-12-05T03:01:10Z" and "lastFailure" not in ok["backup"]
    assert {c["type"]: c["status"] for c in ok["conditions"]}["BackupSucceeded"] == "True"
    failed = _status(
        {"lastScheduleTime": "2026-12-06T00:00:00Z", "lastSuccessfulTime": "2026-12-05T03:01:10Z"}
    )
    assert failed["backup"]["lastFailure"] == "2026-12-06T00:00:00Z"
    assert {c["type"]: c["reason"] for c in failed["conditions"]}["BackupSucceeded"] == "LastBackupFailed"
    running = _status({"lastScheduleTime": "2026-12-06T00:00:00Z", "active": [{"name": "j"}]})
    assert "lastFailure" not in running["backup"] and running["backup"]["active"] == 1
    assert "backup" not in compute.compute(_cluster(), Observed(), now="2026-12-06T01:00:00Z")


@pytest.mark.parametrize(
    ("schedule", "after", "expected"),
    [
        ("*/15 * * * *", datetime(2026, 12, 6, 1, 53), datetime(2026, 12, 6, 2, 0)),
        ("0 3 * * 1-5", datetime(2026, 12, 5, 4, 0), datetime(2026, 12, 7, 3, 0)),  # Saturday → Monday
        ("@monthly", datetime(2026, 12, 6), datetime(2027, 1, 1)),
        ("0 0 13 * 5", datetime(2026, 12, 6), datetime(2026, 12, 11)),  # the 13th or a Friday (Vixie)
    ],
)
def test_cron_next_run(schedule: str, after: datetime, expected: datetime) -> None:
    parsed = cron.Schedule.parse(schedule)
    assert parsed.next_after(after.replace(tzinfo=UTC)) == expected.replace(tzinfo=UTC)


def test_cron_refuses_what_never_runs_or_does_not_parse() -> None:
    with pytest.raises(cron.CronError, match="never runs"):
        cron.Schedule.parse("0 0 30 2 *").next_after(datetime(2026, 1, 1, tzinfo=UTC))
    for bad in ("* * * *", "60 * * * *", "a * * * *", "*/0 * * * *"):
        with pytest.raises(cron.CronError):
            cron.Schedule.parse(bad)
