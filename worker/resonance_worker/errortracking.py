"""Error tracking with the Sentry SDK: unhandled exceptions and ERROR log lines become events.

Off unless ``RESONANCE_SENTRY__DSN`` is set (the operator takes it from the Secret named in the CR's
``spec.observability.sentry.dsnSecretRef``). Nothing private leaves the worker: before an event is
sent, :func:`scrub` replaces the value of every key that may hold a token, a secret, a biometric
sample or an emotional report with ``[Filtered]`` (in the exception's frame variables, the log
line's extra fields, breadcrumbs, request data, everywhere in the event), and every string that
looks like a JWT or an ``apikey`` header. The SDK's own ``EventScrubber`` runs first with the same
list; the SDK sends no personal data by default. Only the user id stays, as the event's user.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from resonance_worker.settings import SentrySettings

FILTERED = "[Filtered]"

PRIVATE_KEYS = frozenset(
    {
        # credentials
        "token",
        "tokens",
        "sub_token",
        "jwt",
        "jwt_secret",
        "api_key",
        "apikey",
        "authorization",
        "password",
        "secret",
        "dsn",
        "cookie",
        # biometric samples
        "samples",
        "sample",
        "batch",
        "bpm",
        "hr",
        "hrv",
        "rr",
        "rr_intervals",
        "eda",
        # emotional reports and states
        "report",
        "reports",
        "state",
        "states",
        "valence",
        "arousal",
        "emotion",
        "emotions",
        "mood",
        "answer",
        # what a client sent
        "data",
        "payload",
        "body",
        "params",
    }
)
"""Keys whose values never leave the worker (compared in lower case)."""

_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_APIKEY = re.compile(r"(?i)\b(apikey|bearer)\s+\S+")


def _scrub_text(text: str) -> str:
    return _APIKEY.sub(lambda m: f"{m[1]} {FILTERED}", _JWT.sub(FILTERED, text))


def _scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: FILTERED if isinstance(key, str) and key.lower() in PRIVATE_KEYS else _scrub(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_scrub(item) for item in value]
    if isinstance(value, str):
        return _scrub_text(value)
    return value


def scrub(event: dict[str, Any], hint: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``before_send`` hook: the event with every private value replaced by ``[Filtered]``."""
    user = event.get("user")
    cleaned: dict[str, Any] = _scrub({key: value for key, value in event.items() if key != "user"})
    if isinstance(user, dict) and "id" in user:
        cleaned["user"] = {"id": str(user["id"])}
    return cleaned


def configure_error_tracking(settings: SentrySettings, *, node: str) -> Callable[[], None]:
    """Start the Sentry SDK when a DSN is set; return what flushes and closes it."""
    if settings.dsn is None or not settings.dsn.get_secret_value():
        return lambda: None
    import sentry_sdk
    from sentry_sdk.scrubber import DEFAULT_DENYLIST, EventScrubber

    sentry_sdk.init(
        dsn=settings.dsn.get_secret_value(),
        environment=settings.environment or None,
        sample_rate=settings.sample_rate,
        server_name=node,
        traces_sample_rate=None,  # traces go to OpenTelemetry (resonance_worker.tracing)
        event_scrubber=EventScrubber(denylist=[*DEFAULT_DENYLIST, *sorted(PRIVATE_KEYS)], recursive=True),
        before_send=scrub,  # type: ignore[arg-type]
        before_send_transaction=scrub,  # type: ignore[arg-type]
    )

    def close() -> None:
        sentry_sdk.get_client().close(timeout=2.0)

    return close
