"""The audit log: one JSON line per server-API or admin action, on the
dedicated ``resonance.audit`` logger (route it apart from the service log).

A record says who (caller address, whether the key was accepted), what
(action and its targets: channel, channels, user) and the outcome (HTTP
status). It never holds payload data, API keys or tokens.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

audit_log = logging.getLogger("resonance.audit")

_TARGET_FIELDS = ("channel", "channels", "user", "code")


def record(request: web.Request, action: str, status: int, body: Any = None, **fields: Any) -> None:
    """Write one audit record for ``action`` answered with ``status``."""
    entry: dict[str, Any] = {
        "audit": True,
        "action": action,
        "status": status,
        "remote": request.remote or "",
        **fields,
    }
    if isinstance(body, dict):
        for name in _TARGET_FIELDS:
            value = body.get(name)
            if isinstance(value, str | int) or (
                isinstance(value, list) and all(isinstance(v, str) for v in value)
            ):
                entry[name] = value
    audit_log.info("audit", extra=entry)
