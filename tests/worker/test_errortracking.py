"""Error tracking: the worker's Sentry set-up sends exceptions and ERROR log lines to the DSN (the
harness's ingest endpoint, fed by the real SDK), and tokens, biometric samples and emotional reports
never leave: not in frame variables, log extras, breadcrumbs or messages (the raw envelopes are
searched for them)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import sentry_sdk
from pydantic import SecretStr
from resonance_worker.errortracking import FILTERED, configure_error_tracking, scrub
from resonance_worker.settings import SentrySettings
from resonance_worker.tokens import mint_connection_token

from tests.harness.processes import free_port
from tests.harness.sentry import SentrySink
from tests.harness.worker import WorkerProcess

TOKEN = mint_connection_token("sentry-test-secret-long-enough-for-hs256", sub="wren", now=1_800_000_000)
SAMPLES = [{"t": 1.0, "bpm": 71.123457}, {"t": 2.0, "bpm": 73.987654}]
REPORT = {"valence": -0.731337, "arousal": 0.424242, "emotion": "grief-under-test"}
PRIVATE = [TOKEN, "71.123457", "73.987654", "-0.731337", "0.424242", "grief-under-test", "api-key-under-test"]


@pytest.fixture
def sink() -> Iterator[SentrySink]:
    with SentrySink() as running:
        close = configure_error_tracking(
            SentrySettings(dsn=SecretStr(running.dsn), environment="test"), node="worker-under-test"
        )
        try:
            yield running
        finally:
            close()
            sentry_sdk.init()  # no DSN: nothing is sent by later tests


def _push(samples: list[dict[str, float]], token: str) -> None:
    batch = {"samples": samples, "report": REPORT}
    raise ValueError(f"cannot take the batch of {len(batch['samples'])} for token {token}")


def test_exceptions_and_error_lines_arrive_without_tokens_samples_or_reports(sink: SentrySink) -> None:
    sentry_sdk.set_user({"id": "wren", "ip_address": "10.1.2.3"})
    logging.getLogger("resonance.worker.test").info("breadcrumb", extra={"report": REPORT, "token": TOKEN})
    try:
        _push(SAMPLES, TOKEN)
    except ValueError as exc:
        sentry_sdk.capture_exception(exc)
    logging.getLogger("resonance.worker.test").error(
        "rpc handler failed for apikey api-key-under-test",
        extra={"method": "bio.push", "samples": SAMPLES, "state": REPORT, "token": TOKEN},
    )
    sentry_sdk.flush(timeout=5)
    events = sink.wait_for_events(2)

    raw = sink.raw().decode("utf-8", "replace")
    leaked = [value for value in PRIVATE if value in raw]
    assert leaked == []
    exception = next(e for e in events if "exception" in e)
    assert exception["exception"]["values"][0]["type"] == "ValueError"
    assert FILTERED in exception["exception"]["values"][0]["value"]  # the token in the message
    frame_vars = exception["exception"]["values"][0]["stacktrace"]["frames"][-1]["vars"]
    assert frame_vars["samples"] == FILTERED and frame_vars["token"] == FILTERED
    assert exception["user"] == {"id": "wren"}  # the user id stays, nothing else about them
    assert exception["environment"] == "test" and exception["server_name"] == "worker-under-test"
    line = next(e for e in events if e.get("logentry") or e.get("message"))
    assert line["extra"]["method"] == "bio.push" and line["extra"]["samples"] == FILTERED


def test_scrub_walks_every_part_of_an_event() -> None:
    event = {
        "message": f"Bearer {TOKEN}",
        "breadcrumbs": {"values": [{"data": {"valence": 0.1}, "message": f"token {TOKEN}"}]},
        "request": {"headers": {"Authorization": "apikey x"}, "query_string": f"token={TOKEN}"},
        "user": {"id": 7, "email": "a@b.c"},
        "tags": {"node": "w1"},
    }
    cleaned = scrub(event)
    assert TOKEN not in str(cleaned) and "0.1" not in str(cleaned)
    assert cleaned["user"] == {"id": "7"} and cleaned["tags"] == {"node": "w1"}
    assert cleaned["request"]["headers"]["Authorization"] == FILTERED


def test_without_a_dsn_nothing_starts() -> None:
    close = configure_error_tracking(SentrySettings(), node="n")
    close()
    assert sentry_sdk.get_client().transport is None  # nothing could be sent


def test_a_real_workers_error_lines_reach_sentry_scrubbed(tmp_path: Path) -> None:
    """A worker process started with ``RESONANCE_SENTRY__DSN``: its ERROR line (a JWKS URL it cannot
    fetch, carrying a token in its query) arrives as an event, the token filtered out."""
    with SentrySink() as running:
        closed = free_port()
        worker = WorkerProcess(
            tmp_path,
            {
                "RESONANCE_SENTRY__DSN": running.dsn,
                "RESONANCE_SENTRY__ENVIRONMENT": "worker-test",
                "RESONANCE_JWT_JWKS_URL": f"http://127.0.0.1:{closed}/jwks?access_token={TOKEN}",
            },
            name="sentried",
        ).start(timeout=120)
        try:
            (event, *_) = running.wait_for_events(1, timeout=60)
        finally:
            worker.stop()
        raw = running.raw().decode("utf-8", "replace")
    assert TOKEN not in raw and FILTERED in raw
    assert event["environment"] == "worker-test" and event["server_name"] == "sentried"
    assert event["level"] == "error" and "JWKS fetch failed" in json.dumps(event)
