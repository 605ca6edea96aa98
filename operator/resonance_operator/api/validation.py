"""Semantic checks the CRD schema and CEL rules cannot express.

A cluster that fails any of them is reported ``Degraded`` with reason
``InvalidSpec`` and the messages below, and nothing else is touched.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Iterator, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from resonance_operator.api import cron
from resonance_operator.api.spec import ResonanceCluster, Resources, RolloutStrategy, SecretKeyRef

MAX_NAME_LENGTH = 40

_SUFFIXES = {
    "Ki": Decimal(2**10), "Mi": Decimal(2**20), "Gi": Decimal(2**30), "Ti": Decimal(2**40),
    "Pi": Decimal(2**50), "Ei": Decimal(2**60),
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
    "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"),
    "P": Decimal("1e15"), "E": Decimal("1e18"),
}  # fmt: skip
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|)$")


def parse_quantity(text: str) -> Decimal:
    """A Kubernetes quantity ("500m", "1Gi", "2") as a number; ``ValueError`` when malformed."""
    match = _QUANTITY.match(text.strip())
    if match is None:
        raise ValueError(f"not a quantity: {text!r}")
    number, suffix = match.groups()
    try:
        return Decimal(number) * _SUFFIXES[suffix]
    except InvalidOperation as exc:
        raise ValueError(f"not a quantity: {text!r}") from exc


def _resource_errors(where: str, resources: Resources) -> Iterator[str]:
    for resource, limit_text in sorted(resources.limits.items()):
        request_text = resources.requests.get(resource)
        try:
            limit = parse_quantity(limit_text)
            request = parse_quantity(request_text) if request_text is not None else None
        except ValueError as exc:
            yield f"{where}.resources: {exc}"
            continue
        if request is not None and request > limit:
            yield f"{where}.resources: {resource} request {request_text} exceeds its limit {limit_text}"


def _secret_errors(
    where: str, ref: SecretKeyRef | None, secrets: Mapping[str, Mapping[str, Any] | None]
) -> Iterator[str]:
    if ref is None:
        return
    secret = secrets.get(ref.name)
    if secret is None:
        yield f"{where}: Secret {ref.name!r} not found"
        return
    data = secret.get("data") or {}
    if ref.key not in data:
        yield f"{where}: Secret {ref.name!r} has no key {ref.key!r}"
        return
    try:
        if not base64.b64decode(data[ref.key], validate=True):
            yield f"{where}: key {ref.key!r} of Secret {ref.name!r} is empty"
    except (binascii.Error, ValueError):
        yield f"{where}: key {ref.key!r} of Secret {ref.name!r} is not valid base64"


def referenced_secret_names(cluster: ResonanceCluster) -> list[str]:
    """Secrets the spec names (and the operator must read to validate)."""
    return sorted({ref.name for _, ref in _secret_refs(cluster) if ref is not None})


def _secret_refs(cluster: ResonanceCluster) -> list[tuple[str, SecretKeyRef | None]]:
    spec = cluster.spec
    return [
        ("spec.auth.jwtSecretRef", spec.auth.jwt_secret_ref),
        (
            "spec.redis.external.urlSecretRef",
            spec.redis.external.url_secret_ref if spec.redis.external else None,
        ),
        (
            "spec.neo4j.managed.authSecretRef",
            spec.neo4j.managed.auth_secret_ref if spec.neo4j.managed else None,
        ),
        (
            "spec.neo4j.external.passwordSecretRef",
            spec.neo4j.external.password_secret_ref if spec.neo4j.external else None,
        ),
        ("spec.observability.sentry.dsnSecretRef", spec.observability.sentry.dsn_secret_ref),
        *_tls_secret_refs(cluster),
    ]


def _tls_secret_refs(cluster: ResonanceCluster) -> list[tuple[str, SecretKeyRef | None]]:
    """The keys Redis TLS reads: the managed server Secret's three (``kubernetes.io/tls`` plus the
    CA, as cert-manager writes them), an external Redis's CA and client certificate."""
    redis = cluster.spec.redis
    refs: list[tuple[str, SecretKeyRef | None]] = []
    if redis.external is None and redis.managed is not None and redis.managed.tls is not None:
        name = redis.managed.tls.secret_name
        for key in ("tls.crt", "tls.key", "ca.crt"):
            refs.append(("spec.redis.managed.tls.secretName", SecretKeyRef(name=name, key=key)))
    if redis.external is not None and redis.external.tls is not None:
        tls = redis.external.tls
        refs.append(("spec.redis.external.tls.caSecretRef", tls.ca_secret_ref))
        if tls.client_secret_name is not None:
            for key in ("tls.crt", "tls.key"):
                refs.append(
                    (
                        "spec.redis.external.tls.clientSecretName",
                        SecretKeyRef(name=tls.client_secret_name, key=key),
                    )
                )
    return refs


