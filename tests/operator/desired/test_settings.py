from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from resonance_operator.api.spec import DEFAULT_TRUSTED_PROXIES
from resonance_operator.desired import settings

from tests.operator import fixtures


def _refs(environment: settings.WorkerEnvironment) -> dict[str, tuple[str, str]]:
    return {name: (ref.name, ref.key) for name, ref in environment.from_secrets.items()}


def test_defaults_map_onto_the_worker_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    environment = settings.worker_environment(fixtures.cluster())
    assert environment.plain == {
        "RESONANCE_HOST": "0.0.0.0",
        "RESONANCE_PORT": "8000",
        "RESONANCE_FEATURES_FILE": "/etc/resonance/features/features.json",
        "RESONANCE_ENGINE": "redis",
        "RESONANCE_REDIS_URL": "redis://demo-redis.team-a.svc:6379/0",
        "RESONANCE_REDIS_PREFIX": "resonance",
        "RESONANCE_LOG_LEVEL": "INFO",
        "RESONANCE_LOG_JSON": "true",
        "RESONANCE_SHUTDOWN_DRAIN_DEADLINE_SECONDS": "300",
        "RESONANCE_SHUTDOWN_DRAIN_BUDGET_PER_SECOND": "200",
        # Limits a deployment survives (no memory named: the default 384Mi fits 18,329 by desired/sizing.py).
        "RESONANCE_LIMITS__MAX_CONNECTIONS": "18329",
        "RESONANCE_LIMITS__MAX_CONNECTIONS_PER_IP": "100",
        "RESONANCE_LIMITS__MAX_CONNECTIONS_PER_USER": "20",
        "RESONANCE_LIMITS__MAX_MESSAGE_BYTES": "65536",
        "RESONANCE_LIMITS__COMMAND_RATE": "50",
        "RESONANCE_LIMITS__COMMAND_BURST": "100",
        "RESONANCE_LIMITS__USER_PUBLISH_RATE": "20",
        "RESONANCE_LIMITS__USER_PUBLISH_BURST": "40",
        # The rightmost X-Forwarded-For hop outside the cluster's private networks (ingress-nginx, Gateway).
        "RESONANCE_CLIENT_IP_HEADER": "X-Forwarded-For",
        "RESONANCE_TRUSTED_PROXIES": json.dumps(list(DEFAULT_TRUSTED_PROXIES)),
    }
    assert _refs(environment) == {"RESONANCE_JWT_SECRET": ("demo-jwt", "secret")}
    # The worker reads them as meant: its settings model parses this environment.
    from resonance_worker.settings import WorkerSettings

    for name, value in environment.plain.items():
        monkeypatch.setenv(name, value)
    parsed = WorkerSettings()
    assert (parsed.limits.max_connections, parsed.limits.max_connections_per_ip) == (18329, 100)
    assert parsed.trusted_proxies == list(DEFAULT_TRUSTED_PROXIES)
    assert parsed.client_ip_header == "X-Forwarded-For"


def test_limits_from_the_memory_limit_the_autoscaling_target_or_the_cr() -> None:
    def plain(**worker: Any) -> dict[str, str]:
        return settings.worker_environment(fixtures.cluster(fixtures.with_worker(**worker))).plain

    # examples/full.yaml: 384Mi fits floor((0.8 * 384 MiB - 164 MiB) / 8 KiB) = 18,329 > its target 2000
    # (docs/capacity.md: 163.6 MiB + 7.4 KiB per connection, rounded up).
    full = plain(resources={"limits": {"memory": "384Mi"}}, autoscaling={"targetConnectionsPerPod": 2000})
    assert full["RESONANCE_LIMITS__MAX_CONNECTIONS"] == str(int((0.8 * 384 - 164) * 1024 / 8)) == "18329"
    # A target above what the memory fits wins: a pod accepts what the autoscaler aims to give it.
    assert (
        plain(resources={"limits": {"memory": "256Mi"}}, autoscaling={"targetConnectionsPerPod": 8000})[
            "RESONANCE_LIMITS__MAX_CONNECTIONS"
        ]
        == "8000"
    )
    assert (
        plain(autoscaling={"targetConnectionsPerPod": 20000})["RESONANCE_LIMITS__MAX_CONNECTIONS"] == "20000"
    )
    explicit = plain(
        limits={"connectionsPerPod": 3000, "connectionsPerAddress": 0, "messageBytes": 4096},
        clientAddress={"header": "X-Real-Ip", "trustedProxies": ["10.2.0.0/16"]},
    )
    assert explicit["RESONANCE_LIMITS__MAX_CONNECTIONS"] == "3000"
    assert explicit["RESONANCE_LIMITS__MAX_CONNECTIONS_PER_IP"] == "0"
    assert explicit["RESONANCE_LIMITS__MAX_MESSAGE_BYTES"] == "4096"
    assert explicit["RESONANCE_CLIENT_IP_HEADER"] == "X-Real-Ip"
    assert explicit["RESONANCE_TRUSTED_PROXIES"] == '["10.2.0.0/16"]'


