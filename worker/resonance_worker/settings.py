"""Worker settings, read once at start-up from ``RESONANCE_*`` variables.

Every field is documented in ``docs/settings.md`` (generated from this model;
a test keeps it in sync, and the operator generates these variables for each
pod). Nested groups use ``__``, for example
``RESONANCE_LIMITS__MAX_CONNECTIONS=100``; ``RESONANCE_NAMESPACES`` is JSON.
"""

from __future__ import annotations

import enum
import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from resonance_worker.domain.channels import NamespaceOptions, default_namespaces
from resonance_worker.domain.netpolicy import parse_networks
from resonance_worker.domain.origins import check_entry
from resonance_worker.living_settings import LivingSettings, Neo4jSettings


class EngineKind(enum.StrEnum):
    """Where channel state lives: this process only, or Redis shared by many pods."""

    MEMORY = "memory"
    REDIS = "redis"


class RedisMode(enum.StrEnum):
    """How the redis engine finds Redis (docs/reliability.md)."""

    STANDALONE = "standalone"
    SENTINEL = "sentinel"
    CLUSTER = "cluster"


class Durability(enum.StrEnum):
    """When a publication is acknowledged (docs/reliability.md says what each can lose)."""

    NONE = "none"
    """On the primary's answer: a primary crash loses what its replicas had not received yet."""
    REPLICA = "replica"
    """After ``WAIT 1``: at least one replica has the publication; only then is it delivered."""


class WebSocketServer(enum.StrEnum):
    """Which shell serves ``/connection/websocket`` (``transport/wsnative.py``, ``transport/ws.py``)."""

    NATIVE = "native"
    AIOHTTP = "aiohttp"


class LimitSettings(BaseModel):
    """Limits; 0 means unlimited. Each violation has a documented code (docs/protocol.md)."""

    model_config = ConfigDict(frozen=True)

    max_connections: int = Field(100, ge=0, description="Open connections per worker (over it: HTTP 503).")
    max_connections_per_ip: int = Field(
        10,
        ge=0,
        description="Open connections per client address across every worker sharing the engine (the "
        "redis engine counts them in Redis; over it: close 3504).",
    )
    max_connections_per_user: int = Field(
        20,
        ge=0,
        description="Open connections per user across every worker sharing the engine (over it: close 3504).",
    )
    slot_ttl_seconds: float = Field(
        60.0,
        gt=0,
        description="A connection's cluster-wide address and user slots expire unless its worker refreshes "
        "them (every third of this): a worker that dies frees its clients' slots within it.",
    )
    max_message_bytes: int = Field(
        65536,
        ge=1024,
        description="Largest inbound WebSocket message (over it: close 1009). Compression is never "
        "negotiated, so this is also the decompressed limit.",
    )
    command_rate: float = Field(
        50.0, ge=0, description="Commands per second per connection, sustained (token bucket)."
    )
    command_burst: int = Field(100, ge=1, description="Burst of commands per connection.")
    max_rate_violations: int = Field(
        100, ge=1, description="Rate-limited commands in a row before closing with 3013."
    )
    user_publish_rate: float = Field(
        20.0, ge=0, description="Publishes per second per user across the whole cluster (engine bucket)."
    )
    user_publish_burst: int = Field(40, ge=1, description="Burst of publishes per user across the cluster.")
    max_channels: int = Field(128, ge=0, description="Subscriptions per connection (over it: error 106).")
    queue_max_bytes: int = Field(
        1 << 20, ge=0, description="Bytes waiting to be written to a connection before it is slow (3008)."
    )
    history_max_limit: int = Field(1000, ge=0, description="Most publications one history call returns.")


class TracingSettings(BaseModel):
    """OpenTelemetry traces, exported over OTLP/HTTP (see docs/operate.md)."""

    model_config = ConfigDict(frozen=True)

    enabled: bool = Field(
        False, description="Export spans (connect, commands, engine, RPCs, event log, graph)."
    )
    endpoint: str = Field(
        "http://127.0.0.1:4318",
        description="OTLP/HTTP receiver, e.g. an OpenTelemetry Collector (`/v1/traces` is appended).",
    )
    sample_ratio: float = Field(
        0.01, ge=0, le=1, description="Share of new traces kept; a remote parent's decision is followed."
    )
    service_name: str = Field("resonance-worker", description="The `service.name` of the spans.")


class SentrySettings(BaseModel):
    """Error tracking with the Sentry SDK; tokens, samples and reports are scrubbed before sending."""

    model_config = ConfigDict(frozen=True)

    dsn: SecretStr | None = Field(None, description="Sentry DSN; unset: error tracking off.")
    environment: str = Field("", description="The events' environment (e.g. `production`).")
    sample_rate: float = Field(1.0, ge=0, le=1, description="Share of error events sent.")


