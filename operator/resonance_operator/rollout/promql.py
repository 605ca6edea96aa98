"""The PromQL behind each analysis check, for the Prometheus source of rollout analysis (pure).

The series are the workers' own, as the cluster's PodMonitor labels them: ``namespace``, and from the
Pod labels ``resonance_liminal_dev_cluster`` and ``resonance_liminal_dev_revision``. Each check gives a
value query and a volume query (the data behind the value, compared with ``minCount``), over
``prometheus.window``; the same judgement as with scraped Pods follows (``analysis.judge``).

| kind | value | volume |
|---|---|---|
| ``errorRatio`` | increase of error replies (0 without any) / increase of commands | commands |
| ``latencyP99`` | ``histogram_quantile(0.99, ...)`` of the delivery latency | observations |
| ``thyroidPain`` | mean thyroid pain over the revision's Pods | Pods reporting it |
| ``reconnectRate`` | recoveries per second / open connections | open connections |
| ``query`` | your PromQL (``{{revision}}``, ``{{namespace}}``, ``{{cluster}}``, ``{{window}}`` filled) | - |
"""

from __future__ import annotations

import dataclasses

from resonance_operator.rollout.analysis import MetricCheck, MetricKind

CLUSTER_LABEL = "resonance_liminal_dev_cluster"
REVISION_LABEL = "resonance_liminal_dev_revision"


@dataclasses.dataclass(frozen=True)
class Queries:
    value: str
    volume: str | None
    """``None`` for a ``query`` check (its result is the value, and one result is enough)."""


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def selector(namespace: str, cluster: str, revision: str, extra: str = "") -> str:
    """The label matchers of one revision's series (``extra`` appended, e.g. ``code=~"100|101"``)."""
    matchers = [
        f'namespace="{_quote(namespace)}"',
        f'{CLUSTER_LABEL}="{_quote(cluster)}"',
        f'{REVISION_LABEL}="{_quote(revision)}"',
    ]
    return "{" + ", ".join(matchers + ([extra] if extra else [])) + "}"


def queries(check: MetricCheck, *, namespace: str, cluster: str, revision: str, window: str) -> Queries:
    """The value and volume queries of ``check`` for one revision."""
    sel = selector(namespace, cluster, revision)
    if check.kind is MetricKind.ERROR_RATIO:
        codes = "|".join(c for c in check.codes if c.isdigit())
        errors = selector(namespace, cluster, revision, f'code=~"{codes}"' if codes else "")
        commands = f"sum(increase(resonance_commands_total{sel}[{window}]))"
        return Queries(
            # A revision that never answered an error has no error series at all: zero, not nothing.
            f"(sum(increase(resonance_command_errors_total{errors}[{window}])) or vector(0)) / {commands}",
            commands,
        )
    if check.kind is MetricKind.LATENCY_P99:
        buckets = f"sum by (le) (increase(resonance_delivery_latency_seconds_bucket{sel}[{window}]))"
        count = f"sum(increase(resonance_delivery_latency_seconds_count{sel}[{window}]))"
        return Queries(f"histogram_quantile(0.99, {buckets})", count)
    if check.kind is MetricKind.THYROID_PAIN:
        return Queries(f"avg(resonance_thyroid_pain{sel})", f"count(resonance_thyroid_pain{sel})")
    if check.kind is MetricKind.RECONNECT_RATE:
        connections = f"sum(resonance_connections{sel})"
        return Queries(
            f"(sum(rate(resonance_recoveries_total{sel}[{window}])) or vector(0)) / {connections}",
            connections,
        )
    assert check.query is not None  # AnalysisSpec refuses a query check without one
    filled = (
        check.query.replace("{{revision}}", revision)
        .replace("{{namespace}}", namespace)
        .replace("{{cluster}}", cluster)
        .replace("{{window}}", window)
    )
    return Queries(filled, None)
