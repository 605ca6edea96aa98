"""Operator settings, read once at start-up from ``RESONANCE_OPERATOR_*``."""

from __future__ import annotations

import random

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class OperatorSettings(BaseSettings):
    """All operator settings. Built once in ``main`` and passed down."""

    model_config = SettingsConfigDict(env_prefix="RESONANCE_OPERATOR_", extra="ignore", frozen=True)

    namespace: str = Field("", description="Watch only this namespace; empty watches all namespaces.")
    kubeconfig: str | None = Field(
        None, description="Kubeconfig file; unset: $KUBECONFIG, ~/.kube/config, then the in-cluster account."
    )
    field_manager: str = Field("resonance-operator", description="Server-side apply field manager.")
    resync_seconds: float = Field(
        30.0,
        gt=0,
        description="Period of the drift-repairing reconcile of every cluster (bounds repair time).",
    )
    peering: str = Field("", description="kopf peering object name; empty runs standalone (one replica).")
    priority: int = Field(
        default_factory=lambda: random.randint(1, 2**31 - 1),  # not security-relevant
        description="Peering priority; distinct per replica so exactly one acts.",
    )
    metrics_port: int = Field(
        8080, ge=0, le=65535, description="Port of the operator's /metrics; 0 disables."
    )
    health_port: int = Field(8081, ge=0, le=65535, description="Port of the operator's /healthz; 0 disables.")
    request_timeout_seconds: float = Field(30.0, gt=0, description="Timeout of each Kubernetes API request.")
    max_concurrent_requests: int = Field(
        32, ge=1, description="Concurrent API requests of the whole operator."
    )
    probe_timeout_seconds: float = Field(
        2.0, gt=0, description="Timeout of each call to a worker Pod (metrics scrape, drain)."
    )
    log_level: str = Field("INFO", description="Log level of the operator (DEBUG, INFO, WARNING, ERROR).")
    instance: str = Field(
        default_factory=lambda: __import__("socket").gethostname(),
        description="Name of this replica in Events (the pod name in a cluster).",
    )
