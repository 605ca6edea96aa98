"""TLS for Redis from the CR (``spec.redis.managed.tls``, ``spec.redis.external.tls``): the Redis pods,
their Sentinels, the workers and the backup Job (pure builders), the refusals, and the rendered start
script run for real against Debian's redis-server (kwok runs no containers)."""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import redis
from resonance_operator.api import validation
from resonance_operator.desired import backup, datastores, redis_tls, secrets, settings, worker

from tests.harness.processes import die_with_parent, free_port, port_open
from tests.harness.sentinel import wait_for
from tests.harness.tls import make_tls
from tests.operator import fixtures

TLS = {"secretName": "demo-redis-tls"}
HA = {"replicas": 3, "sentinel": {"enabled": True}, "password": {"generate": True}, "tls": TLS}
S3 = {"s3": {"endpoint": "http://minio:9000", "bucket": "b", "credentialsSecretRef": "creds"}}


def _cluster(**spec: Any) -> Any:
    return fixtures.cluster({**fixtures.with_worker(), **spec})


def _secret(*keys: str) -> dict[str, Any]:
    return {"type": "kubernetes.io/tls", "data": {key: base64.b64encode(b"pem").decode() for key in keys}}


def test_managed_redis_and_its_sentinels_listen_on_tls_alone() -> None:
    cluster = _cluster(redis={"managed": HA})
    body = datastores.redis_stateful_set(cluster)
    assert body is not None
    pod = body["spec"]["template"]["spec"]
    server, sentinel = pod["containers"]
    script = server["command"][2]
    assert "--port 0 --tls-port 6379" in script
    assert "--tls-cert-file /tls/tls.crt --tls-key-file /tls/tls.key --tls-ca-cert-file /tls/ca.crt" in script
    assert "--tls-replication yes" in script and "--tls-auth-clients no" in script
    # Finding the primary asks the Sentinels over TLS too.
    assert "-p 26379 --tls --cacert /tls/ca.crt --raw sentinel get-master-addr-by-name" in script
    conf = sentinel["command"][2]
    assert "port 0\ntls-port 26379\n" in conf and "tls-replication yes" in conf
    assert "\nport 26379" not in conf
    assert server["readinessProbe"]["exec"]["command"][2].endswith(
        "redis-cli --tls --cacert /tls/ca.crt ping"
    )
    assert sentinel["readinessProbe"]["exec"]["command"][:4] == [
        "redis-cli",
        "--tls",
        "--cacert",
        "/tls/ca.crt",
    ]
    volume = next(v for v in pod["volumes"] if v["name"] == redis_tls.VOLUME)
    assert volume["secret"]["secretName"] == "demo-redis-tls"
    for container in (server, sentinel):
        assert {"name": "redis-tls", "mountPath": "/tls", "readOnly": True} in container["volumeMounts"]


