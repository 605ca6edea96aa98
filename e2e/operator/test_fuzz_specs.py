"""Invalid ResonanceCluster specs, fuzzed with hypothesis against the REAL API server.

Each example is a valid small spec with one to three mutations: wrong types, numbers
out of bounds, bad enum values, huge or malformed strings, combinations the CEL rules
forbid, semantic errors only the operator can see, and values the CRD schema lets
through but a child's own API validation refuses. Every example is either

* refused by the server (422 with a message naming the field; 400 for an unknown
  field under strict field validation), or
* accepted, and then — with the session operator running — ends either ``Degraded``
  with a reason and a message (and not a single child written), or reconciled: exactly
  the children its spec asks for, ``Ready`` or not yet with the reason (pods a spec's
  scheduling keeps Pending);

and the operator never crashes: no handler fails with an unexpected exception, and
it still reconciles a valid cluster afterwards.
"""

from __future__ import annotations

import copy
import itertools
import json
import logging
import re
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from e2e.kube import apply, kubectl_json, tool, wait_until
from e2e.operator.conftest import RunningOperator, condition, resonance_cluster, wait_ready
from e2e.operator.test_faults import children_in_sync, live_children

pytestmark = pytest.mark.k8s

EXAMPLES = 60
IMAGE = "ghcr.io/liminal/resonance-worker:0.1.0"
BASE: dict[str, Any] = {
    "worker": {"image": IMAGE, "replicas": 1},
    "redis": {"managed": {"persistence": {"enabled": False}}},
}
Spec = dict[str, Any]
Path = tuple[str, ...]

# (path, minimum, maximum) of bounded integers in the CRD.
BOUNDED_INTS: list[tuple[Path, int, int]] = [
    (("worker", "replicas"), 0, 1000),
    (("worker", "port"), 1024, 65535),
    (("worker", "terminationGracePeriodSeconds"), 1, 86400),
    (("worker", "autoscaling", "minReplicas"), 1, 1000),
    (("worker", "autoscaling", "maxReplicas"), 1, 1000),
    (("worker", "autoscaling", "targetCPUUtilizationPercentage"), 1, 100),
    (("worker", "topologySpread", "maxSkew"), 1, 100),
    (("rollout", "drain", "maxDrainSeconds"), 0, 86400),
    (("rollout", "drain", "reconnectsPerSecond"), 1, 1_000_000),
    (("rollout", "blueGreen", "scaleDownDelaySeconds"), 0, 86400),
]
ENUMS: list[tuple[Path, set[str]]] = [
    (("worker", "imagePullPolicy"), {"Always", "IfNotPresent", "Never"}),
    (("worker", "settings", "logLevel"), {"DEBUG", "INFO", "WARNING", "ERROR"}),
    (("worker", "topologySpread", "whenUnsatisfiable"), {"ScheduleAnyway", "DoNotSchedule"}),
    (("rollout", "strategy"), {"rolling", "canary", "blueGreen"}),
]
# (path, maxLength) of bounded strings.
STRINGS: list[tuple[Path, int]] = [
    (("worker", "image"), 512),
    (("worker", "settings", "redisPrefix"), 64),
    (("worker", "topologySpread", "topologyKey"), 253),
    (("ingress", "host"), 253),
    (("ingress", "path"), 1024),
    (("auth", "jwksUrl"), 2048),
    (("observability", "serviceMonitor", "interval"), 64),
]
# Fields whose type a mutation may break (booleans and objects too).
TYPED: list[Path] = [
    *(p for p, _, _ in BOUNDED_INTS),
    *(p for p, _ in ENUMS),
    *(p for p, _ in STRINGS),
    ("worker",),
    ("worker", "settings", "logJson"),
    ("worker", "resources", "requests"),
    ("worker", "env"),
    ("redis", "managed"),
    ("ingress", "enabled"),
    ("podDisruptionBudget", "maxUnavailable"),
    ("networkPolicy", "enabled"),
]
# The CEL rules' forbidden combinations.
FORBIDDEN: list[Spec] = [
    {"redis": {"managed": {}, "external": {"url": "redis://r:6379"}}},
    {"redis": {"external": {"url": "redis://r:6379", "urlSecretRef": {"name": "s", "key": "k"}}}},
    {"neo4j": {"managed": {}, "external": {"uri": "bolt://g", "passwordSecretRef": {"name": "g"}}}},
    {"auth": {"jwtSecretRef": {"name": "s"}, "jwksUrl": "https://idp/jwks"}},
    {"worker": {"autoscaling": {"enabled": True, "minReplicas": 7, "maxReplicas": 3}}},
    {"ingress": {"enabled": True}},
    {"rollout": {"strategy": "canary"}},
    {"rollout": {"strategy": "blueGreen"}},
    {"rollout": {"strategy": "canary", "canary": {"steps": [{"setWeight": 10, "pause": {}}]}}},
    {"podDisruptionBudget": {"maxUnavailable": 1, "minAvailable": 1}},
    {"rollout": {"rolling": {"maxSurge": "lots"}}},
    {"worker": {"settings": {"extra": {"lower_case": "x"}}}},
]
# Accepted by the schema, refused by the operator's own checks (Degraded/InvalidSpec).
SEMANTIC: list[Spec] = [
    {"worker": {"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}},
    {"auth": {"jwtSecretRef": {"name": "no-such-secret"}}},
    {"redis": {"managed": None, "external": {"urlSecretRef": {"name": "no-such-secret", "key": "url"}}}},
    {"worker": {"env": [{"name": "RESONANCE_REDIS_URL", "value": "redis://elsewhere"}]}},
    {"rollout": {"strategy": "canary", "canary": {"steps": [{"setWeight": 50}, {"setWeight": 10}]}}},
]
# Accepted by the CRD schema, but a child built from them fails the child's own validation.
CHILD_REFUSED: list[Spec] = [
    {"worker": {"scheduling": {"nodeSelector": {"not a label key!": "x"}}}},
    {"worker": {"topologySpread": {"topologyKey": "not a label key!"}}},
    {"worker": {"resources": {"requests": {"cpu": "-1"}}}},
    {"worker": {"env": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "no.such.field"}}}]}},
    {"worker": {"scheduling": {"tolerations": [{"operator": "Exists", "value": "x"}]}}},
    {"ingress": {"enabled": True, "host": "a.example.test", "annotations": {"bad key!": "x"}}},
    {"worker": {"image": " leading-space:1"}},
]

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=8,
)


