"""The worker's ``RESONANCE_*`` environment: the one place that maps the spec
onto the variables ``resonance_worker.settings.WorkerSettings`` reads."""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

from resonance_operator.api.spec import Neo4jMode, ResonanceCluster, RolloutStrategy, SecretKeyRef
from resonance_operator.desired import features, meta, redis_tls, sizing

REDIS_PORT = 6379
NEO4J_BOLT_PORT = 7687
NEO4J_HTTP_PORT = 7474
JWT_SECRET_KEY = "secret"
NEO4J_PASSWORD_KEY = "password"
API_KEY_KEY = "key"


@dataclasses.dataclass(frozen=True)
class WorkerEnvironment:
    """Plain variables (go into the settings ConfigMap) and secret-backed ones."""

    plain: dict[str, str]
    from_secrets: dict[str, SecretKeyRef]


def settings_configmap_name(cluster: ResonanceCluster) -> str:
    return meta.child_name(cluster, "worker-settings")


def jwt_secret_name(cluster: ResonanceCluster) -> str:
    return meta.child_name(cluster, "jwt")


def api_key_secret_name(cluster: ResonanceCluster) -> str:
    """The workers' server-API key, which the operator uses to start a drain (``POST /drain``)."""
    return meta.child_name(cluster, "worker-api")


def uses_drain_api(cluster: ResonanceCluster) -> bool:
    """Canary and blue-green drain the losing revision through the workers' API; rolling uses SIGTERM."""
    return cluster.spec.rollout.strategy is not RolloutStrategy.ROLLING


def neo4j_auth_secret_name(cluster: ResonanceCluster) -> str:
    return meta.child_name(cluster, "neo4j-auth")


def redis_service_name(cluster: ResonanceCluster) -> str:
    return meta.child_name(cluster, meta.REDIS)


def neo4j_service_name(cluster: ResonanceCluster) -> str:
    return meta.child_name(cluster, meta.NEO4J)


def jwt_secret_ref(cluster: ResonanceCluster) -> SecretKeyRef | None:
    """Where the worker's HS256 key lives; ``None`` when tokens are checked against JWKS."""
    auth = cluster.spec.auth
    if auth.jwt_secret_ref is not None:
        return auth.jwt_secret_ref
    if auth.jwks_url is not None:
        return None
    return SecretKeyRef(name=jwt_secret_name(cluster), key=JWT_SECRET_KEY)


def neo4j_password_ref(cluster: ResonanceCluster) -> SecretKeyRef | None:
    neo4j = cluster.spec.neo4j
    if neo4j.managed is not None:
        return neo4j.managed.auth_secret_ref or SecretKeyRef(
            name=neo4j_auth_secret_name(cluster), key=NEO4J_PASSWORD_KEY
        )
    if neo4j.external is not None:
        return neo4j.external.password_secret_ref
    return None


REDIS_SENTINEL_PORT = 26379
REDIS_SENTINEL_SERVICE = "resonance"
"""The Sentinel service (master group) name of managed Redis."""
REDIS_PASSWORD_KEY = "password"


def redis_sentinel_service_name(cluster: ResonanceCluster) -> str:
    return meta.child_name(cluster, meta.REDIS + "-sentinel")


def redis_auth_secret_name(cluster: ResonanceCluster) -> str:
    return meta.child_name(cluster, meta.REDIS + "-auth")


def managed_sentinel(cluster: ResonanceCluster) -> bool:
    managed = cluster.spec.redis.managed
    return cluster.spec.redis.external is None and managed is not None and managed.sentinel.enabled


def redis_password_ref(cluster: ResonanceCluster) -> SecretKeyRef | None:
    """The managed Redis's password (given or generated); ``None`` without one, or for external Redis
    (whose URL carries it)."""
    managed = cluster.spec.redis.managed
    if cluster.spec.redis.external is not None or managed is None or not managed.password.enabled:
        return None
    return managed.password.secret_ref or SecretKeyRef(
        name=redis_auth_secret_name(cluster), key=REDIS_PASSWORD_KEY
    )