class DataSettings(BaseModel):
    """Data rights for biometric and emotional data (docs/data-rights.md)."""

    model_config = ConfigDict(frozen=True)

    consent_required: bool = Field(
        True,
        description="A token without a `consent` claim stores nothing biometric, emotional or in the graph "
        "(false: a missing claim is consent to every kind; for development).",
    )
    retention_biometrics_seconds: float = Field(
        0.0,
        ge=0,
        description="Biometric readings older than this are removed from channel history (0: no limit).",
    )
    retention_emotions_seconds: float = Field(
        0.0,
        ge=0,
        description="Emotional states and questions older than this are removed from room history, the event "
        "log and the graph (0: no limit).",
    )
    retention_graph_seconds: float = Field(
        0.0,
        ge=0,
        description="A person's graph nodes and relations older than this are removed (0: no limit).",
    )
    retention_check_seconds: float = Field(
        300.0, gt=0, description="How often each worker removes what is past its retention."
    )


class WorkerSettings(BaseSettings):
    """All worker settings. Build once in ``main`` and pass down; never a global."""

    model_config = SettingsConfigDict(
        env_prefix="RESONANCE_",
        env_nested_delimiter="__",
        extra="ignore",
        frozen=True,
    )

    host: str = Field("127.0.0.1", description="Address the HTTP and WebSocket server binds to.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port; 0 picks a free one (tests).")
    engine: EngineKind = Field(EngineKind.MEMORY, description="`memory` for one node, `redis` for many.")
    processes: int = Field(
        1,
        ge=1,
        le=64,
        description="Worker processes sharing the port (SO_REUSEPORT), e.g. one per core; over 1 needs "
        "the redis engine (it is what connects them) and a fixed port.",
    )
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis URL used by the redis engine.")
    redis_mode: RedisMode = Field(
        RedisMode.STANDALONE,
        description="`standalone`: `redis_url`; `sentinel`: the primary named by `redis_sentinels` for "
        "`redis_sentinel_service` (password, database and TLS still from `redis_url`); `cluster`: a Redis "
        "Cluster found from `redis_cluster_nodes` (password and TLS still from `redis_url`).",
    )
    redis_password: SecretStr | None = Field(
        None,
        description="Redis password, when `redis_url` has none (the operator sets it from the managed "
        "Redis's Secret); it also authenticates to the nodes Sentinel names.",
    )
    redis_sentinels: list[str] = Field(
        default_factory=list,
        description="Sentinel addresses as `host:port` (JSON list), for `sentinel` mode.",
    )
    redis_cluster_nodes: list[str] = Field(
        default_factory=list,
        description="Seed nodes of a Redis Cluster as `host:port` (JSON list), for `cluster` mode: the "
        "client learns the other nodes and the slot map from any of them.",
    )
    redis_sentinel_service: str = Field(
        "resonance", description="The Sentinel service (master group) name of the primary."
    )
    redis_sentinel_password: SecretStr | None = Field(
        None, description="Password of the Sentinels themselves, if they require one."
    )
    redis_durability: Durability = Field(
        Durability.NONE,
        description="`none`: a publication is acknowledged on the primary's answer; `replica`: only after "
        "`WAIT 1` confirmed a replica has it (then delivered). What each loses: docs/reliability.md.",
    )
    redis_replica_wait_ms: int = Field(
        500,
        ge=1,
        description="How long `replica` durability waits for a replica before refusing the publish.",
    )
    redis_failover_retry_seconds: float = Field(
        10.0,
        ge=0,
        description="How long idempotent Redis calls are retried (jittered backoff) across a broken "
        "connection or a failover; a publish is retried only with an idempotency key (0: never).",
    )
    redis_circuit_failures: int = Field(
        5,
        ge=0,
        description="Redis failures in a row that open its circuit: calls then fail at once (0: never).",
    )
    redis_circuit_reset_seconds: float = Field(
        2.0, gt=0, description="How long an open Redis circuit waits before letting one trial call through."
    )
    degraded_local_fanout: bool = Field(
        False,
        description="Degraded mode: while Redis is away, publications reach this pod's own clients only "
        "(acknowledged at offset 0: not stored, not recoverable); see docs/reliability.md.",
    )
    redis_prefix: str = Field("resonance", description="Key prefix, so several clusters can share a Redis.")
    redis_tls: bool = Field(
        False,
        description="Reach Redis over TLS (as a `rediss://` `redis_url` does), in every mode and for every "
        "client (engine, event log, person documents, backups); verified against `redis_tls_ca_file` or the "
        "system CAs. A TLS failure is an error, never a fallback to plain text.",
    )
    redis_tls_ca_file: str | None = Field(
        None, description="PEM file of the CA(s) that sign Redis's certificate (unset: the system CAs)."
    )
    redis_tls_cert_file: str | None = Field(
        None, description="PEM client certificate, for a Redis that asks for one (`tls-auth-clients yes`)."
    )
    redis_tls_key_file: str | None = Field(None, description="PEM key of `redis_tls_cert_file`.")
    redis_tls_verify: bool = Field(
        True,
        description="Verify Redis's certificate and host name. Off lets anyone on the path read and change "
        "the data: only for testing.",
    )
    redis_sentinel_tls: bool = Field(
        True,
        description="With TLS on: reach the Sentinels over TLS too (false: plain-text Sentinels that "
        "name TLS data nodes).",
    )
    jwt_secret: SecretStr | None = Field(
        None, description="HS256 secret for connection tokens. Unset: a random one is generated at start."
    )
    jwt_rsa_public_key: str | None = Field(None, description="PEM RSA public key: accept RS256 tokens.")
    jwt_ec_public_key: str | None = Field(None, description="PEM EC public key: accept ES256 tokens.")
    jwt_jwks_url: str | None = Field(None, description="JWKS URL: accept tokens signed by its keys (by kid).")
    jwks_refresh_seconds: float = Field(300.0, gt=0, description="How often the JWKS URL is fetched again.")
    jwt_audience: str | None = Field(None, description="Required `aud` claim, if set.")
    jwt_issuer: str | None = Field(None, description="Required `iss` claim, if set.")
    client_ip_header: str | None = Field(
        None,
        description="Header holding the client address behind a trusted ingress (e.g. `X-Forwarded-For`), "
        "believed only from `trusted_proxies`; unset: the TCP peer. Per-IP limits and IP lists use it.",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="CIDRs of the proxies whose `client_ip_header` is believed (JSON list). The client "
        "address is the rightmost header entry outside these networks; a peer outside them is the client.",
    )
    proxy_protocol: bool = Field(
        False,
        description="Read a PROXY protocol header (v1 or v2) at the start of connections from "
        "`trusted_proxies` (a TCP load balancer with proxy_protocol on) and count the client address it "
        "names; a bad header closes the connection. Connections from other peers are never read for one.",
    )
    websocket_server: WebSocketServer = Field(
        WebSocketServer.NATIVE,
        description="Which shell serves `/connection/websocket`: `native` reads the upgrade itself and keeps "
        "no task or request per idle connection (every other request, and any upgrade it does not serve, "
        "goes to aiohttp); `aiohttp` is aiohttp's WebSocket handler, the reference. Same checks, codes "
        "and protocol either way (docs/benchmarks.md for the cost).",
    )
    ip_allow: list[str] = Field(
        default_factory=list,
        description="CIDRs that may connect (JSON list); empty: everyone not denied. Refused: HTTP 403.",
    )
    ip_deny: list[str] = Field(
        default_factory=list, description="CIDRs that may not connect (JSON list); wins over `ip_allow`."
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Browser origins allowed besides the worker's own (JSON list of `scheme://host[:port]`, "
        "`https://*.example.com`, `null`, or `*` for any): they may open a WebSocket (another origin: "
        "HTTP 403; no `Origin`, as from native apps: allowed) and read `/thyroid/status`, `/health` and "
        "dev-mode `POST /token` (CORS).",
    )
    allow_anonymous: bool = Field(False, description="Accept connections without a token (user '').")
    dev_mode: bool = Field(False, description="Development mode: enables `POST /token`. Never in production.")
    api_key: SecretStr | None = Field(
        None, description="Key for the server API (`Authorization: apikey <key>`); unset: API disabled."
    )
    node_name: str = Field("", description="Name of this worker in logs and metrics; defaults to host:port.")
    console_dir: Path | None = Field(
        None,
        description="Directory of the built web console served at `/` (index.html, build.json, assets/); "
        "unset: the one inside the package (`make run` and the image build it; see docs/console.md).",
    )
    log_level: str = Field("INFO", description="Root log level.")
    log_json: bool = Field(True, description="Structured JSON logs (false: human-readable lines).")
    ping_interval_seconds: float = Field(25.0, ge=0, description="Server ping period (0: no pings).")
    pong_timeout_seconds: float = Field(8.0, ge=0, description="How long a pong may take (over it: 3012).")
    connect_timeout_seconds: float = Field(
        10.0, gt=0, description="Time to send a valid connect command (over it: close 3502)."
    )
    expired_close_delay_seconds: float = Field(
        25.0, ge=0, description="Grace after a token's `exp` to refresh before closing with 3005."
    )
    presence_ttl_seconds: float = Field(60.0, gt=0, description="Presence entries expire unless refreshed.")
    presence_update_seconds: float = Field(25.0, gt=0, description="How often presence is refreshed.")
    position_check_seconds: float = Field(
        20.0,
        ge=0,
        description="How often positioned subscriptions are checked against their stream's top; one "
        "still behind the top of the previous check gets insufficient state and recovers (0: off).",
    )
    idempotency_ttl_seconds: float = Field(
        300.0, gt=0, description="How long a publish idempotency key holds."
    )
    shutdown_drain_seconds: float = Field(
        5.0, ge=0, description="On SIGTERM, disconnects (code 3001) are spread over at least this window."
    )
    shutdown_drain_budget_per_second: int = Field(
        500,
        ge=1,
        description="On SIGTERM, at most this many disconnects per second (unless `POST /drain` already "
        "set a drain going: then it is followed).",
    )
    shutdown_drain_deadline_seconds: float = Field(
        25.0,
        gt=0,
        description="On SIGTERM, exit after this long whatever remains; keep it under the Pod's "
        "`terminationGracePeriodSeconds`.",
    )
    tenant_isolation: bool = Field(
        False,
        description="Partition channels by the token's `tenant` claim: `ns:<tenant>/name` is only for that "
        "tenant's connections (see docs/reliability.md).",
    )
    personal_channel: bool = Field(
        True, description="Subscribe each user server-side to `personal:#<user>` when that namespace exists."
    )
    namespaces: dict[str, NamespaceOptions] = Field(
        default_factory=default_namespaces, description="Channel namespaces and their options (JSON)."
    )
    default_namespace: NamespaceOptions = Field(
        default_factory=NamespaceOptions, description="Options of channels without a namespace (JSON)."
    )
    limits: LimitSettings = Field(default_factory=LimitSettings, description="Connection and rate limits.")
    living: LivingSettings = Field(
        default_factory=LivingSettings, description="The living core: thyroid, states, rooms, biometrics."
    )
    neo4j: Neo4jSettings = Field(
        default_factory=Neo4jSettings, description="The temporal graph (off by default)."
    )
    tracing: TracingSettings = Field(
        default_factory=TracingSettings, description="OpenTelemetry traces (off by default)."
    )
    sentry: SentrySettings = Field(
        default_factory=SentrySettings, description="Sentry error tracking (off by default)."
    )
    features_file: str | None = Field(
        None,
        description="The feature-flag file (JSON; the operator mounts it from a ConfigMap), re-read "
        "without a restart when it changes. None: no flags.",
    )
    features_poll_seconds: float = Field(
        1.0, gt=0, le=60, description="How often the feature-flag file is checked for a change."
    )
    data: DataSettings = Field(
        default_factory=DataSettings, description="Consent and retention of biometric and emotional data."
    )

    @property
    def worker_name(self) -> str:
        """This worker's name among its peers: ``node_name``, else ``host:port``."""
        return self.node_name or f"{self.host}:{self.port}"

    @model_validator(mode="after")
    def _redis_url_scheme(self) -> WorkerSettings:
        if self.engine is EngineKind.REDIS and not self.redis_url.startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise ValueError("redis_url must start with redis://, rediss:// or unix://")
        return self

    @model_validator(mode="after")
    def _redis_tls_files(self) -> WorkerSettings:
        if (self.redis_tls_cert_file is None) != (self.redis_tls_key_file is None):
            raise ValueError("redis_tls_cert_file and redis_tls_key_file go together (a client certificate)")
        given = [
            name
            for name in ("redis_tls_ca_file", "redis_tls_cert_file", "redis_tls_key_file")
            if getattr(self, name) is not None
        ]
        if given and not self.redis_tls_enabled:
            raise ValueError(f"{given[0]} needs redis_tls=true (or a rediss:// redis_url)")
        return self

    @property
    def redis_tls_enabled(self) -> bool:
        """TLS to Redis: asked for by ``redis_tls`` or by a ``rediss://`` URL."""
        return self.redis_tls or self.redis_url.startswith("rediss://")

    @model_validator(mode="after")
    def _sentinels_given(self) -> WorkerSettings:
        if self.redis_mode is RedisMode.SENTINEL and not self.redis_sentinels:
            raise ValueError("redis_mode=sentinel needs redis_sentinels (a JSON list of host:port)")
        return self

    @model_validator(mode="after")
    def _cluster_nodes_given(self) -> WorkerSettings:
        if self.redis_mode is not RedisMode.CLUSTER:
            return self
        if not self.redis_cluster_nodes:
            raise ValueError("redis_mode=cluster needs redis_cluster_nodes (a JSON list of host:port)")
        if "{" in self.redis_prefix or "}" in self.redis_prefix:
            raise ValueError(
                "redis_mode=cluster needs a redis_prefix without { or }: they would end hash tags"
            )
        return self

    @model_validator(mode="after")
    def _processes_share_state(self) -> WorkerSettings:
        if self.processes > 1 and self.engine is not EngineKind.REDIS:
            raise ValueError("processes > 1 needs engine=redis: each process would have its own memory")
        if self.processes > 1 and self.port == 0:
            raise ValueError("processes > 1 needs a fixed port: with 0 each process would pick its own")
        return self

    @model_validator(mode="after")
    def _address_lists(self) -> WorkerSettings:
        for name in ("trusted_proxies", "ip_allow", "ip_deny"):
            parse_networks(getattr(self, name))
        for origin in self.allowed_origins:
            check_entry(origin)
        if self.proxy_protocol and not self.trusted_proxies:
            raise ValueError("proxy_protocol needs trusted_proxies (the CIDRs of the proxies that send it)")
        if self.client_ip_header and not self.trusted_proxies:
            # Believing the header from anyone lets every client pick its own address.
            raise ValueError("client_ip_header needs trusted_proxies (the CIDRs of the proxies that set it)")
        return self


