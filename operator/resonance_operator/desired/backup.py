"""The backup CronJob (``spec.backup``): the worker image's ``python -m resonance_worker.backup backup``
on the schedule, with the workers' Redis settings and the destination's.

What it runs and how a restore goes: ``resonance_worker/backup`` and docs/operator.md ("Backups",
"Restore"). One Job at a time (``Forbid``), UTC schedule, the last three successful and failed Jobs kept
for their logs; its pods carry the ``backup`` component label, which the datastores' NetworkPolicy lets
through to Redis.
"""

from __future__ import annotations

from typing import Any

from resonance_operator.api.spec import ResonanceCluster
from resonance_operator.desired import meta, redis_tls, settings, workload

BACKUP_MOUNT = "/backup"


def name(cluster: ResonanceCluster) -> str:
    return meta.child_name(cluster, meta.BACKUP)


def _environment(cluster: ResonanceCluster) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(env, envFrom): the workers' settings (Redis URL, mode, Sentinels, prefix), their Redis secrets,
    then the destination."""
    backup = cluster.spec.backup
    assert backup is not None
    env_from: list[dict[str, Any]] = [{"configMapRef": {"name": settings.settings_configmap_name(cluster)}}]
    env: list[dict[str, Any]] = []
    worker_env = settings.worker_environment(cluster)
    for variable in ("RESONANCE_REDIS_URL", "RESONANCE_REDIS_PASSWORD"):
        ref = worker_env.from_secrets.get(variable)
        if ref is not None:
            env.append({"name": variable, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}})
    plain = {
        "RESONANCE_BACKUP_CLUSTER": f"{cluster.namespace}/{cluster.name}",
        "RESONANCE_BACKUP_RETENTION": backup.retention,
    }
    destination = backup.destination
    if destination.s3 is not None:
        s3 = destination.s3
        plain |= {
            "RESONANCE_BACKUP_DESTINATION": "s3",
            "RESONANCE_BACKUP_S3_ENDPOINT": s3.endpoint,
            "RESONANCE_BACKUP_S3_BUCKET": s3.bucket,
            "RESONANCE_BACKUP_S3_REGION": s3.region,
            "RESONANCE_BACKUP_PREFIX": s3.prefix or f"{cluster.namespace}/{cluster.name}",
        }
        env_from.append({"secretRef": {"name": s3.credentials_secret_ref}})
    else:
        plain |= {
            "RESONANCE_BACKUP_DESTINATION": "directory",
            "RESONANCE_BACKUP_PATH": BACKUP_MOUNT,
            "RESONANCE_BACKUP_PREFIX": f"{cluster.namespace}/{cluster.name}",
        }
    env += [{"name": key, "value": value} for key, value in sorted(plain.items())]
    return env, env_from


def cron_job(cluster: ResonanceCluster) -> dict[str, Any] | None:
    backup = cluster.spec.backup
    if backup is None:
        return None
    env, env_from = _environment(cluster)
    worker = cluster.spec.worker
    container: dict[str, Any] = {
        "name": meta.BACKUP,
        "image": worker.image,
        "imagePullPolicy": worker.image_pull_policy,
        "command": ["python", "-m", "resonance_worker.backup", "backup"],
        "env": env,
        "envFrom": env_from,
        "volumeMounts": [{"name": "work", "mountPath": "/tmp"}],
        "securityContext": workload.container_security_context(),
    }
    volumes: list[dict[str, Any]] = [{"name": "work", "emptyDir": {}}]
    if (tls := redis_tls.client_volume(cluster)) is not None:  # the CA (and client certificate) for Redis
        volumes.append(tls[0])
        container["volumeMounts"].append(tls[1])
    if backup.destination.pvc is not None:
        container["volumeMounts"].append({"name": "destination", "mountPath": BACKUP_MOUNT})
        volumes.append(
            {"name": "destination", "persistentVolumeClaim": {"claimName": backup.destination.pvc.claim_name}}
        )
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": volumes,
        "securityContext": workload.pod_security_context(),
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
    }
    return meta.with_spec_hash(
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": meta.metadata(cluster, name(cluster), meta.BACKUP),
            "spec": {
                "schedule": backup.schedule,
                "timeZone": "Etc/UTC",
                "suspend": backup.suspend,
                "concurrencyPolicy": "Forbid",
                "startingDeadlineSeconds": 3600,
                "successfulJobsHistoryLimit": 3,
                "failedJobsHistoryLimit": 3,
                "jobTemplate": {
                    "metadata": {"labels": meta.labels(cluster, meta.BACKUP)},
                    "spec": {
                        "backoffLimit": 2,
                        "activeDeadlineSeconds": 6 * 3600,
                        "template": {
                            "metadata": {"labels": meta.labels(cluster, meta.BACKUP)},
                            "spec": pod_spec,
                        },
                    },
                },
            },
        }
    )
