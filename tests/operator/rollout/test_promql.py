"""The Prometheus source of rollout analysis: the PromQL of each check, and the verdict from readings."""

from __future__ import annotations

import pydantic
import pytest
from resonance_operator.rollout import analysis, promql
from resonance_operator.rollout.analysis import AnalysisSpec, MetricCheck, Phase, Reading

SOURCE = {"address": "http://prometheus:9090", "window": "30s"}


def test_each_check_selects_one_revision_of_one_cluster() -> None:
    where = {"namespace": "apps", "cluster": "demo", "revision": "r2", "window": "30s"}
    sel = 'namespace="apps", resonance_liminal_dev_cluster="demo", resonance_liminal_dev_revision="r2"'
    errors = promql.queries(MetricCheck(kind="errorRatio", codes=["100", "109", "x"]), **where)
    assert errors.value == (
        f'(sum(increase(resonance_command_errors_total{{{sel}, code=~"100|109"}}[30s])) or vector(0)) / '
        f"sum(increase(resonance_commands_total{{{sel}}}[30s]))"
    )
    assert errors.volume == f"sum(increase(resonance_commands_total{{{sel}}}[30s]))"
    latency = promql.queries(MetricCheck(kind="latencyP99"), **where)
    assert latency.value.startswith(
        "histogram_quantile(0.99, sum by (le) (increase(resonance_delivery_latency_seconds_bucket{"
    )
    assert (
        promql.queries(MetricCheck(kind="thyroidPain"), **where).volume
        == f"count(resonance_thyroid_pain{{{sel}}})"
    )
    own = promql.queries(
        MetricCheck(
            kind="query", query='max(x{rev="{{revision}}", ns="{{namespace}}", c="{{cluster}}"}[{{window}}])'
        ),
        **where,
    )
    assert own == promql.Queries('max(x{rev="r2", ns="apps", c="demo"}[30s])', None)
    assert promql.selector('a"b', "c", "d").startswith('{namespace="a\\"b"')


def test_a_query_check_needs_its_query_and_a_prometheus_source() -> None:
    with pytest.raises(pydantic.ValidationError, match="needs its query"):
        AnalysisSpec.model_validate({"metrics": [{"kind": "query", "query": "up"}]})
    with pytest.raises(pydantic.ValidationError, match="needs its query"):
        AnalysisSpec.model_validate({"prometheus": SOURCE, "metrics": [{"kind": "query"}]})
    with pytest.raises(pydantic.ValidationError):
        AnalysisSpec.model_validate({"prometheus": {"address": "prometheus:9090"}})


def test_readings_are_judged_like_scrapes() -> None:
    spec = AnalysisSpec.model_validate(
        {
            "prometheus": SOURCE,
            "metrics": [
                {"kind": "errorRatio", "maxValue": 0.05, "minCount": 20},
                {"kind": "query", "query": "x", "maxValue": 2},
            ],
        }
    )
    good = analysis.measure_readings(
        spec, [Reading(0.01, 400), Reading(1.0, 0)], [Reading(0.0, 900), Reading(1, 0)]
    )
    assert good.phase is Phase.SUCCESSFUL
    bad = analysis.measure_readings(
        spec, [Reading(0.3, 400), Reading(1.0, 0)], [Reading(0.0, 900), Reading(1, 0)]
    )
    assert bad.phase is Phase.FAILED and "errorRatio" in bad.message
    # Too little traffic, an empty or NaN answer (value None), a failed query: Inconclusive, not Failed.
    quiet = analysis.measure_readings(spec, [Reading(0.3, 5), Reading(None, 0)], [None, None])
    assert quiet.phase is Phase.INCONCLUSIVE
    assert [r.phase for r in quiet.results] == [Phase.INCONCLUSIVE, Phase.INCONCLUSIVE]
    assert (
        analysis.measure_readings(spec, [None, None], [None, None]).results[0].message
        == "Prometheus did not answer"
    )
