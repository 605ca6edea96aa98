"""Operator settings, read once at start-up from ``RESONANCE_OPERATOR_*``."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class OperatorSettings(BaseSettings):
    """All operator settings. Built once in ``main`` and passed down."""

    model_config = SettingsConfigDict(env_prefix="RESONANCE_OPERATOR_", extra="ignore", frozen=True)

    namespace: str = Field("", description="Watch only this namespace; empty watches all namespaces.")
    field_manager: str = Field("resonance-operator", description="Server-side apply field manager.")
    resync_seconds: float = Field(30.0, gt=0, description="Period of the drift-repairing reconcile.")
    peering: str = Field("", description="kopf peering object name; empty runs standalone.")
    metrics_port: int = Field(8080, ge=0, le=65535, description="Port of the operator's /metrics.")
    health_port: int = Field(8081, ge=0, le=65535, description="Port of the operator's /healthz.")