# Variables the operator derives from the spec; setting them in worker.env would
# silently fight the operator, so it is refused with a pointer to the right field.
_DERIVED_VARIABLES = {
    "RESONANCE_HOST": "spec.worker (fixed)",
    "RESONANCE_PORT": "spec.worker.port",
    "RESONANCE_ENGINE": "spec.redis",
    "RESONANCE_REDIS_URL": "spec.redis",
    "RESONANCE_JWT_SECRET": "spec.auth",
    "RESONANCE_NEO4J__URI": "spec.neo4j",
    "RESONANCE_NEO4J__PASSWORD": "spec.neo4j",
}


# Settings rendered from spec.worker.limits and clientAddress: an extra setting of the same name would be
# ignored (derived ones win), so it is refused with the field to use instead.
_DERIVED_EXTRAS = {
    "LIMITS__MAX_CONNECTIONS": "spec.worker.limits.connectionsPerPod",
    "LIMITS__MAX_CONNECTIONS_PER_IP": "spec.worker.limits.connectionsPerAddress",
    "LIMITS__MAX_CONNECTIONS_PER_USER": "spec.worker.limits.connectionsPerUser",
    "LIMITS__MAX_MESSAGE_BYTES": "spec.worker.limits.messageBytes",
    "LIMITS__COMMAND_RATE": "spec.worker.limits.commandsPerSecond",
    "LIMITS__COMMAND_BURST": "spec.worker.limits.commandBurst",
    "LIMITS__USER_PUBLISH_RATE": "spec.worker.limits.publishesPerSecond",
    "LIMITS__USER_PUBLISH_BURST": "spec.worker.limits.publishBurst",
    "CLIENT_IP_HEADER": "spec.worker.clientAddress.header",
    "TRUSTED_PROXIES": "spec.worker.clientAddress.trustedProxies",
    "PROXY_PROTOCOL": "spec.worker.clientAddress.proxyProtocol",
}


_PERIOD = re.compile(r"^[1-9][0-9]*[hdw]$")


