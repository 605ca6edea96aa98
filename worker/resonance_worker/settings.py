"""Worker settings, read once at start-up from ``RESONANCE_*`` variables.

Every field is documented in ``docs/settings.md`` (the operator generates these
variables for each pod). Nested groups use ``__``, for example
``RESONANCE_LIMITS__MAX_CONNECTIONS=100``.
"""

from __future__ import annotations

import enum

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class EngineKind(enum.StrEnum):
    """Where channel state lives: this process only, or Redis shared by many pods."""

    MEMORY = "memory"
    REDIS = "redis"


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
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis URL used by the redis engine.")
    redis_prefix: str = Field("resonance", description="Key prefix, so several clusters can share a Redis.")
    jwt_secret: SecretStr | None = Field(
        None, description="HS256 secret for connection tokens. Unset: a random one is generated at start."
    )
    dev_mode: bool = Field(False, description="Development mode: enables `POST /token`. Never in production.")
    node_name: str = Field("", description="Name of this worker in logs and metrics; defaults to host:port.")
    log_level: str = Field("INFO", description="Root log level.")
    log_json: bool = Field(True, description="Structured JSON logs (false: human-readable lines).")

    @model_validator(mode="after")
    def _redis_url_scheme(self) -> WorkerSettings:
        if self.engine is EngineKind.REDIS and not self.redis_url.startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise ValueError("redis_url must start with redis://, rediss:// or unix://")
        return self