def test_an_extra_setting_the_limits_render_is_refused_with_the_field_to_use() -> None:
    from resonance_operator.api.validation import semantic_errors

    cluster = fixtures.cluster(
        fixtures.with_worker(
            settings={"extra": {"LIMITS__MAX_CONNECTIONS_PER_IP": "5"}},
            clientAddress={"trustedProxies": ["10.0.0.0/8", "not-a-network"]},
        )
    )
    assert semantic_errors(cluster, {}) == [
        "spec.worker.settings.extra: LIMITS__MAX_CONNECTIONS_PER_IP is set from "
        "spec.worker.limits.connectionsPerAddress",
        "spec.worker.clientAddress.trustedProxies: 'not-a-network' is not a CIDR or IP address",
    ]


def test_a_stopping_worker_drains_by_the_rollout_budget_within_its_grace_period() -> None:
    from resonance_operator.desired.worker import termination_grace_seconds

    cluster = fixtures.cluster(
        {**fixtures.with_worker(), "rollout": {"drain": {"maxDrainSeconds": 120, "reconnectsPerSecond": 50}}}
    )
    plain = settings.worker_environment(cluster).plain
    assert plain["RESONANCE_SHUTDOWN_DRAIN_BUDGET_PER_SECOND"] == "50"
    assert int(plain["RESONANCE_SHUTDOWN_DRAIN_DEADLINE_SECONDS"]) == 120 < termination_grace_seconds(cluster)