def set_path(spec: Spec, path: Path, value: Any) -> None:
    node = spec
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[path[-1]] = value


def merge(spec: Spec, patch: Spec) -> None:
    """JSON merge patch semantics: ``None`` removes a key."""
    for key, value in patch.items():
        if value is None:
            spec.pop(key, None)
        elif isinstance(value, dict) and isinstance(spec.get(key), dict):
            merge(spec[key], value)
        else:
            spec[key] = copy.deepcopy(value)


Mutation = tuple[str, Callable[[Spec], None]]


@st.composite
def mutations(draw: st.DrawFn) -> Mutation:
    kind = draw(
        st.sampled_from(
            ["out_of_bounds", "wrong_type", "bad_enum", "huge_string", "bad_pattern", "forbidden",
             "semantic", "child_refused", "unknown_field"]
        )
    )  # fmt: skip
    value: Any
    if kind == "out_of_bounds":
        path, low, high = draw(st.sampled_from(BOUNDED_INTS))
        value = draw(st.integers(max_value=low - 1) | st.integers(min_value=high + 1))
    elif kind == "wrong_type":
        path = draw(st.sampled_from(TYPED))
        value = draw(json_values)
        if path[-1] in {"replicas", "minReplicas", "maxReplicas"} and isinstance(value, int):
            value = -1 - abs(value)  # never ask the cluster for hundreds of pods
    elif kind == "bad_enum":
        path, allowed = draw(st.sampled_from(ENUMS))
        value = draw(st.text(max_size=30).filter(lambda text: text not in allowed))
    elif kind == "huge_string":
        path, max_length = draw(st.sampled_from(STRINGS))
        value = "x" * draw(st.integers(min_value=max_length + 1, max_value=max(max_length * 4, 300_000)))
    elif kind == "bad_pattern":
        path, _ = draw(st.sampled_from(STRINGS))
        value = draw(st.text(min_size=1, max_size=60))
    else:
        table = {"forbidden": FORBIDDEN, "semantic": SEMANTIC, "child_refused": CHILD_REFUSED}.get(kind)
        patch = (
            draw(st.sampled_from(table))
            if table is not None
            else {"worker": {draw(st.text(min_size=1, max_size=20)): draw(json_values)}}
        )
        return kind, lambda spec: merge(spec, patch)
    return kind, lambda spec: set_path(spec, path, value)


_names = (f"fz-{index:03d}" for index in itertools.count())
# kubectl -v=6 logs each response: `"Response" verb="POST" url="…" status="422 Unprocessable Entity"`.
_VERBOSE_CODE = re.compile(r'verb="POST" url="[^"]+" status="(\d{3})')


