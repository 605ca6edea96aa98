"""Centrifugo v6 configuration for the side-by-side benchmark — pure.

The shape follows Centrifugo v6.9.1's own config structs (``internal/config/config.go``,
``internal/configtypes/namespace.go``): nested ``http_server``, ``client.token``, ``http_api``, ``engine`` and
``channel.namespaces``. The ``chat`` namespace mirrors our worker's default ``chat`` namespace
(``resonance_worker.domain.channels.default_namespaces``), so both servers do the same work per message:
history of 100 for 300 s, forced recovery and positioning, presence, subscribe for clients, publish for
subscribers.
"""

from __future__ import annotations

import enum
from typing import Any


class Engine(enum.StrEnum):
    MEMORY = "memory"
    REDIS = "redis"


def centrifugo_config(
    *,
    port: int,
    token_secret: str,
    api_key: str,
    engine: Engine = Engine.MEMORY,
    redis_url: str | None = None,
    redis_prefix: str = "centrifugo-bench",
    host: str = "127.0.0.1",
) -> dict[str, Any]:
    """A complete config document (write it as JSON and pass ``--config``)."""
    if engine is Engine.REDIS and not redis_url:
        raise ValueError("the redis engine needs redis_url")
    if not 0 < port < 65536:
        raise ValueError(f"port out of range: {port}")
    config: dict[str, Any] = {
        "log": {"level": "warn"},
        "http_server": {"address": host, "port": port},
        "health": {"enabled": True},
        "client": {
            "token": {"hmac_secret_key": token_secret},
            # Loopback load with many connections per user would otherwise hit no limit anyway; keep defaults
            # except origins, which a non-browser client does not send.
            "allowed_origins": ["*"],
        },
        "http_api": {"key": api_key},
        "engine": {"type": engine.value},
        "channel": {
            "namespaces": [
                {
                    "name": "chat",
                    "presence": True,
                    "join_leave": True,
                    "history_size": 100,
                    "history_ttl": "300s",
                    "force_recovery": True,
                    "force_positioning": True,
                    "allow_subscribe_for_client": True,
                    "allow_publish_for_subscriber": True,
                    "allow_presence_for_subscriber": True,
                    "allow_history_for_subscriber": True,
                }
            ]
        },
    }
    if engine is Engine.REDIS:
        config["engine"]["redis"] = {"address": [redis_url], "prefix": redis_prefix}
    return config
