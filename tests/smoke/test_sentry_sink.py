"""The harness's Sentry endpoint takes what the real Sentry SDK sends to a DSN."""

from __future__ import annotations

import sentry_sdk

from tests.harness.sentry import SentrySink


def test_the_sdk_delivers_an_exception_event_to_the_sink() -> None:
    with SentrySink() as sink:
        sentry_sdk.init(
            dsn=sink.dsn, default_integrations=False, auto_enabling_integrations=False, release="smoke"
        )
        try:
            try:
                raise ValueError("smoke failure")
            except ValueError as exc:
                sentry_sdk.capture_exception(exc)
            sentry_sdk.flush(timeout=5)
            (event,) = sink.wait_for_events(1)
        finally:
            sentry_sdk.get_client().close()
            sentry_sdk.init()  # no DSN: nothing is sent by later tests
    assert event["exception"]["values"][0]["type"] == "ValueError"
    assert event["exception"]["values"][0]["value"] == "smoke failure"
    assert event["release"] == "smoke"
