"""Pydantic models of the ``ResonanceCluster`` spec and status.

The CRD's OpenAPI schema (``crds/``) is what the API server enforces; these
models mirror it so the operator reads a typed object, and carry the same
defaults so a body that skipped server defaulting (a unit test, an old object)
still parses to the same meaning. ``tests/operator/api`` checks the two agree.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

GROUP = "resonance.liminal.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ResonanceCluster"
PLURAL = "resonanceclusters"


class Model(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields are an error."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
        extra="forbid",
        coerce_numbers_to_str=True,
    )


class Resources(Model):
    requests: dict[str, str] = Field(default_factory=dict)
    limits: dict[str, str] = Field(default_factory=dict)


class SecretKeyRef(Model):
    name: str
    key: str


class PasswordSecretRef(SecretKeyRef):
    key: str = "password"


class JwtSecretRef(SecretKeyRef):
    key: str = "secret"


class Scheduling(Model):
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)


class WorkerSettingsSpec(Model):
    log_level: str = "INFO"
    log_json: bool = True
    redis_prefix: str = "resonance"
    extra: dict[str, str] = Field(default_factory=dict)


class Autoscaling(Model):
    enabled: bool = False
    min_replicas: int = 2
    max_replicas: int = 10
    target_cpu_utilization_percentage: int = Field(70, alias="targetCPUUtilizationPercentage")
    target_connections_per_pod: int | None = None
    prometheus_address: str = "http://prometheus-operated.monitoring.svc:9090"
    """Where KEDA's prometheus trigger reads the workers' connections (``desired/keda.py``)."""


class WorkerLimits(Model):
    """``spec.worker.limits``: the workers' connection and rate limits (``RESONANCE_LIMITS__*``)."""

    connections_per_pod: int | None = None
    """None: derived (``desired.sizing``)."""
    connections_per_address: int = 100
    connections_per_user: int = 20
    message_bytes: int = 65536
    commands_per_second: int = 50
    command_burst: int = 100
    publishes_per_second: int = 20
    publish_burst: int = 40


DEFAULT_TRUSTED_PROXIES = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "127.0.0.1/32",
    "fc00::/7",
    "::1/128",
)
"""The private, shared (RFC 6598) and loopback networks an in-cluster ingress connects from."""


class ClientAddress(Model):
    """``spec.worker.clientAddress``: where a connection's address comes from behind a proxy."""

    header: str = "X-Forwarded-For"
    trusted_proxies: list[str] = Field(default_factory=lambda: list(DEFAULT_TRUSTED_PROXIES))
    proxy_protocol: bool = False
    """A PROXY protocol header (v1 or v2) is read from connections of trusted proxies."""


class TopologySpread(Model):
    enabled: bool = True
    max_skew: int = 1
    topology_key: str = "kubernetes.io/hostname"
    when_unsatisfiable: str = "ScheduleAnyway"


class WorkerSpec(Model):
    image: str
    image_pull_policy: str = "IfNotPresent"
    replicas: int = 2
    port: int = 8000
    allowed_origins: list[str] = Field(default_factory=list)
    """Browser origins besides the worker's own (RESONANCE_ALLOWED_ORIGINS); native apps send none."""
    resources: Resources = Field(default_factory=Resources)
    settings: WorkerSettingsSpec = Field(default_factory=WorkerSettingsSpec)
    env: list[dict[str, Any]] = Field(default_factory=list)
    termination_grace_period_seconds: int = 60
    autoscaling: Autoscaling = Field(default_factory=Autoscaling)
    limits: WorkerLimits = Field(default_factory=WorkerLimits)
    client_address: ClientAddress = Field(default_factory=ClientAddress)
    topology_spread: TopologySpread = Field(default_factory=TopologySpread)
    scheduling: Scheduling = Field(default_factory=Scheduling)


class Persistence(Model):
    enabled: bool = True
    size: str = "1Gi"
    storage_class_name: str | None = None


class SentinelSpec(Model):
    """Redis Sentinel beside each managed Redis pod: it watches the primary and promotes a replica."""

    enabled: bool = False
    quorum: int = 2
    down_after_milliseconds: int = 5000


