"""Issue 18 on the real control plane: a ResonanceCluster asking for a Sentinel-managed Redis with a
generated password, replica durability and a backup schedule to S3 becomes those children, and the
backup CronJob's runs reach ``status.backup`` and the ``BackupSucceeded`` condition.

kwok runs no containers: the real CronJob and Job controllers create a Job every minute and kwok's
``pod-complete`` stage completes its pod, so what is proven here is the operator's side (children,
settings, status); what the backup Job's command does, and the restore, are proven on real processes
in tests/worker/transport/test_backup_restore.py, failover in
tests/worker/transport/test_sentinel_failover.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from e2e.kube import apply, kubectl, kubectl_json, wait_until
from e2e.operator.conftest import RunningOperator, condition, get_cluster, resonance_cluster, wait_ready

pytestmark = pytest.mark.k8s

NAME = "guarded"


def _cluster() -> dict[str, Any]:
    s3 = {"endpoint": "http://s3.storage:9000", "bucket": "backups", "credentialsSecretRef": "backup-s3"}
    return resonance_cluster(
        NAME,
        {
            "worker": {"image": "ghcr.io/liminal/resonance-worker:0.1.0", "replicas": 1},
            "redis": {
                "managed": {
                    "replicas": 3,
                    "persistence": {"enabled": False},
                    "sentinel": {"enabled": True, "quorum": 2},
                    "password": {"generate": True},
                    "maxmemory": "256mb",
                },
                "durability": "replica",
            },
            "backup": {"schedule": "* * * * *", "retention": "3d", "destination": {"s3": s3}},
        },
    )


def test_sentinel_managed_redis_and_a_backup_schedule_from_a_cr(
    operator: RunningOperator, namespace: str
) -> None:
    kubectl(
        "create", "secret", "generic", "backup-s3", "-n", namespace,
        "--from-literal=AWS_ACCESS_KEY_ID=key", "--from-literal=AWS_SECRET_ACCESS_KEY=secret",
    )  # fmt: skip
    apply(_cluster(), namespace=namespace)
    body = wait_ready(NAME, namespace, timeout=180)
    assert body["status"]["components"]["redis"] == {"mode": "managed", "ready": True}

    redis = kubectl_json("get", "statefulset", f"{NAME}-redis", "-n", namespace)
    assert redis["spec"]["replicas"] == 3 and redis["status"]["readyReplicas"] == 3
    pod = redis["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["redis", "sentinel"]
    start = pod["containers"][0]["command"][2]
    assert "--maxmemory 256mb --maxmemory-policy noeviction" in start and "--replicaof" in start
    assert "sentinel monitor resonance $PRIMARY 6379 2" in pod["containers"][1]["command"][2]
    anti = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    assert anti["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    pdb = kubectl_json("get", "pdb", f"{NAME}-redis", "-n", namespace)
    assert pdb["spec"]["maxUnavailable"] == 1
    sentinel = kubectl_json("get", "service", f"{NAME}-redis-sentinel", "-n", namespace)
    assert sentinel["spec"]["ports"][0]["port"] == 26379
    secret = kubectl_json("get", "secret", f"{NAME}-redis-auth", "-n", namespace)
    assert secret["data"]["password"]

    settings = kubectl_json("get", "configmap", f"{NAME}-worker-settings", "-n", namespace)["data"]
    assert settings["RESONANCE_REDIS_MODE"] == "sentinel"
    assert json.loads(settings["RESONANCE_REDIS_SENTINELS"]) == [
        f"{NAME}-redis-sentinel.{namespace}.svc:26379"
    ]
    assert settings["RESONANCE_REDIS_DURABILITY"] == "replica"
    worker = kubectl_json("get", "deployment", f"{NAME}-worker", "-n", namespace)
    env = {e["name"]: e for e in worker["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["RESONANCE_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": f"{NAME}-redis-auth",
        "key": "password",
    }

    cron_job = kubectl_json("get", "cronjob", f"{NAME}-backup", "-n", namespace)
    assert cron_job["spec"]["schedule"] == "* * * * *" and cron_job["spec"]["concurrencyPolicy"] == "Forbid"
    job_pod = cron_job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    container = job_pod["containers"][0]
    assert container["command"] == ["python", "-m", "resonance_worker.backup", "backup"]
    assert {"secretRef": {"name": "backup-s3"}} in container["envFrom"]
    job_env = {e["name"]: e.get("value") for e in container["env"]}
    assert job_env["RESONANCE_BACKUP_DESTINATION"] == "s3" and job_env["RESONANCE_BACKUP_RETENTION"] == "3d"
    assert body["status"]["backup"]["next"].endswith("Z")
    assert condition(body, "BackupSucceeded")["status"] in ("Unknown", "True")

    # The CronJob controller starts a Job within the minute; kwok completes its pod.
    def backed_up() -> dict[str, Any] | None:
        found = get_cluster(NAME, namespace)
        return found if "lastSuccess" in found.get("status", {}).get("backup", {}) else None

    found = wait_until(backed_up, timeout=180, what="status.backup.lastSuccess")
    assert condition(found, "BackupSucceeded")["status"] == "True"
    assert condition(found, "BackupSucceeded")["reason"] == "LastBackupSucceeded"
    assert "lastFailure" not in found["status"]["backup"]
