"""The registry of a cluster's children: one entry per kind of child, in the order they are applied.

Each :class:`ChildKind` says which API kind it is (``api/kinds.py``: path, RBAC verbs,
watched or not), every name it can have whatever the spec (what is observed, and
pruned once the spec no longer wants it), and how to build the objects the spec
wants now (the pure builders in ``desired/``). :func:`possible_keys` and
:func:`desired_children` are derived from :data:`CHILDREN`; nothing else lists children.

To add a child: write its pure builder, then add one entry here at its place in the
dependency order (config and data stores before the workers that use them). If its
kind is new to the operator, declare the kind in ``api/kinds.py`` and grant its
verbs in the chart's rules (``charts/resonance-operator/templates/_helpers.tpl``);
``tests/operator/test_chart.py`` fails until the chart does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from resonance_operator.api import kinds
from resonance_operator.api.kinds import Kind
from resonance_operator.api.observed import ChildKey
from resonance_operator.api.spec import ResonanceCluster
from resonance_operator.desired import (
    backup,
    datastores,
    features,
    keda,
    meta,
    revisions,
    secrets,
    settings,
    worker,
)

Body = Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Child:
    """A desired child. ``create_only`` children (generated Secrets) are never rewritten."""

    body: dict[str, Any]
    create_only: bool = False

    @property
    def key(self) -> ChildKey:
        return ChildKey.of(self.body)


@dataclasses.dataclass(frozen=True)
class FreshSecrets:
    """Random values for Secrets the operator generates; used only when the Secret is missing."""

    jwt: str
    neo4j_password: str
    api_key: str = ""
    redis_password: str = ""


@dataclasses.dataclass(frozen=True)
class Inputs:
    """What a builder may use besides the spec."""

    fresh: FreshSecrets
    topology: revisions.Topology | None = None
    """Canary and blue-green: the revisions that run (``rollout_pass``); ``None`` for rolling."""
    live_revisions: Mapping[str, Body] = dataclasses.field(default_factory=dict)
    secrets_hash: str | None = None
    """The digest of the Secrets the workers read (``desired/secrets.py``); ``None``: not known."""


Bodies = Sequence[dict[str, Any] | None]
Builder = Callable[[ResonanceCluster, Inputs], Bodies]
"""The objects the spec wants now (``None`` entries are left out)."""


@dataclasses.dataclass(frozen=True)
class ChildKind:
    """One kind of child: what it is, the names it can have, and how to build what the spec wants."""

    kind: Kind
    names: Callable[[ResonanceCluster], Sequence[str]]
    """Every name this child can have, whatever the spec: what is observed, and pruned when unwanted."""
    build: Builder
    create_only: bool = False
    """Generated once (a Secret with a random value) and never rewritten."""
    handed_over: Callable[[ResonanceCluster, Sequence[Kind]], Sequence[str]] = lambda _c, _s: ()
    """Names another controller owns now, given the served optional kinds (the worker HPA, once KEDA's
    ScaledObject scales the workers): neither built, observed nor pruned."""

    def keys(self, cluster: ResonanceCluster, served: Sequence[Kind] = ()) -> list[ChildKey]:
        others = set(self.handed_over(cluster, served))
        return [
            ChildKey(self.kind.api_version, self.kind.kind, name)
            for name in self.names(cluster)
            if name not in others
        ]

    def bodies(
        self, cluster: ResonanceCluster, inputs: Inputs, served: Sequence[Kind]
    ) -> list[dict[str, Any]]:
        """What the spec wants of this kind, without what is handed over."""
        others = set(self.handed_over(cluster, served))
        return [
            body
            for body in self.build(cluster, inputs)
            if body is not None and body["metadata"]["name"] not in others
        ]


def _worker_tier(
    rolling: Callable[[ResonanceCluster], dict[str, Any] | None],
    by_revision: Callable[[ResonanceCluster, revisions.Topology, Inputs], Bodies],
) -> Builder:
    """A worker-tier builder: the rolling object, or one per revision under a canary / blue-green topology."""

    def build(cluster: ResonanceCluster, inputs: Inputs) -> Bodies:
        if inputs.topology is None:
            return [rolling(cluster)]
        return by_revision(cluster, inputs.topology, inputs)

    return build


def _worker_deployments(cluster: ResonanceCluster, inputs: Inputs) -> Bodies:
    if inputs.topology is None:
        return [worker.deployment(cluster, secrets_hash=inputs.secrets_hash)]
    return revisions.deployments(cluster, inputs.topology, inputs.live_revisions, inputs.secrets_hash)


def _generated_jwt(cluster: ResonanceCluster, inputs: Inputs) -> Bodies:
    return [settings.jwt_secret(cluster, inputs.fresh.jwt)] if cluster.spec.auth.generates_secret else []


def _generated_neo4j_password(cluster: ResonanceCluster, inputs: Inputs) -> Bodies:
    managed = cluster.spec.neo4j.managed
    if managed is None or managed.auth_secret_ref is not None:
        return []
    return [settings.neo4j_auth_secret(cluster, inputs.fresh.neo4j_password)]


def _generated_api_key(cluster: ResonanceCluster, inputs: Inputs) -> Bodies:
    return (
        [settings.api_key_secret(cluster, inputs.fresh.api_key)] if settings.uses_drain_api(cluster) else []
    )


def _hpa_handed_to_keda(cluster: ResonanceCluster, served: Sequence[Kind]) -> list[str]:
    """The worker HPA is KEDA's while its ScaledObject scales on connections: the operator neither
    applies nor prunes it (KEDA takes it over: ``transfer-hpa-ownership``), so the two never fight."""
    return [worker.name(cluster)] if kinds.SCALED_OBJECT in served and keda.by_connections(cluster) else []


def _generated_redis_password(cluster: ResonanceCluster, inputs: Inputs) -> Bodies:
    managed = cluster.spec.redis.managed
    if cluster.spec.redis.external is not None or managed is None or not managed.password.generate:
        return []
    return [settings.redis_auth_secret(cluster, inputs.fresh.redis_password)]


def _named(*names: Callable[[ResonanceCluster], str]) -> Callable[[ResonanceCluster], list[str]]:
    """The names a child can have, each from the cluster."""
    return lambda cluster: [name(cluster) for name in names]


def _one(builder: Callable[[ResonanceCluster], dict[str, Any] | None]) -> Builder:
    """A child of which the spec wants one object (or none: the builder answers ``None``)."""
    return lambda cluster, _: [builder(cluster)]


CHILDREN: tuple[ChildKind, ...] = (
    ChildKind(kinds.CONFIG_MAP, _named(settings.settings_configmap_name), _one(settings.settings_configmap)),
    ChildKind(kinds.CONFIG_MAP, _named(features.configmap_name), _one(features.configmap)),
    ChildKind(kinds.SECRET, _named(settings.jwt_secret_name), _generated_jwt, create_only=True),
    ChildKind(
        kinds.SECRET, _named(settings.neo4j_auth_secret_name), _generated_neo4j_password, create_only=True
    ),
    ChildKind(kinds.SECRET, _named(settings.api_key_secret_name), _generated_api_key, create_only=True),
    ChildKind(
        kinds.SECRET, _named(settings.redis_auth_secret_name), _generated_redis_password, create_only=True
    ),
    ChildKind(kinds.SERVICE, _named(settings.redis_service_name), _one(datastores.redis_service)),
    ChildKind(
        kinds.SERVICE, _named(settings.redis_sentinel_service_name), _one(datastores.redis_sentinel_service)
    ),
    ChildKind(
        kinds.STATEFUL_SET,
        _named(lambda c: meta.child_name(c, meta.REDIS)),
        _one(datastores.redis_stateful_set),
    ),
    ChildKind(
        kinds.POD_DISRUPTION_BUDGET,
        _named(lambda c: meta.child_name(c, meta.REDIS)),
        _one(datastores.redis_pod_disruption_budget),
    ),
    ChildKind(kinds.SERVICE, _named(settings.neo4j_service_name), _one(datastores.neo4j_service)),
    ChildKind(
        kinds.STATEFUL_SET,
        _named(lambda c: meta.child_name(c, meta.NEO4J)),
        _one(datastores.neo4j_stateful_set),
    ),
    ChildKind(
        kinds.NETWORK_POLICY,
        _named(lambda c: meta.child_name(c, "datastores")),
        _one(datastores.network_policy),
    ),
    # The worker tier. Revision Deployments are named by revision and listed by label instead.
    ChildKind(
        kinds.DEPLOYMENT,
        _named(worker.name),
        _worker_deployments,
    ),
    ChildKind(
        kinds.SERVICE,
        _named(
            worker.name,
            lambda c: revisions.track_name(c, revisions.CANARY),
            lambda c: revisions.track_name(c, revisions.PREVIEW),
        ),
        _worker_tier(worker.service, lambda c, t, _: revisions.services(c, t)),
    ),
    ChildKind(
        kinds.INGRESS,
        _named(lambda c: c.name, revisions.canary_ingress_name),
        _worker_tier(worker.ingress, lambda c, t, _: revisions.ingresses(c, t)),
    ),
    ChildKind(
        kinds.HTTP_ROUTE,
        _named(worker.name),
        _worker_tier(lambda _: None, lambda c, t, _: revisions.routes(c, t)),
    ),
    ChildKind(
        kinds.HORIZONTAL_POD_AUTOSCALER,
        _named(worker.name, lambda c: revisions.track_name(c, revisions.CANARY)),
        _worker_tier(worker.horizontal_pod_autoscaler, lambda c, t, _: revisions.autoscalers(c, t)),
        handed_over=_hpa_handed_to_keda,
    ),
    ChildKind(
        kinds.SCALED_OBJECT,
        _named(worker.name),
        _worker_tier(keda.scaled_object, lambda c, t, _: revisions.scaled_objects(c, t)),
    ),
    ChildKind(kinds.POD_DISRUPTION_BUDGET, _named(worker.name), _one(worker.pod_disruption_budget)),
    # After the ConfigMap and Secrets it reads; its Jobs run on their own schedule.
    ChildKind(kinds.CRON_JOB, _named(backup.name), _one(backup.cron_job)),
    ChildKind(
        kinds.SERVICE_MONITOR,
        _named(worker.name),
        _one(lambda c: worker.service_monitor(c, crd_present=True)),
    ),
    ChildKind(kinds.POD_MONITOR, _named(worker.name), _one(worker.pod_monitor)),
)


def _served(
    *, service_monitor_crd: bool, gateway_crd: bool, pod_monitor_crd: bool, keda_crd: bool = False
) -> tuple[Kind, ...]:
    """The optional kinds this cluster serves (their CRDs are installed)."""
    flags = (
        (kinds.SERVICE_MONITOR, service_monitor_crd),
        (kinds.HTTP_ROUTE, gateway_crd),
        (kinds.POD_MONITOR, pod_monitor_crd),
        (kinds.SCALED_OBJECT, keda_crd),
    )
    return tuple(kind for kind, served in flags if served)


def _present(child: ChildKind, served: Sequence[Kind]) -> bool:
    return not child.kind.optional or child.kind in served


def possible_keys(
    cluster: ResonanceCluster,
    *,
    service_monitor_crd: bool,
    gateway_crd: bool = False,
    pod_monitor_crd: bool = False,
    keda_crd: bool = False,
) -> list[ChildKey]:
    """Every child this cluster could have, whatever its spec: what to observe and prune."""
    served = _served(
        service_monitor_crd=service_monitor_crd,
        gateway_crd=gateway_crd,
        pod_monitor_crd=pod_monitor_crd,
        keda_crd=keda_crd,
    )
    return [key for child in CHILDREN if _present(child, served) for key in child.keys(cluster, served)]


def desired_children(
    cluster: ResonanceCluster,
    *,
    service_monitor_crd: bool,
    fresh: FreshSecrets,
    topology: revisions.Topology | None = None,
    live_revisions: Mapping[str, Body] | None = None,
    gateway_crd: bool = False,
    pod_monitor_crd: bool = False,
    live_secrets: Mapping[str, Body | None] | None = None,
    withhold: Collection[str] = (),
    held_secrets_hash: str | None = None,
    keda_crd: bool = False,
) -> list[Child]:
    """The children the spec wants now, in dependency order (the order of :data:`CHILDREN`).

    With a ``topology`` (canary and blue-green) the worker tier is one Deployment per
    revision and its Services, Ingresses, route and HPAs (``revisions``); else the one
    rolling Deployment. ``live_secrets`` (every Secret observed, by name) gives the rolling
    workers their Secrets' digest; generated Secrets named in ``withhold`` are left out.
    """
    served = _served(
        service_monitor_crd=service_monitor_crd,
        gateway_crd=gateway_crd,
        pod_monitor_crd=pod_monitor_crd,
        keda_crd=keda_crd,
    )
    digest = secrets_hash(cluster, fresh, live_secrets, withhold=withhold, held=held_secrets_hash)
    inputs = Inputs(fresh, topology, live_revisions or {}, digest)
    return [
        Child(body, create_only=child.create_only)
        for child in CHILDREN
        if _present(child, served)
        for body in child.bodies(cluster, inputs, served)
        if not (child.create_only and ChildKey.of(body).name in withhold)
    ]


def secrets_hash(
    cluster: ResonanceCluster,
    fresh: FreshSecrets,
    live_secrets: Mapping[str, Body | None] | None,
    *,
    withhold: Collection[str] = (),
    held: str | None = None,
) -> str | None:
    """The workers' Secrets digest: of what lives, else of what is about to be created (``create_only``);
    ``held`` (the live workers' own) while a Secret is withheld; ``None`` without ``live_secrets``."""
    if withhold:
        return held
    if live_secrets is None:
        return None
    generated = generated_secrets(cluster, fresh)
    effective: dict[str, Body | None] = dict(generated)
    effective.update({name: body for name, body in live_secrets.items() if body is not None})
    return secrets.digest(cluster, effective, generated)


def generated_secrets(cluster: ResonanceCluster, fresh: FreshSecrets) -> dict[str, dict[str, Any]]:
    """The Secrets the operator generates for this spec, by name (with ``fresh`` values)."""
    inputs = Inputs(fresh)
    return {
        ChildKey.of(body).name: body
        for child in CHILDREN
        if child.create_only
        for body in child.build(cluster, inputs)
        if body is not None
    }