class RedisPasswordSpec(Model):
    """A password for managed Redis: from ``secret_ref``, or generated once into a Secret."""

    generate: bool = False
    secret_ref: SecretKeyRef | None = None

    @property
    def enabled(self) -> bool:
        return self.generate or self.secret_ref is not None


class ManagedRedisTls(Model):
    """TLS for managed Redis and its Sentinels: the server certificate from a Secret of type
    ``kubernetes.io/tls`` with ``tls.crt``, ``tls.key`` and ``ca.crt`` (what cert-manager writes)."""

    secret_name: str


class CaSecretRef(SecretKeyRef):
    key: str = "ca.crt"


class ExternalRedisTls(Model):
    """TLS to an external Redis: the CA to verify it (else the system CAs), an optional client
    certificate (a ``kubernetes.io/tls`` Secret), verification on by default."""

    ca_secret_ref: CaSecretRef | None = None
    client_secret_name: str | None = None
    verify: bool = True
    sentinels: bool = True
    """The external Sentinels speak TLS too."""


class ManagedRedis(Model):
    image: str = "redis:7.4-alpine"
    persistence: Persistence = Field(default_factory=Persistence)
    resources: Resources = Field(default_factory=Resources)
    scheduling: Scheduling = Field(default_factory=Scheduling)
    replicas: int = 1
    """Redis pods: one primary and ``replicas - 1`` replicas (with Sentinel, at least 3)."""
    sentinel: SentinelSpec = Field(default_factory=SentinelSpec)
    password: RedisPasswordSpec = Field(default_factory=RedisPasswordSpec)
    maxmemory: str | None = None
    """``maxmemory`` of each Redis (e.g. ``512mb``), with ``noeviction``: a full Redis refuses writes
    (the worker counts them as pain and in ``resonance_redis_oom_total``) and never drops a stream."""
    tls: ManagedRedisTls | None = None


class ExternalSentinel(Model):
    """An existing Sentinel deployment: workers ask it for the primary of ``service``."""

    addresses: list[str]
    service: str = "resonance"


class ExternalCluster(Model):
    """An existing Redis Cluster (Redis 7): workers find it from its seed ``nodes``."""

    nodes: list[str]


class ExternalRedis(Model):
    url: str | None = None
    url_secret_ref: SecretKeyRef | None = None
    sentinel: ExternalSentinel | None = None
    cluster: ExternalCluster | None = None
    tls: ExternalRedisTls | None = None


class RedisSpec(Model):
    managed: ManagedRedis | None = None
    external: ExternalRedis | None = None
    durability: str = "none"
    """``none`` | ``replica`` (a publication is acknowledged once a replica has it): the workers'
    RESONANCE_REDIS_DURABILITY; what each loses is in docs/reliability.md."""

    @property
    def is_managed(self) -> bool:
        return self.external is None


class BackupPvc(Model):
    claim_name: str


class BackupS3(Model):
    endpoint: str
    bucket: str
    prefix: str | None = None
    region: str = "us-east-1"
    credentials_secret_ref: str
    """A Secret with ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY``."""


class BackupDestination(Model):
    pvc: BackupPvc | None = None
    s3: BackupS3 | None = None


class BackupSpec(Model):
    """Scheduled backups of Redis (RDB) and the event log (a CronJob running the worker image's
    ``python -m resonance_worker.backup backup``); restore: docs/operator.md."""

    schedule: str = "0 3 * * *"
    retention: str = "7d"
    destination: BackupDestination
    suspend: bool = False


class ManagedNeo4j(Model):
    image: str = "neo4j:5.26-community"
    persistence: Persistence = Field(default_factory=lambda: Persistence(size="5Gi"))
    resources: Resources = Field(default_factory=Resources)
    auth_secret_ref: PasswordSecretRef | None = None
    scheduling: Scheduling = Field(default_factory=Scheduling)


class ExternalNeo4j(Model):
    uri: str
    username: str = "neo4j"
    password_secret_ref: PasswordSecretRef