def redis_ha_environment(cluster: ResonanceCluster) -> dict[str, str]:
    """Sentinel discovery and durability for the workers (and the backup Job)."""
    redis = cluster.spec.redis
    found: dict[str, str] = {}
    if managed_sentinel(cluster):
        address = f"{redis_sentinel_service_name(cluster)}.{cluster.namespace}.svc:{REDIS_SENTINEL_PORT}"
        found["RESONANCE_REDIS_MODE"] = "sentinel"
        found["RESONANCE_REDIS_SENTINELS"] = json.dumps([address])
        found["RESONANCE_REDIS_SENTINEL_SERVICE"] = REDIS_SENTINEL_SERVICE
    elif redis.external is not None and redis.external.sentinel is not None:
        found["RESONANCE_REDIS_MODE"] = "sentinel"
        found["RESONANCE_REDIS_SENTINELS"] = json.dumps(redis.external.sentinel.addresses)
        found["RESONANCE_REDIS_SENTINEL_SERVICE"] = redis.external.sentinel.service
    elif redis.external is not None and redis.external.cluster is not None:
        found["RESONANCE_REDIS_MODE"] = "cluster"
        found["RESONANCE_REDIS_CLUSTER_NODES"] = json.dumps(redis.external.cluster.nodes)
    if redis.durability != "none":
        found["RESONANCE_REDIS_DURABILITY"] = redis.durability
    return found


def worker_environment(cluster: ResonanceCluster) -> WorkerEnvironment:
    spec = cluster.spec
    settings = spec.worker.settings
    plain = {
        "RESONANCE_HOST": "0.0.0.0",
        "RESONANCE_PORT": str(spec.worker.port),
        "RESONANCE_ENGINE": "redis",
        "RESONANCE_REDIS_PREFIX": settings.redis_prefix,
        "RESONANCE_LOG_LEVEL": settings.log_level,
        "RESONANCE_LOG_JSON": "true" if settings.log_json else "false",
    }
    if spec.worker.allowed_origins:
        plain["RESONANCE_ALLOWED_ORIGINS"] = json.dumps(spec.worker.allowed_origins)
    from_secrets: dict[str, SecretKeyRef] = {}

    external_redis = spec.redis.external
    if external_redis is None:
        scheme = "rediss" if redis_tls.managed_secret(cluster) is not None else "redis"
        plain["RESONANCE_REDIS_URL"] = (
            f"{scheme}://{redis_service_name(cluster)}.{cluster.namespace}.svc:{REDIS_PORT}/0"
        )
    elif external_redis.url_secret_ref is not None:
        from_secrets["RESONANCE_REDIS_URL"] = external_redis.url_secret_ref
    elif external_redis.url is not None:
        plain["RESONANCE_REDIS_URL"] = external_redis.url
    plain.update(redis_ha_environment(cluster))
    plain.update(redis_tls.environment(cluster))
    password = redis_password_ref(cluster)
    if password is not None:
        from_secrets["RESONANCE_REDIS_PASSWORD"] = password

    jwt_ref = jwt_secret_ref(cluster)
    if jwt_ref is not None:
        from_secrets["RESONANCE_JWT_SECRET"] = jwt_ref
    if spec.auth.jwks_url is not None:
        plain["RESONANCE_JWT_JWKS_URL"] = spec.auth.jwks_url

    if uses_drain_api(cluster):
        from_secrets["RESONANCE_API_KEY"] = SecretKeyRef(name=api_key_secret_name(cluster), key=API_KEY_KEY)

    mode = spec.neo4j.mode
    if mode is Neo4jMode.MANAGED:
        plain["RESONANCE_NEO4J__URI"] = (
            f"bolt://{neo4j_service_name(cluster)}.{cluster.namespace}.svc:{NEO4J_BOLT_PORT}"
        )
        plain["RESONANCE_NEO4J__USER"] = "neo4j"
    elif spec.neo4j.external is not None:
        plain["RESONANCE_NEO4J__URI"] = spec.neo4j.external.uri
        plain["RESONANCE_NEO4J__USER"] = spec.neo4j.external.username
    password_ref = neo4j_password_ref(cluster)
    if password_ref is not None:
        from_secrets["RESONANCE_NEO4J__PASSWORD"] = password_ref

    # Traces and error tracking only when asked for: an untouched spec keeps its revision.
    tracing = spec.observability.tracing
    if tracing.enabled:
        plain["RESONANCE_TRACING__ENABLED"] = "true"
        plain["RESONANCE_TRACING__ENDPOINT"] = tracing.endpoint
        plain["RESONANCE_TRACING__SAMPLE_RATIO"] = repr(tracing.sample_ratio)
    sentry = spec.observability.sentry
    if sentry.dsn_secret_ref is not None:
        from_secrets["RESONANCE_SENTRY__DSN"] = sentry.dsn_secret_ref
        plain["RESONANCE_SENTRY__SAMPLE_RATE"] = repr(sentry.sample_rate)
        if sentry.environment:
            plain["RESONANCE_SENTRY__ENVIRONMENT"] = sentry.environment

    # A worker stopped by SIGTERM (a rolling update, a scale-down) drains within the rollouts'
    # reconnect budget and deadline; the Pod's grace period exceeds the deadline (desired/worker.py).
    # The budget is per Pod here: dividing it by the Pods a rolling update stops together would tie
    # the template (and so the revision) to the replica count.
    drain = spec.rollout.drain
    plain["RESONANCE_SHUTDOWN_DRAIN_DEADLINE_SECONDS"] = str(drain.max_drain_seconds)
    plain["RESONANCE_SHUTDOWN_DRAIN_BUDGET_PER_SECOND"] = str(drain.reconnects_per_second)

    # Limits a deployment survives (desired/sizing.py), counted per client address and user across the
    # cluster; the client address is what a trusted proxy forwarded (rightmost untrusted hop).
    limits = spec.worker.limits
    plain["RESONANCE_LIMITS__MAX_CONNECTIONS"] = str(sizing.connections_per_pod(cluster))
    plain["RESONANCE_LIMITS__MAX_CONNECTIONS_PER_IP"] = str(limits.connections_per_address)
    plain["RESONANCE_LIMITS__MAX_CONNECTIONS_PER_USER"] = str(limits.connections_per_user)
    plain["RESONANCE_LIMITS__MAX_MESSAGE_BYTES"] = str(limits.message_bytes)
    plain["RESONANCE_LIMITS__COMMAND_RATE"] = str(limits.commands_per_second)
    plain["RESONANCE_LIMITS__COMMAND_BURST"] = str(limits.command_burst)
    plain["RESONANCE_LIMITS__USER_PUBLISH_RATE"] = str(limits.publishes_per_second)
    plain["RESONANCE_LIMITS__USER_PUBLISH_BURST"] = str(limits.publish_burst)
    client_address = spec.worker.client_address
    plain["RESONANCE_CLIENT_IP_HEADER"] = client_address.header
    plain["RESONANCE_TRUSTED_PROXIES"] = json.dumps(client_address.trusted_proxies)
    if client_address.proxy_protocol:
        plain["RESONANCE_PROXY_PROTOCOL"] = "true"

    # The flags' file: the same path whatever the flags (they change the ConfigMap only, desired/features.py).
    plain["RESONANCE_FEATURES_FILE"] = features.FILE_PATH

    # Free-form settings last, so a newer worker setting needs no operator release;
    # they cannot override what the operator derives from the spec.
    for key, value in sorted(settings.extra.items()):
        plain.setdefault(f"RESONANCE_{key}", value)
    return WorkerEnvironment(plain=plain, from_secrets=from_secrets)


