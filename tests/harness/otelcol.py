"""A real OpenTelemetry Collector (built from the Go module proxy by e2e/cluster/build-binaries): OTLP
over HTTP and gRPC in, every span written by the core distribution's file exporter as OTLP JSON lines.

    collector = Collector(workdir).start()
    ... point an OTLP exporter at collector.http_endpoint ...
    spans = collector.wait_for_spans(lambda spans: any(s.name == "publish" for s in spans))
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.harness.processes import ServiceProcess, free_port, port_open

BIN = (
    Path(os.environ.get("RESONANCE_CACHE", Path.home() / ".cache" / "resonance-liminal")) / "bin" / "current"
)


@dataclass(frozen=True)
class Span:
    """One span from the file exporter's output, with its resource's service name."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    service: str
    attributes: dict[str, Any] = field(default_factory=dict)
    status_code: int = 0

    @property
    def is_root(self) -> bool:
        return not self.parent_span_id


def _value(any_value: dict[str, Any]) -> Any:
    for key in ("stringValue", "boolValue", "doubleValue"):
        if key in any_value:
            return any_value[key]
    if "intValue" in any_value:
        return int(any_value["intValue"])
    if "arrayValue" in any_value:
        return [_value(v) for v in any_value["arrayValue"].get("values", [])]
    return None


def _attributes(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {item["key"]: _value(item.get("value", {})) for item in items}


def parse_lines(text: str) -> list[Span]:
    """Spans from the file exporter's JSON lines (one ExportTraceServiceRequest per line). A last line
    without its newline is still being written by the collector: it is left for the next read."""
    spans: list[Span] = []
    complete = text if text.endswith("\n") else text[: text.rfind("\n") + 1]
    for line in complete.splitlines():
        if not line.strip():
            continue
        for resource_spans in json.loads(line).get("resourceSpans", []):
            resource = _attributes(resource_spans.get("resource", {}).get("attributes", []))
            for scope in resource_spans.get("scopeSpans", []):
                for raw in scope.get("spans", []):
                    spans.append(
                        Span(
                            name=raw["name"],
                            trace_id=raw["traceId"],
                            span_id=raw["spanId"],
                            parent_span_id=raw.get("parentSpanId", ""),
                            kind=int(raw.get("kind", 0)),
                            service=str(resource.get("service.name", "")),
                            attributes=_attributes(raw.get("attributes", [])),
                            status_code=int(raw.get("status", {}).get("code", 0)),
                        )
                    )
    return spans


class Collector:
    """``otelcol`` with an OTLP receiver on free loopback ports and a file exporter."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.http_port, self.grpc_port = free_port(), free_port()
        self.output = workdir / "traces.jsonl"
        self.config = workdir / "otelcol.yaml"
        binary = BIN / "otelcol"
        if not binary.exists():
            raise RuntimeError(f"no {binary}: run `make binaries` (e2e/cluster/build-binaries otelcol)")
        self.process = ServiceProcess(
            f"otelcol:{self.http_port}",
            [str(binary), "--config", f"file:{self.config}"],
            log_path=workdir / "otelcol.log",
        )

    @property
    def http_endpoint(self) -> str:
        """Base URL for an OTLP/HTTP exporter (it appends ``/v1/traces``)."""
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, timeout: float = 30.0) -> Collector:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            json.dumps(
                {
                    "receivers": {
                        "otlp": {
                            "protocols": {
                                "http": {"endpoint": f"127.0.0.1:{self.http_port}"},
                                "grpc": {"endpoint": f"127.0.0.1:{self.grpc_port}"},
                            }
                        }
                    },
                    "processors": {"batch": {"timeout": "100ms"}},
                    "exporters": {"file": {"path": str(self.output), "format": "json"}},
                    "service": {
                        "pipelines": {
                            "traces": {"receivers": ["otlp"], "processors": ["batch"], "exporters": ["file"]}
                        },
                        "telemetry": {"metrics": {"level": "none"}},
                    },
                }
            )
        )
        self.process.start()
        self.process.wait_until(
            lambda: port_open("127.0.0.1", self.http_port), timeout=timeout, what="OTLP/HTTP"
        )
        return self

    def stop(self) -> None:
        self.process.stop()

    def spans(self) -> list[Span]:
        """Every span written so far."""
        return parse_lines(self.output.read_text()) if self.output.exists() else []

    def wait_for_spans(self, done: Callable[[list[Span]], bool], timeout: float = 20.0) -> list[Span]:
        """Poll the file until ``done(spans)`` holds; fail with what arrived when time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.spans()
            if done(spans):
                return spans
            if time.monotonic() > deadline:
                names = sorted({s.name for s in spans})
                raise TimeoutError(f"the collector wrote {len(spans)} spans ({names}), not the ones awaited")
            time.sleep(0.2)