class Neo4jMode(enum.StrEnum):
    MANAGED = "managed"
    EXTERNAL = "external"
    DISABLED = "disabled"


class Neo4jSpec(Model):
    managed: ManagedNeo4j | None = None
    external: ExternalNeo4j | None = None

    @property
    def mode(self) -> Neo4jMode:
        if self.managed is not None:
            return Neo4jMode.MANAGED
        if self.external is not None:
            return Neo4jMode.EXTERNAL
        return Neo4jMode.DISABLED


class AuthSpec(Model):
    jwt_secret_ref: JwtSecretRef | None = None
    jwks_url: str | None = None

    @property
    def generates_secret(self) -> bool:
        return self.jwt_secret_ref is None and self.jwks_url is None


class IngressTLS(Model):
    secret_name: str


class IngressSpec(Model):
    enabled: bool = False
    class_name: str | None = None
    host: str | None = None
    path: str = "/"
    tls: IngressTLS | None = None
    annotations: dict[str, str] = Field(default_factory=dict)


class RolloutStrategy(enum.StrEnum):
    ROLLING = "rolling"
    CANARY = "canary"
    BLUE_GREEN = "blueGreen"


class RollingOptions(Model):
    max_surge: str = "25%"
    max_unavailable: str = "0"


class CanaryPause(Model):
    duration_seconds: int | None = None


class CanaryStep(Model):
    set_weight: int | None = None
    pause: CanaryPause | None = None
    analysis: dict[str, Any] | None = None


class CanaryOptions(Model):
    steps: list[CanaryStep] = Field(default_factory=list)


class BlueGreenOptions(Model):
    auto_promotion_enabled: bool = False
    auto_promotion_seconds: int | None = None
    scale_down_delay_seconds: int = 30
    preview_replicas: int | None = None
    pre_promotion_analysis: dict[str, Any] | None = None
    """Analysis of the preview against stable before promotion (same schema as a canary step's)."""


class DrainOptions(Model):
    """How the Pods of a revision that lost hand their clients over (sent to each ``POST /drain``)."""

    max_drain_seconds: int = 300
    """Deadline: a draining Pod goes after this long, whatever remains."""
    reconnects_per_second: int = 200
    """Cluster-wide budget of closes per second, split between the draining Pods."""
    window_seconds: int = 30
    """Closes are spread over at least this long, so clients do not reconnect in lock-step."""
    remaining_threshold: int = 0
    """A draining Pod may go once at most this many sockets remain."""


class GatewayParentRef(Model):
    name: str
    namespace: str | None = None
    section_name: str | None = None


class GatewayRoute(Model):
    """Steer weights with a Gateway API ``HTTPRoute`` (needs its CRD installed)."""

    parent_refs: list[GatewayParentRef]
    hostnames: list[str] = Field(default_factory=list)
    path: str = "/"


class RolloutSpec(Model):
    strategy: RolloutStrategy = RolloutStrategy.ROLLING
    rolling: RollingOptions = Field(default_factory=RollingOptions)
    canary: CanaryOptions | None = None
    blue_green: BlueGreenOptions | None = None
    drain: DrainOptions = Field(default_factory=DrainOptions)
    gateway_route: GatewayRoute | None = None
    metrics_path: str = "/metrics"
    """Where the workers serve Prometheus metrics (scraped for analysis and connection counts)."""


class ServiceMonitorSpec(Model):
    enabled: bool = False
    interval: str = "30s"
    labels: dict[str, str] = Field(default_factory=dict)


class PodMonitorSpec(Model):
    """A prometheus-operator PodMonitor for the worker Pods of every revision, each scraped once."""

    enabled: bool = False
    interval: str = "30s"
    labels: dict[str, str] = Field(default_factory=dict)


class TracingSpec(Model):
    """OpenTelemetry traces of the workers, exported over OTLP/HTTP (``RESONANCE_TRACING__*``)."""

    enabled: bool = False
    endpoint: str = ""
    """The collector's OTLP/HTTP base URL (``/v1/traces`` is appended), e.g. ``http://otel-collector:4318``."""
    sample_ratio: float = Field(0.01, ge=0.0, le=1.0)
    """Share of new traces recorded; a client's or caller's ``traceparent`` decision is followed."""


