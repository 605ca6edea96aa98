"""Secrets behind the workers: a digest that rolls them when a value changes, and which generated Secrets
must not come back on their own (pure).

The workers read their Secrets (the JWT secret, the drain API key, the Neo4j password, an external Redis
URL) from ``secretKeyRef`` variables, once, when a Pod starts. :func:`digest` hashes what those variables
name into the Pod template (``SECRETS_HASH_ANNOTATION``), so changing such a Secret rolls the workers like
any other template change (for canary and blue-green it is a new revision). A Secret the operator generated
counts by its value (random, so its hash gives nothing away, and known before the Secret exists); a Secret
of the user's counts by its ``uid`` and ``resourceVersion``, never its value (a weak password's hash in a
Pod annotation could be guessed back), so any write to it rolls the workers.

A generated Secret (``<cluster>-jwt``, ``-api-key``, ``-neo4j-auth``) that is deleted while a live
workload of the cluster reads it is **not** generated again: a new random value would reach only new
Pods (and never Neo4j, whose volume keeps the password it was initialised with), while the running ones
and the clients' token issuer keep the old one. :func:`withheld` names such Secrets; the cluster is
``Degraded`` (``GeneratedSecretMissing``) until a person restores the Secret with the value in use, or
asks for a new one with the ``REGENERATE_ANNOTATION`` (the workers then roll onto it). A generated Secret
no live workload reads (Neo4j turned on later, the drain API key before canaries) is created as ever.
"""

from __future__ import annotations

import base64
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from resonance_operator.api.spec import ResonanceCluster
from resonance_operator.desired import meta, redis_tls, settings

SECRETS_HASH_ANNOTATION = "resonance.liminal.dev/secrets-hash"
REGENERATE_ANNOTATION = "resonance.liminal.dev/regenerate-secrets"
"""Comma-separated names of generated Secrets the operator may generate again although workloads run;
removed once they exist."""

Body = Mapping[str, Any]


def value_of(secret: Body | None, key: str) -> str | None:
    """The value under ``key`` of a Secret body (``data`` base64, or ``stringData``), decoded."""
    if secret is None:
        return None
    if key in (secret.get("data") or {}):
        return base64.b64decode(str(secret["data"][key])).decode(errors="replace")
    plain = (secret.get("stringData") or {}).get(key)
    return None if plain is None else str(plain)


def digest(cluster: ResonanceCluster, secrets: Mapping[str, Body | None], generated: Collection[str]) -> str:
    """A hash of every Secret the workers read (``secrets`` by name; absent ones count as absent);
    ``generated`` names the operator's own, which count by value."""
    named = settings.worker_environment(cluster).from_secrets
    parts: dict[str, list[Any]] = {}
    for variable, ref in sorted(named.items()):
        secret = secrets.get(ref.name)
        if ref.name in generated:
            parts[variable] = [ref.name, ref.key, value_of(secret, ref.key)]
        else:
            version = None if secret is None else secret.get("metadata", {})
            parts[variable] = [
                ref.name,
                ref.key,
                version and [version.get("uid"), version.get("resourceVersion")],
            ]
    for name, key in redis_tls.rolling_refs(cluster):  # mounted, not in the environment
        secret = secrets.get(name)
        if key is not None:  # a CA: public, by value
            parts[f"redis-tls {name} {key}"] = [value_of(secret, key)]
        else:
            version = None if secret is None else secret.get("metadata", {})
            parts[f"redis-tls {name}"] = [version and [version.get("uid"), version.get("resourceVersion")]]
    return meta.content_hash(parts)


def regenerate_requested(annotations: Mapping[str, str] | None) -> frozenset[str]:
    """The Secret names the ``REGENERATE_ANNOTATION`` allows to be generated again."""
    raw = (annotations or {}).get(REGENERATE_ANNOTATION, "")
    return frozenset(name.strip() for name in raw.split(",") if name.strip())


def used_by(workloads: Iterable[Body | None]) -> frozenset[str]:
    """The Secrets the Pod templates of live ``workloads`` (Deployments, StatefulSets) read."""
    names: set[str] = set()
    for body in workloads:
        pod = ((body or {}).get("spec") or {}).get("template", {}).get("spec") or {}
        for container in [*pod.get("initContainers", []), *pod.get("containers", [])]:
            for variable in container.get("env") or []:
                ref = (variable.get("valueFrom") or {}).get("secretKeyRef") or {}
                names.update([ref["name"]] if "name" in ref else [])
            for source in container.get("envFrom") or []:
                names.update([source["secretRef"]["name"]] if "secretRef" in source else [])
        for volume in pod.get("volumes") or []:
            names.update([volume["secret"]["secretName"]] if "secret" in volume else [])
    return frozenset(names)


def withheld(
    generated: Collection[str],
    live: Mapping[str, Body | None],
    *,
    in_use: Collection[str],
    regenerate: Collection[str] = (),
) -> list[str]:
    """The generated Secrets (``generated``: names the spec wants) missing while a live workload reads
    them (``in_use``), and not named in ``regenerate``: they are not created again."""
    return sorted(
        name for name in generated if live.get(name) is None and name in in_use and name not in regenerate
    )


def missing_message(names: Collection[str]) -> str:
    listed = ", ".join(sorted(names))
    return (
        f"generated Secret {listed} was deleted while the cluster's Pods use its value; not generating a "
        "new one they would not share: restore it with the value in use, or annotate the cluster "
        f"{REGENERATE_ANNOTATION}={','.join(sorted(names))} to generate a new value (the workers roll "
        "onto it; a managed Neo4j keeps the password it was initialised with)"
    )
