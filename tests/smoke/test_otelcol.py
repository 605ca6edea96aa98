"""The harness's OpenTelemetry Collector is the real one: spans sent by the official Python SDK's
OTLP/HTTP exporter come back from its file exporter with their names, ids, parents and attributes."""

from __future__ import annotations

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from tests.harness.otelcol import Collector


def test_spans_from_the_sdk_reach_the_file_exporter(collector: Collector) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "smoke"}))
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{collector.http_endpoint}/v1/traces"))
    )
    tracer = provider.get_tracer("smoke")
    with tracer.start_as_current_span("outer") as outer, tracer.start_as_current_span("inner") as inner:
        inner.set_attribute("resonance.channel", "chat:index")
    provider.shutdown()

    spans = collector.wait_for_spans(lambda s: {"outer", "inner"} <= {x.name for x in s})
    by_name = {s.name: s for s in spans}
    assert (
        by_name["inner"].trace_id
        == by_name["outer"].trace_id
        == format(outer.get_span_context().trace_id, "032x")
    )
    assert by_name["inner"].parent_span_id == by_name["outer"].span_id
    assert by_name["outer"].is_root and by_name["outer"].service == "smoke"
    assert by_name["inner"].attributes == {"resonance.channel": "chat:index"}
    assert by_name["inner"].span_id == format(inner.get_span_context().span_id, "016x")
