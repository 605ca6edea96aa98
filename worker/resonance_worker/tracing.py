"""Traces: OpenTelemetry spans across a connection's commands, the engine, fan-out, RPCs, the event
log and the Neo4j projector.

Off by default (``RESONANCE_TRACING__ENABLED``). :func:`configure_tracing` installs the official
SDK's provider once, in ``main``, exporting OTLP over HTTP to ``tracing.endpoint`` with a
parent-based ratio sampler (``tracing.sample_ratio``). Until then the API's tracer is the no-op one,
and the hot paths ask :func:`enabled` first so an untraced worker pays nothing but that check.

Where a trace comes from: a client's connect ``data`` may carry a W3C ``traceparent``
(``{"traceparent": "00-…"}``): that connection's commands are spans of that trace. A server API call
may send a ``traceparent`` header. Events appended to the event log keep the ``traceparent`` of the
span that appended them beside the event (``LogEntry.trace``), so the projector's write of that event
to Neo4j is a span of the same trace, on whichever worker projects it.

Spans carry ids, names and counts only (client id, user id, channel, method, event type): never a
biometric sample, an emotional report, a token or a payload.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from resonance_worker.settings import TracingSettings

TRACER = trace.get_tracer("resonance.worker")
"""The worker's tracer (the API's proxy: real once :func:`configure_tracing` ran)."""

Context = otel_context.Context
_PROPAGATOR = TraceContextTextMapPropagator()
_state = {"enabled": False}


def enabled() -> bool:
    """Whether this process exports spans (the hot paths skip span work when not)."""
    return _state["enabled"]


def context_of(traceparent: str | None) -> Context | None:
    """The remote parent a W3C ``traceparent`` names, or None when absent or malformed."""
    if not traceparent or not isinstance(traceparent, str):
        return None
    ctx = _PROPAGATOR.extract({"traceparent": traceparent})
    return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None


def context_from_headers(headers: Mapping[str, str]) -> Context | None:
    """The remote parent of an HTTP request (its ``traceparent`` header), if any."""
    return context_of(headers.get("traceparent"))


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, when there is a recording one."""
    span = trace.get_current_span()
    if not span.get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


def current_trace_id() -> str | None:
    """The current trace id in hex (for log lines), or None outside a span."""
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else None


def configure_tracing(settings: TracingSettings, *, service: str, node: str) -> Callable[[], None]:
    """Install the SDK's provider exporting to ``settings.endpoint``; return its shutdown (which
    flushes what is still batched). Does nothing (and returns a no-op) when tracing is off."""
    if not settings.enabled:
        return lambda: None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    endpoint = settings.endpoint.rstrip("/")
    if not endpoint.endswith("/v1/traces"):
        endpoint += "/v1/traces"
    provider = TracerProvider(
        resource=Resource.create({"service.name": service, "service.instance.id": node}),
        sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)),
    )
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint), schedule_delay_millis=500)
    )
    trace.set_tracer_provider(provider)
    _state["enabled"] = True

    def shutdown() -> None:
        _state["enabled"] = False
        provider.shutdown()

    return shutdown