def test_the_mapping_matches_the_worker_settings_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every variable the operator derives is one the worker actually reads, nested groups included."""
    cluster = fixtures.cluster(
        {
            **fixtures.with_worker(),
            "redis": {"external": {"urlSecretRef": {"name": "redis-url", "key": "url"}}},
            "neo4j": {
                "external": {
                    "uri": "bolt://graph:7687",
                    "username": "app",
                    "passwordSecretRef": {"name": "g", "key": "pw"},
                }
            },
            "auth": {"jwksUrl": "https://idp.example/jwks"},
            "observability": {
                "tracing": {"enabled": True, "endpoint": "http://otel:4318", "sampleRatio": 0.25},
                "sentry": {"dsnSecretRef": {"name": "sentry", "key": "dsn"}, "environment": "prod"},
            },
        }
    )
    environment = settings.worker_environment(cluster)
    derived = set(environment.plain) | set(environment.from_secrets)
    assert {"RESONANCE_NEO4J__URI", "RESONANCE_NEO4J__PASSWORD", "RESONANCE_JWT_JWKS_URL"} <= derived
    assert derived <= worker_variables()
    assert environment.plain["RESONANCE_TRACING__ENDPOINT"] == "http://otel:4318"
    assert environment.plain["RESONANCE_TRACING__SAMPLE_RATIO"] == "0.25"
    assert environment.plain["RESONANCE_SENTRY__ENVIRONMENT"] == "prod"
    assert _refs(environment)["RESONANCE_SENTRY__DSN"] == ("sentry", "dsn")
    # The worker reads what the operator writes.
    from resonance_worker.settings import WorkerSettings

    for name, value in environment.plain.items():
        if name.startswith(("RESONANCE_TRACING__", "RESONANCE_SENTRY__")):
            monkeypatch.setenv(name, value)
    read = WorkerSettings()
    assert (read.tracing.enabled, read.tracing.endpoint, read.tracing.sample_ratio) == (
        True,
        "http://otel:4318",
        0.25,
    )
    assert read.sentry.environment == "prod"


def worker_variables() -> set[str]:
    """The environment variables ``WorkerSettings`` reads (``__`` joins a group and its fields)."""
    from pydantic import BaseModel
    from resonance_worker.settings import WorkerSettings

    names: set[str] = set()
    for name, field in WorkerSettings.model_fields.items():
        names.add(f"RESONANCE_{name.upper()}")
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            names |= {f"RESONANCE_{name.upper()}__{sub.upper()}" for sub in field.annotation.model_fields}
    return names


def test_external_services_jwks_and_extra_settings() -> None:
    cluster = fixtures.cluster(
        {
            **fixtures.with_worker(
                port=9000, settings={"logJson": False, "extra": {"MAX_CONNECTIONS": "5", "HOST": "x"}}
            ),
            "redis": {"external": {"urlSecretRef": {"name": "redis-url", "key": "url"}}},
            "neo4j": {
                "external": {
                    "uri": "neo4j+s://graph:7687",
                    "username": "app",
                    "passwordSecretRef": {"name": "g", "key": "pw"},
                }
            },
            "auth": {"jwksUrl": "https://idp.example/jwks"},
        }
    )
    environment = settings.worker_environment(cluster)
    assert environment.plain["RESONANCE_PORT"] == "9000"
    assert environment.plain["RESONANCE_LOG_JSON"] == "false"
    assert environment.plain["RESONANCE_MAX_CONNECTIONS"] == "5"
    assert environment.plain["RESONANCE_HOST"] == "0.0.0.0"  # extra settings cannot override derived ones
    assert environment.plain["RESONANCE_JWT_JWKS_URL"] == "https://idp.example/jwks"
    assert environment.plain["RESONANCE_NEO4J__URI"] == "neo4j+s://graph:7687"
    assert environment.plain["RESONANCE_NEO4J__USER"] == "app"
    assert "RESONANCE_REDIS_URL" not in environment.plain
    assert _refs(environment) == {
        "RESONANCE_REDIS_URL": ("redis-url", "url"),
        "RESONANCE_NEO4J__PASSWORD": ("g", "pw"),
    }
    assert settings.jwt_secret_ref(cluster) is None


def test_external_redis_url_and_given_jwt_secret_and_managed_neo4j() -> None:
    cluster = fixtures.cluster(
        {
            **fixtures.with_worker(),
            "redis": {"external": {"url": "rediss://r:6380/1"}},
            "neo4j": {"managed": {}},
            "auth": {"jwtSecretRef": {"name": "mine", "key": "k"}},
        }
    )
    environment = settings.worker_environment(cluster)
    assert environment.plain["RESONANCE_REDIS_URL"] == "rediss://r:6380/1"
    assert environment.plain["RESONANCE_NEO4J__URI"] == "bolt://demo-neo4j.team-a.svc:7687"
    assert _refs(environment)["RESONANCE_JWT_SECRET"] == ("mine", "k")
    assert _refs(environment)["RESONANCE_NEO4J__PASSWORD"] == ("demo-neo4j-auth", "password")


def test_configmap_and_generated_secrets() -> None:
    cluster = fixtures.cluster()
    configmap = settings.settings_configmap(cluster)
    assert configmap["metadata"]["name"] == "demo-worker-settings"
    assert configmap["data"]["RESONANCE_ENGINE"] == "redis"
    assert list(configmap["data"]) == sorted(configmap["data"])
    secret = settings.jwt_secret(cluster, "s3cret")
    assert secret["metadata"]["name"] == "demo-jwt"
    assert base64.b64decode(secret["data"]["secret"]) == b"s3cret"
    neo4j = settings.neo4j_auth_secret(cluster, "pw")
    assert neo4j["metadata"]["name"] == "demo-neo4j-auth"
    assert neo4j["metadata"]["labels"]["app.kubernetes.io/component"] == "neo4j"


def test_allowed_origins_reach_the_worker_as_its_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from resonance_worker.settings import WorkerSettings

    origins = ["https://app.example.com", "https://*.example.org", "null"]
    plain = settings.worker_environment(fixtures.cluster(fixtures.with_worker(allowedOrigins=origins))).plain
    monkeypatch.setenv("RESONANCE_ALLOWED_ORIGINS", plain["RESONANCE_ALLOWED_ORIGINS"])
    assert WorkerSettings(_env_file=None).allowed_origins == origins  # type: ignore[call-arg]
    assert "RESONANCE_ALLOWED_ORIGINS" not in settings.worker_environment(fixtures.cluster()).plain


def test_proxy_protocol_is_rendered_for_the_worker_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    from resonance_operator.api import validation
    from resonance_worker.settings import WorkerSettings

    assert "RESONANCE_PROXY_PROTOCOL" not in settings.worker_environment(fixtures.cluster()).plain
    cluster = fixtures.cluster(fixtures.with_worker(clientAddress={"proxyProtocol": True}))
    environment = settings.worker_environment(cluster)
    assert environment.plain["RESONANCE_PROXY_PROTOCOL"] == "true"
    for name, value in environment.plain.items():
        monkeypatch.setenv(name, value)
    parsed = WorkerSettings()
    assert parsed.proxy_protocol and parsed.trusted_proxies == list(DEFAULT_TRUSTED_PROXIES)
    # Without trusted proxies the header could come from anyone: refused, naming the field.
    lonely = fixtures.cluster(
        fixtures.with_worker(clientAddress={"proxyProtocol": True, "trustedProxies": []})
    )
    assert any(
        "spec.worker.clientAddress.proxyProtocol needs trustedProxies" in error
        for error in validation.semantic_errors(lonely, {})
    )