def _default_text(value: object) -> str:
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, enum.Enum):
        return f"`{value.value}`"
    if isinstance(value, BaseModel) or (isinstance(value, dict) and value):
        return "see below"
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def _rows(model: type[BaseModel], prefix: str) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        default = field.get_default(call_default_factory=True)
        rows.append(f"| `{prefix}{name.upper()}` | {_default_text(default)} | {field.description or ''} |")
    return rows


def render_settings_doc() -> str:
    """``docs/settings.md``, generated from the models (a test keeps the file in sync)."""
    lines = [
        "# Worker settings",
        "",
        "Generated from `resonance_worker.settings` by "
        "`python -m resonance_worker.settings > docs/settings.md`; a test fails when it is stale.",
        "Every variable is read once at start-up. Nested groups use `__`; `RESONANCE_NAMESPACES` and",
        "`RESONANCE_DEFAULT_NAMESPACE` are JSON (objects of the namespace options below).",
        "",
        "| Variable | Default | Meaning |",
        "|---|---|---|",
        *_rows(WorkerSettings, "RESONANCE_"),
        "",
        "## Limits (`RESONANCE_LIMITS__…`)",
        "",
        "| Variable | Default | Meaning |",
        "|---|---|---|",
        *_rows(LimitSettings, "RESONANCE_LIMITS__"),
        "",
        "## Living core (`RESONANCE_LIVING__…`)",
        "",
        "| Variable | Default | Meaning |",
        "|---|---|---|",
        *_rows(LivingSettings, "RESONANCE_LIVING__"),
        "",
        "## Temporal graph (`RESONANCE_NEO4J__…`)",
        "",
        "| Variable | Default | Meaning |",
        "|---|---|---|",
        *_rows(Neo4jSettings, "RESONANCE_NEO4J__"),
        "",
        "## Traces (`RESONANCE_TRACING__…`)",
        "",
        "| Variable | Default | Meaning |",
        "|---|---|---|",
        *_rows(TracingSettings, "RESONANCE_TRACING__"),
        "",
        "## Error tracking (`RESONANCE_SENTRY__…`)",
        "",
        "| Variable | Default | Meaning |",
        "|---|---|---|",
        *_rows(SentrySettings, "RESONANCE_SENTRY__"),
        "",
        "## Data rights (`RESONANCE_DATA__…`)",
        "",
        "| Variable | Default | Meaning |",
        "|---|---|---|",
        *_rows(DataSettings, "RESONANCE_DATA__"),
        "",
        "## Namespace options (JSON keys in `RESONANCE_NAMESPACES`)",
        "",
        "| Key | Default | Meaning |",
        "|---|---|---|",
    ]
    for name, field in NamespaceOptions.model_fields.items():
        lines.append(f"| `{name}` | {_default_text(field.default)} | {field.description or ''} |")
    lines += ["", "## Namespaces out of the box", "", "```json"]
    defaults = {name: opts.model_dump(exclude_defaults=True) for name, opts in default_namespaces().items()}
    lines += [json.dumps(defaults, indent=2), "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    print(render_settings_doc(), end="")