def _redis_and_backup_errors(cluster: ResonanceCluster) -> list[str]:
    spec = cluster.spec
    errors: list[str] = []
    managed = spec.redis.managed if spec.redis.external is None else None
    if spec.redis.durability not in ("none", "replica"):
        errors.append(f"spec.redis.durability: {spec.redis.durability!r} is not none or replica")
    if managed is not None:
        if managed.replicas < 1:
            errors.append("spec.redis.managed.replicas: at least 1")
        if spec.redis.durability == "replica" and managed.replicas < 2:
            errors.append("spec.redis.durability: replica needs spec.redis.managed.replicas of 2 or more")
        sentinel = managed.sentinel
        if sentinel.enabled and managed.replicas < 3:
            errors.append("spec.redis.managed.sentinel: needs replicas of 3 or more (a Sentinel in each pod)")
        if sentinel.enabled and not 1 <= sentinel.quorum <= managed.replicas:
            errors.append(f"spec.redis.managed.sentinel.quorum: between 1 and replicas ({managed.replicas})")
        if managed.replicas > 1 and not sentinel.enabled:
            errors.append("spec.redis.managed.replicas: more than 1 needs sentinel.enabled (who is primary)")
        if managed.password.generate and managed.password.secret_ref is not None:
            errors.append("spec.redis.managed.password: generate or secretRef, not both")
    external = spec.redis.external
    if external is not None and external.sentinel is not None and not external.sentinel.addresses:
        errors.append("spec.redis.external.sentinel.addresses: at least one host:port")
    if external is not None and external.cluster is not None:
        if external.sentinel is not None:
            errors.append("spec.redis.external: sentinel or cluster, not both")
        if not external.cluster.nodes:
            errors.append("spec.redis.external.cluster.nodes: at least one host:port")
        if spec.backup is not None:
            errors.append("spec.backup: a Redis Cluster is not backed up by the operator (use its own tools)")
    backup = spec.backup
    if backup is not None:
        destination = backup.destination
        if (destination.pvc is None) == (destination.s3 is None):
            errors.append("spec.backup.destination: exactly one of pvc or s3")
        if not _PERIOD.match(backup.retention):
            errors.append(f"spec.backup.retention: {backup.retention!r}: a number and h, d or w (e.g. 7d)")
        try:
            cron.Schedule.parse(backup.schedule)
        except cron.CronError as exc:
            errors.append(f"spec.backup.schedule: {exc}")
    return errors


def semantic_errors(cluster: ResonanceCluster, secrets: Mapping[str, Mapping[str, Any] | None]) -> list[str]:
    """Every semantic problem of the spec, as messages naming the field."""
    spec = cluster.spec
    errors: list[str] = []
    if len(cluster.name) > MAX_NAME_LENGTH:
        errors.append(
            f"metadata.name: {len(cluster.name)} characters; at most {MAX_NAME_LENGTH} "
            "leave room for child names"
        )
    errors.extend(_resource_errors("spec.worker", spec.worker.resources))
    if spec.redis.managed is not None and spec.redis.external is None:
        errors.extend(_resource_errors("spec.redis.managed", spec.redis.managed.resources))
    if spec.neo4j.managed is not None:
        errors.extend(_resource_errors("spec.neo4j.managed", spec.neo4j.managed.resources))
    for where, ref in _secret_refs(cluster):
        errors.extend(error for error in _secret_errors(where, ref, secrets) if error not in errors)
    for item in spec.worker.env:
        name = str(item.get("name", ""))
        if name in _DERIVED_VARIABLES:
            errors.append(f"spec.worker.env: {name} is set by the operator from {_DERIVED_VARIABLES[name]}")
        elif name == "RESONANCE_API_KEY" and spec.rollout.strategy is not RolloutStrategy.ROLLING:
            errors.append(
                "spec.worker.env: RESONANCE_API_KEY is generated by the operator for canary and blueGreen "
                "rollouts (it starts the drain of old Pods through the workers' API)"
            )
    for key in sorted(spec.worker.settings.extra):
        if key in _DERIVED_EXTRAS:
            errors.append(f"spec.worker.settings.extra: {key} is set from {_DERIVED_EXTRAS[key]}")
    for cidr in spec.worker.client_address.trusted_proxies:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            errors.append(f"spec.worker.clientAddress.trustedProxies: {cidr!r} is not a CIDR or IP address")
    if spec.worker.client_address.proxy_protocol and not spec.worker.client_address.trusted_proxies:
        errors.append(
            "spec.worker.clientAddress.proxyProtocol needs trustedProxies: the header is read only from them"
        )
    errors.extend(_redis_and_backup_errors(cluster))
    if spec.rollout.canary is not None:
        weights = [step.set_weight for step in spec.rollout.canary.steps if step.set_weight is not None]
        if weights != sorted(weights):
            errors.append(f"spec.rollout.canary.steps: setWeight must not decrease, got {weights}")
    return errors
