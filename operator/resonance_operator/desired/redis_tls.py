"""TLS to Redis, from ``spec.redis.managed.tls`` or ``spec.redis.external.tls``: what the Redis pods
(and their Sentinels) are started with, and what the workers and the backup Job mount and are told.

Managed: the Secret (``kubernetes.io/tls``: ``tls.crt``, ``tls.key``, ``ca.crt``) is mounted whole in
the Redis pods only; Redis and Sentinel listen on TLS alone (``port 0``), replicate and talk to each
other over TLS; clients need no certificate (``tls-auth-clients no``: the password authenticates).
The workers get ``ca.crt`` alone and verify the host name. External: the CA from ``caSecretRef`` and,
if given, the client certificate from ``clientSecretName``, in one projected volume.
"""

from __future__ import annotations

from typing import Any

from resonance_operator.api.spec import ResonanceCluster

VOLUME = "redis-tls"
CLIENT_MOUNT = "/etc/resonance/redis-tls"
SERVER_MOUNT = "/tls"
CA_FILE = "ca.crt"
CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"


def managed_secret(cluster: ResonanceCluster) -> str | None:
    """The managed Redis's TLS Secret, when it has one."""
    redis = cluster.spec.redis
    if redis.external is not None or redis.managed is None or redis.managed.tls is None:
        return None
    return redis.managed.tls.secret_name


def enabled(cluster: ResonanceCluster) -> bool:
    external = cluster.spec.redis.external
    return managed_secret(cluster) is not None or (external is not None and external.tls is not None)


def environment(cluster: ResonanceCluster) -> dict[str, str]:
    """The workers' (and the backup Job's) ``RESONANCE_REDIS_TLS*`` variables."""
    if managed_secret(cluster) is not None:
        return {"RESONANCE_REDIS_TLS": "true", "RESONANCE_REDIS_TLS_CA_FILE": f"{CLIENT_MOUNT}/{CA_FILE}"}
    external = cluster.spec.redis.external
    if external is None or external.tls is None:
        return {}
    tls = external.tls
    found = {"RESONANCE_REDIS_TLS": "true"}
    if tls.ca_secret_ref is not None:
        found["RESONANCE_REDIS_TLS_CA_FILE"] = f"{CLIENT_MOUNT}/{CA_FILE}"
    if tls.client_secret_name is not None:
        found["RESONANCE_REDIS_TLS_CERT_FILE"] = f"{CLIENT_MOUNT}/{CERT_FILE}"
        found["RESONANCE_REDIS_TLS_KEY_FILE"] = f"{CLIENT_MOUNT}/{KEY_FILE}"
    if not tls.verify:
        found["RESONANCE_REDIS_TLS_VERIFY"] = "false"
    if external.sentinel is not None and not tls.sentinels:
        found["RESONANCE_REDIS_SENTINEL_TLS"] = "false"
    return found


def rolling_refs(cluster: ResonanceCluster) -> list[tuple[str, str | None]]:
    """What rolls the workers when it changes (``desired/secrets.py`` digest): (Secret, key) of a CA,
    counted by value (public; a managed Secret's renewed ``tls.crt`` alone rolls nothing), and
    (Secret, None) of a client certificate, counted by version. Open clients keep what they loaded."""
    if (secret := managed_secret(cluster)) is not None:
        return [(secret, CA_FILE)]
    external = cluster.spec.redis.external
    if external is None or external.tls is None:
        return []
    refs: list[tuple[str, str | None]] = []
    if (ca := external.tls.ca_secret_ref) is not None:
        refs.append((ca.name, ca.key))
    if external.tls.client_secret_name is not None:
        refs.append((external.tls.client_secret_name, None))
    return refs


def _secret_items(name: str, *keys: tuple[str, str]) -> dict[str, Any]:
    return {"secret": {"name": name, "items": [{"key": key, "path": path} for key, path in keys]}}


def client_volume(cluster: ResonanceCluster) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(volume, read-only mount) of what a Redis client needs: the CA, and a client certificate if any."""
    sources: list[dict[str, Any]] = []
    if (secret := managed_secret(cluster)) is not None:
        sources.append(_secret_items(secret, (CA_FILE, CA_FILE)))
    elif (external := cluster.spec.redis.external) is not None and external.tls is not None:
        if (ca := external.tls.ca_secret_ref) is not None:
            sources.append(_secret_items(ca.name, (ca.key, CA_FILE)))
        if (client := external.tls.client_secret_name) is not None:
            sources.append(_secret_items(client, (CERT_FILE, CERT_FILE), (KEY_FILE, KEY_FILE)))
    if not sources:
        return None
    volume = {"name": VOLUME, "projected": {"sources": sources, "defaultMode": 0o440}}
    return volume, {"name": VOLUME, "mountPath": CLIENT_MOUNT, "readOnly": True}


def server_volume(secret: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(volume, read-only mount) of the whole TLS Secret, for the Redis pods."""
    volume = {"name": VOLUME, "secret": {"secretName": secret, "defaultMode": 0o440}}
    return volume, {"name": VOLUME, "mountPath": SERVER_MOUNT, "readOnly": True}


def _files() -> list[str]:
    return [
        f"tls-cert-file {SERVER_MOUNT}/{CERT_FILE}",
        f"tls-key-file {SERVER_MOUNT}/{KEY_FILE}",
        f"tls-ca-cert-file {SERVER_MOUNT}/{CA_FILE}",
        "tls-auth-clients no",
        "tls-replication yes",
    ]


def server_args(port: int) -> list[str]:
    """``redis-server`` options: TLS alone on ``port``, replication over TLS."""
    return ["--port 0", f"--tls-port {port}", *(f"--{line}" for line in _files())]


def sentinel_conf(port: int) -> list[str]:
    """``sentinel.conf`` lines: TLS alone on ``port``; ``tls-replication`` makes the Sentinel reach
    the Redis nodes (and its peers) over TLS."""
    return ["port 0", f"tls-port {port}", *_files()]


CLI_FLAGS = f"--tls --cacert {SERVER_MOUNT}/{CA_FILE}"
"""``redis-cli`` options inside a Redis pod (probes, finding the primary): verified by the CA."""
