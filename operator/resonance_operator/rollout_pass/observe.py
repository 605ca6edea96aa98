"""The rollout pass's observation (I/O, reads): everything ``step.take`` decides on, in one value.

:func:`gather` reads no more than the state asks for: nothing for ``rolling``; the
worker Pods and the ``/metrics`` of the revisions involved while a canary or
blue-green rollout is in flight; the progress of a losing revision's Pods once its
drain is due. Pods that do not answer are left out, never raised.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from resonance_operator.api.observed import Observed
from resonance_operator.api.spec import ResonanceCluster, RolloutStrategy
from resonance_operator.desired import meta, worker
from resonance_operator.kube import children as kube_children
from resonance_operator.kube.client import KubeClient
from resonance_operator.probe.pods import PodProbe
from resonance_operator.probe.targets import DrainReport, PodTarget, drain_requests, pod_targets
from resonance_operator.rollout.analysis import Reading
from resonance_operator.rollout.exposition import ExpositionError, parse_exposition
from resonance_operator.rollout.plan import current_analysis
from resonance_operator.rollout.scrapes import Scrape
from resonance_operator.rollout.state import RolloutState
from resonance_operator.rollout_pass.step import Observation, api_key

logger = logging.getLogger("resonance.operator.rollout")


async def gather(
    kube: KubeClient, probe: PodProbe, cluster: ResonanceCluster, observed: Observed, now: float
) -> Observation:
    """The observation of one pass at ``now``; ``observed`` is the reconcile's own (children, Secrets)."""
    state = RolloutState.from_status(cluster.status.get("rollout"))
    key = api_key(observed, cluster)
    if cluster.spec.rollout.strategy is RolloutStrategy.ROLLING:
        return Observation(cluster, observed, state, api_key=key)

    targets: list[PodTarget] = []
    scrapes: list[Scrape] = []
    if state.canary_revision is not None or state.draining_revision is not None:
        pods = await kube_children.list_worker_pods(kube, cluster)
        targets = pod_targets(pods, meta.REVISION_LABEL, worker.HTTP_PORT_NAME)
        wanted = {state.stable_revision, state.canary_revision, state.draining_revision}
        texts = await probe.scrape_all(
            [t for t in targets if t.revision in wanted], cluster.spec.rollout.metrics_path
        )
        scrapes = _scrapes(texts, now)

    readings = await _promql_readings(probe, cluster, state)
    reports: list[DrainReport | None] | None = None
    draining = state.draining_revision
    if draining is not None and now >= (state.drain_not_before or now):
        losing = [t for t in targets if t.revision == draining]
        deadline = (state.drain_deadline or now) - now
        reports = await _drain_progress(probe, cluster, losing, key, deadline)
    return Observation(
        cluster,
        observed,
        state,
        targets=tuple(targets),
        scrapes=tuple(scrapes),
        drain_reports=None if reports is None else tuple(reports),
        api_key=key,
        readings=readings,
    )


async def _promql_readings(
    probe: PodProbe, cluster: ResonanceCluster, state: RolloutState
) -> tuple[tuple[Reading, ...], tuple[Reading, ...]] | None:
    """The canary's and stable's readings while an analysis with a Prometheus source runs."""
    spec = current_analysis(cluster.spec.rollout, state)
    if (
        spec is None
        or spec.prometheus is None
        or state.canary_revision is None
        or state.stable_revision is None
    ):
        return None
    where = {"namespace": cluster.namespace, "cluster": cluster.name}
    canary = await probe.prometheus.readings(spec, revision=state.canary_revision, **where)
    stable = await probe.prometheus.readings(spec, revision=state.stable_revision, **where)
    return canary, stable


async def _drain_progress(
    probe: PodProbe,
    cluster: ResonanceCluster,
    losing: Sequence[PodTarget],
    key: str | None,
    deadline_seconds: float,
) -> list[DrainReport | None]:
    """How far each Pod of the draining revision is.

    ``POST /drain`` is idempotent: a Pod already draining answers with its progress; one that is not
    (the first call missed it, or the operator restarted) starts the drain the state already decided.
    """
    if key is None:
        return [None for _ in losing]
    requests = drain_requests(cluster.spec.rollout.drain, losing, deadline_seconds)
    return await probe.start_drains(list(zip(losing, requests, strict=True)), key)


def _scrapes(pairs: Sequence[tuple[PodTarget, str]], now: float) -> list[Scrape]:
    scrapes = []
    for target, text in pairs:
        try:
            samples = parse_exposition(text)
        except ExpositionError as error:
            logger.warning("metrics of pod %s: %s", target.name, error)
            continue
        scrapes.append(Scrape(target.name, target.revision, now, samples))
    return scrapes