def settings_configmap(cluster: ResonanceCluster) -> dict[str, Any]:
    environment = worker_environment(cluster)
    return meta.with_spec_hash(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta.metadata(cluster, settings_configmap_name(cluster), meta.WORKER),
            "data": dict(sorted(environment.plain.items())),
        }
    )


def generated_secret(
    cluster: ResonanceCluster, name: str, key: str, value: str, component: str
) -> dict[str, Any]:
    """A Secret the operator generates once (``value`` comes from the caller's RNG)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta.metadata(cluster, name, component),
        "type": "Opaque",
        "data": {key: base64.b64encode(value.encode()).decode()},
    }


def jwt_secret(cluster: ResonanceCluster, value: str) -> dict[str, Any]:
    return generated_secret(cluster, jwt_secret_name(cluster), JWT_SECRET_KEY, value, meta.WORKER)


def api_key_secret(cluster: ResonanceCluster, value: str) -> dict[str, Any]:
    return generated_secret(cluster, api_key_secret_name(cluster), API_KEY_KEY, value, meta.WORKER)


def redis_auth_secret(cluster: ResonanceCluster, value: str) -> dict[str, Any]:
    return generated_secret(cluster, redis_auth_secret_name(cluster), REDIS_PASSWORD_KEY, value, meta.REDIS)


def neo4j_auth_secret(cluster: ResonanceCluster, value: str) -> dict[str, Any]:
    return generated_secret(cluster, neo4j_auth_secret_name(cluster), NEO4J_PASSWORD_KEY, value, meta.NEO4J)