def test_workers_and_the_backup_job_get_the_ca_alone_and_a_rediss_url() -> None:
    cluster = _cluster(redis={"managed": HA}, backup={"destination": S3})
    plain = settings.worker_environment(cluster).plain
    assert plain["RESONANCE_REDIS_URL"].startswith("rediss://demo-redis.team-a.svc:6379")
    assert plain["RESONANCE_REDIS_TLS"] == "true"
    assert plain["RESONANCE_REDIS_TLS_CA_FILE"] == "/etc/resonance/redis-tls/ca.crt"
    assert "RESONANCE_REDIS_TLS_VERIFY" not in plain  # verified by default
    for pod in (
        worker.pod_template(cluster)["spec"],
        backup.cron_job(cluster)["spec"]["jobTemplate"]["spec"]["template"]["spec"],  # type: ignore[index]
    ):
        volume = next(v for v in pod["volumes"] if v["name"] == redis_tls.VOLUME)
        # Only the CA: the server's key never reaches a worker.
        assert volume["projected"]["sources"] == [
            {"secret": {"name": "demo-redis-tls", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}
        ]
        mounts = pod["containers"][0]["volumeMounts"]
        assert {"name": "redis-tls", "mountPath": "/etc/resonance/redis-tls", "readOnly": True} in mounts


def test_a_redis_without_tls_is_rendered_as_before() -> None:
    cluster = _cluster()
    assert not redis_tls.enabled(cluster)
    assert "RESONANCE_REDIS_TLS" not in settings.worker_environment(cluster).plain
    pod = worker.pod_template(cluster)["spec"]
    assert all(v["name"] != redis_tls.VOLUME for v in pod["volumes"])
    body = datastores.redis_stateful_set(cluster)
    assert body is not None and body["spec"]["template"]["spec"]["containers"][0]["args"][0] == "redis-server"


def test_an_external_redis_with_a_ca_a_client_certificate_and_sentinels() -> None:
    tls = {"caSecretRef": {"name": "corp-ca"}, "clientSecretName": "worker-cert", "sentinels": False}
    cluster = _cluster(
        redis={"external": {"url": "redis://r:6379/0", "sentinel": {"addresses": ["s:26379"]}, "tls": tls}}
    )
    plain = settings.worker_environment(cluster).plain
    assert plain["RESONANCE_REDIS_TLS"] == "true"
    assert plain["RESONANCE_REDIS_TLS_CA_FILE"] == "/etc/resonance/redis-tls/ca.crt"
    assert plain["RESONANCE_REDIS_TLS_CERT_FILE"] == "/etc/resonance/redis-tls/tls.crt"
    assert plain["RESONANCE_REDIS_TLS_KEY_FILE"] == "/etc/resonance/redis-tls/tls.key"
    assert plain["RESONANCE_REDIS_SENTINEL_TLS"] == "false"
    volume = next(v for v in worker.pod_template(cluster)["spec"]["volumes"] if v["name"] == redis_tls.VOLUME)
    assert volume["projected"]["sources"] == [
        {"secret": {"name": "corp-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {
            "secret": {
                "name": "worker-cert",
                "items": [{"key": "tls.crt", "path": "tls.crt"}, {"key": "tls.key", "path": "tls.key"}],
            }
        },
    ]
    unverified = _cluster(redis={"external": {"url": "redis://r:6379/0", "tls": {"verify": False}}})
    assert settings.worker_environment(unverified).plain["RESONANCE_REDIS_TLS_VERIFY"] == "false"
    ok = {"corp-ca": _secret("ca.crt"), "worker-cert": _secret("tls.crt", "tls.key")}
    assert validation.semantic_errors(cluster, ok) == []


def test_a_new_ca_rolls_the_workers_a_renewed_server_certificate_does_not() -> None:
    cluster = _cluster(redis={"managed": HA})

    def digest(ca: bytes, crt: bytes) -> str:
        data = {"ca.crt": base64.b64encode(ca).decode(), "tls.crt": base64.b64encode(crt).decode()}
        body = {"metadata": {"uid": "u", "resourceVersion": crt.decode()}, "data": data}
        return secrets.digest(cluster, {"demo-redis-tls": body}, ())

    assert digest(b"ca-1", b"server-1") == digest(b"ca-1", b"server-2")
    assert digest(b"ca-1", b"server-1") != digest(b"ca-2", b"server-1")
    external = _cluster(redis={"external": {"url": "redis://r:6379/0", "tls": {"clientSecretName": "cert"}}})
    renewed = [{"cert": {"metadata": {"uid": "u", "resourceVersion": v}}} for v in ("1", "2")]
    assert secrets.digest(external, renewed[0], ()) != secrets.digest(external, renewed[1], ())


def test_a_missing_or_incomplete_tls_secret_is_named() -> None:
    cluster = _cluster(redis={"managed": HA})
    assert (
        validation.semantic_errors(cluster, {"demo-redis-tls": _secret("tls.crt", "tls.key", "ca.crt")}) == []
    )
    assert validation.semantic_errors(cluster, {}) == [
        "spec.redis.managed.tls.secretName: Secret 'demo-redis-tls' not found"
    ]
    assert validation.semantic_errors(cluster, {"demo-redis-tls": _secret("tls.crt", "tls.key")}) == [
        "spec.redis.managed.tls.secretName: Secret 'demo-redis-tls' has no key 'ca.crt'"
    ]
    assert "demo-redis-tls" in validation.referenced_secret_names(cluster)  # read, and rolls the workers
    external = _cluster(redis={"external": {"url": "redis://r:6379/0", "tls": {"clientSecretName": "cert"}}})
    assert validation.semantic_errors(external, {"cert": _secret("tls.crt")}) == [
        "spec.redis.external.tls.clientSecretName: Secret 'cert' has no key 'tls.key'"
    ]


def test_the_rendered_start_script_runs_a_tls_only_redis(tmp_path: Path) -> None:
    """The managed Redis's start script and readiness probe, as rendered, run for real (paths and
    port moved under ``tmp_path``): TLS alone, the password required, the CA verifies it."""
    files = make_tls(tmp_path / "secret")
    mount = tmp_path / "tls"
    mount.mkdir()
    for target, source in (("tls.crt", files.cert), ("tls.key", files.key), ("ca.crt", files.ca)):
        (mount / target).write_bytes(source.read_bytes())
    (tmp_path / "data").mkdir()
    cluster = _cluster(
        redis={"managed": {"password": {"generate": True}, "tls": TLS, "persistence": {"enabled": False}}}
    )
    body = datastores.redis_stateful_set(cluster)
    assert body is not None
    container = body["spec"]["template"]["spec"]["containers"][0]
    port = free_port()

    def local(text: str) -> str:
        return (
            text.replace("/tls/", f"{mount}/")
            .replace("/data", str(tmp_path / "data"))
            .replace("6379", str(port))
            .replace("redis-server ", "redis-server --bind 127.0.0.1 --save '' ", 1)
        )

    env = {**os.environ, "REDIS_PASSWORD": "pw"}
    process = subprocess.Popen(
        ["sh", "-c", local(container["command"][2])], env=env, preexec_fn=die_with_parent()
    )
    try:
        wait_for(lambda: port_open("127.0.0.1", port), timeout=20, what="the TLS port")
        probe = container["readinessProbe"]["exec"]["command"]
        answer = subprocess.run(
            [*probe[:2], local(probe[2]).replace(" ping", f" -p {port} ping")],
            env=env,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        assert answer.stdout.strip() == "PONG"
        client = redis.Redis(port=port, password="pw", ssl=True, ssl_ca_certs=str(files.ca), socket_timeout=2)
        assert client.ping() and client.config_get("tls-replication") == {"tls-replication": "yes"}
        client.close()
        plain = redis.Redis(port=port, password="pw", socket_timeout=1, socket_connect_timeout=1)
        with pytest.raises(redis.RedisError):
            plain.ping()
        plain.close()
    finally:
        process.terminate()
        process.wait(timeout=10)