def create(namespace: str, name: str, spec: Spec) -> tuple[int, str]:
    """POST the cluster through kubectl; the HTTP status (read from its -v=6 log) and its output."""
    manifest = resonance_cluster(name, spec)
    proc = subprocess.run(
        [tool("kubectl"), "create", "-n", namespace, "-f", "-", "-v=6"],
        input=json.dumps(manifest), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    codes = [int(m.group(1)) for m in _VERBOSE_CODE.finditer(proc.stderr)]
    return (codes[-1] if codes else -1), proc.stderr


class KopfErrors(logging.Handler):
    """Error records kopf logs for one namespace's objects."""

    def __init__(self, namespace: str) -> None:
        super().__init__(logging.ERROR)
        self.namespace = namespace
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        ref = getattr(record, "k8s_ref", None) or {}
        if ref.get("namespace") == self.namespace:
            self.records.append(record)


@pytest.fixture
def kopf_errors(namespace: str) -> Iterator[KopfErrors]:
    handler = KopfErrors(namespace)
    logger = logging.getLogger("kopf")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def test_fuzzed_specs_are_refused_or_reported(
    operator: RunningOperator, namespace: str, kopf_errors: KopfErrors
) -> None:
    accepted: dict[str, tuple[list[str], Spec]] = {}
    outcomes: Counter[str] = Counter()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(st.lists(mutations(), min_size=1, max_size=3))
    def one_example(drawn: list[Mutation]) -> None:
        spec = copy.deepcopy(BASE)
        kinds = [kind for kind, _ in drawn]
        for _, mutate in drawn:
            mutate(spec)
        name = next(_names)
        code, output = create(namespace, name, spec)
        event(f"{'+'.join(sorted(set(kinds)))}: {code}")
        if code == 201:
            accepted[name] = (kinds, spec)
            outcomes["accepted"] += 1
            return
        outcomes[f"refused {code}"] += 1
        # A refusal is the server's 422 naming the field (400 for a field the schema does not know,
        # under kubectl's strict field validation; 413 for a body past the server's limit).
        assert code in {400, 413, 422}, (code, output[-2000:], spec)
        expected = {400: "unknown field", 413: "too large", 422: "is invalid"}[code]
        assert expected in output.lower(), output[-2000:]
        assert kubectl_json("get", "resonanceclusters", "-n", namespace, "--field-selector",
                            f"metadata.name={name}")["items"] == []  # fmt: skip

    one_example()

    pending: dict[str, dict[str, Any]] = {}

    def verdicts() -> dict[str, dict[str, Any]] | None:
        """Every accepted cluster Degraded, or reconciled: status current and children exactly right."""
        items = {b["metadata"]["name"]: b for b in kubectl_json("get", "rescl", "-n", namespace)["items"]}
        done = {}
        pending.clear()
        for name in accepted:
            body = items[name]
            current = body.get("status", {}).get("observedGeneration") == body["metadata"]["generation"]
            if current and (
                condition(body, "Degraded").get("status") == "True" or children_in_sync(namespace, body)
            ):
                done[name] = body
            else:
                pending[name] = body
        return done if len(done) == len(accepted) else None

    try:
        bodies = wait_until(verdicts, timeout=120, what="a verdict on every accepted spec", interval=1.0)
    except AssertionError as exc:
        stuck = {name: (accepted[name], body.get("status")) for name, body in pending.items()}
        raise AssertionError(f"{exc}: {stuck}") from None
    for name, body in bodies.items():
        kinds, spec = accepted[name]
        degraded = condition(body, "Degraded")
        if degraded.get("status") == "True":
            outcomes[f"degraded {degraded['reason']}"] += 1
            assert degraded["reason"] in {"InvalidSpec", "ApplyFailed"}, (name, kinds, degraded)
            assert len(degraded["message"]) > 10, (name, kinds, degraded)
            # Refused as a whole: not one child written, so nothing runs half-configured.
            assert live_children(namespace, name) == {}, (name, kinds, spec, degraded)
        else:
            # Reconciled: every child as the spec wants it; Ready, or not yet with the reason why
            # (a spec may ask for pods no kwok node can take: they stay Pending, honestly reported).
            ready = condition(body, "Ready")
            outcomes["ready" if ready.get("status") == "True" else f"reconciled, {ready.get('reason')}"] += 1
            assert ready.get("status") == "True" or ready.get("message"), (name, kinds, ready)
    print(f"\nfuzzed {EXAMPLES} specs: {dict(outcomes)}")

    crashes = [r.getMessage() for r in kopf_errors.records if "failed with an exception" in r.getMessage()]
    assert crashes == [], crashes[:5]
    assert operator.error is None
    # Still reconciling: a valid cluster created after all of that becomes Ready.
    apply(resonance_cluster("after-fuzz", BASE), namespace=namespace)
    wait_ready("after-fuzz", namespace)