class SentrySpec(Model):
    """Error reports to Sentry (``RESONANCE_SENTRY__*``); the DSN comes from a Secret."""

    dsn_secret_ref: SecretKeyRef | None = None
    environment: str = ""
    sample_rate: float = Field(1.0, ge=0.0, le=1.0)


class ObservabilitySpec(Model):
    service_monitor: ServiceMonitorSpec = Field(default_factory=ServiceMonitorSpec)
    pod_monitor: PodMonitorSpec = Field(default_factory=PodMonitorSpec)
    tracing: TracingSpec = Field(default_factory=TracingSpec)
    sentry: SentrySpec = Field(default_factory=SentrySpec)


class PodDisruptionBudgetSpec(Model):
    enabled: bool = True
    max_unavailable: str | None = None
    min_available: str | None = None


class NetworkPolicySpec(Model):
    enabled: bool = True


class FeatureVariant(Model):
    name: str
    weight: int


class FeatureTargeting(Model):
    users: list[str] | None = None
    tenants: list[str] | None = None
    platforms: list[str] | None = None
    claims: dict[str, list[str]] = Field(default_factory=dict)


class FeatureGates(Model):
    rpc: list[str] = Field(default_factory=list)
    namespaces: list[str] = Field(default_factory=list)


class FeatureFlag(Model):
    """One flag of ``spec.features``; the workers read the same shape
    (``resonance_worker.domain.features``), rendered by ``desired/features.py``."""

    name: str
    description: str = ""
    enabled: bool = True
    rollout: int = 100
    salt: str = ""
    variants: list[FeatureVariant] | None = None
    targeting: FeatureTargeting | None = None
    gates: FeatureGates | None = None
    outcomes: list[str] = Field(default_factory=list)


class ClusterSpec(Model):
    worker: WorkerSpec
    redis: RedisSpec = Field(default_factory=lambda: RedisSpec(managed=ManagedRedis()))
    neo4j: Neo4jSpec = Field(default_factory=Neo4jSpec, alias="neo4j")
    auth: AuthSpec = Field(default_factory=AuthSpec)
    ingress: IngressSpec = Field(default_factory=IngressSpec)
    rollout: RolloutSpec = Field(default_factory=RolloutSpec)
    observability: ObservabilitySpec = Field(default_factory=ObservabilitySpec)
    pod_disruption_budget: PodDisruptionBudgetSpec = Field(default_factory=PodDisruptionBudgetSpec)
    network_policy: NetworkPolicySpec = Field(default_factory=NetworkPolicySpec)
    features: list[FeatureFlag] = Field(default_factory=list)
    backup: BackupSpec | None = None


class ObjectMeta(BaseModel):
    """The part of ``metadata`` the operator needs (it keeps any other field)."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    name: str
    namespace: str
    uid: str = ""
    generation: int = 0
    resource_version: str = Field("", alias="resourceVersion")
    """The version this body was read at: the status is written only over that version."""
    annotations: dict[str, str] = Field(default_factory=dict)

    @field_validator("annotations", mode="before")
    @classmethod
    def _no_annotations(cls, value: Any) -> Any:
        return {} if value is None else value


class ResonanceCluster(BaseModel):
    """A parsed ``ResonanceCluster``: metadata, typed spec, and the raw status as found."""

    model_config = ConfigDict(frozen=True)

    metadata: ObjectMeta
    spec: ClusterSpec
    status: dict[str, Any] = Field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace


def parse(body: Mapping[str, Any]) -> ResonanceCluster:
    """Parse a ``ResonanceCluster`` body as the API server returns it.

    Raises ``pydantic.ValidationError`` for a body the CRD schema would have refused.
    """
    return ResonanceCluster.model_validate(
        {
            "metadata": body.get("metadata", {}),
            "spec": body.get("spec", {}),
            "status": body.get("status") or {},
        }
    )
