"""Handlers for ``ResonanceCluster``: create/update/resume, a resync timer for
drift repair in bounded time, and watches on the workloads it owns so pods
becoming ready (or a child being deleted) show up at once."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from collections.abc import Mapping
from typing import Any

import kopf
import pydantic

from resonance_operator.api import kinds
from resonance_operator.api.spec import GROUP, KIND, PLURAL, VERSION, parse
from resonance_operator.desired import meta
from resonance_operator.errors import ApiError
from resonance_operator.kube import children as kube_children
from resonance_operator.kube import credentials as kube_credentials
from resonance_operator.kube.client import KubeClient
from resonance_operator.metrics import OperatorMetrics
from resonance_operator.probe.pods import PodProbe
from resonance_operator.reconcile import Outcome, reconcile_cluster
from resonance_operator.rollout_pass.step import Memory
from resonance_operator.settings import OperatorSettings
from resonance_operator.status import notices

logger = logging.getLogger("resonance.operator")

FINALIZER = f"{GROUP}/kopf-finalizer"
STORAGE_PREFIX = f"operator.{GROUP}"
"""Prefix of kopf's progress and diff-base annotations. Not ``GROUP``: kopf's diff-base drops every
annotation under a prefix that holds its ``kopf-managed`` marker, so with its storages under
``GROUP`` a change of ``resonance.liminal.dev/rollout-action`` reached no handler and waited for the
resync. Not ``kopf.…`` either: kopf stores no marker under such a prefix, and then its own progress
annotations would count as changes of the object."""
LEGACY_STORAGE_KEYS = (f"{GROUP}/kopf-managed", f"{GROUP}/last-handled-configuration")
"""What the storages left under ``GROUP`` before they moved; while the marker stays, kopf keeps
ignoring ``GROUP``'s annotations, so the first handling removes both (progress keys under ``GROUP``
were purged by kopf after each successful handling)."""
RETRY_DELAY_SECONDS = 5.0
RETRY_MAX_SECONDS = 60.0
REQUEUE_TICK_SECONDS = 1.0


@dataclasses.dataclass
class Runtime:
    """What the handlers share: one API client, the metrics, a lock per cluster."""

    settings: OperatorSettings
    kube: KubeClient
    metrics: OperatorMetrics
    credentials: kube_credentials.Credentials
    probe: PodProbe = dataclasses.field(default_factory=PodProbe)
    locks: dict[tuple[str, str], asyncio.Lock] = dataclasses.field(default_factory=dict)
    waiting: set[tuple[str, str]] = dataclasses.field(default_factory=set)
    memories: dict[tuple[str, str], Memory] = dataclasses.field(default_factory=dict)
    due: dict[tuple[str, str], float | None] = dataclasses.field(default_factory=dict)
    """When each cluster asked to be reconciled again (monotonic seconds; ``None``: not needed)."""

    async def reconcile(self, body: Mapping[str, Any], trigger: str, retry: int = 0) -> Outcome | None:
        """Reconcile one cluster; concurrent triggers for the same cluster coalesce into one."""
        key = (str(body["metadata"]["namespace"]), str(body["metadata"]["name"]))
        if key in self.waiting:
            return None  # a reconcile is already queued behind the running one; it will see this change
        lock = self.locks.setdefault(key, asyncio.Lock())
        contended = lock.locked()
        self.waiting.add(key)
        async with lock:
            self.waiting.discard(key)
            # A child event carries no cluster body, and a trigger that waited stands in for the ones
            # coalesced into it: both act on a fresh read. Kopf's own bodies are fresh otherwise.
            if contended or trigger not in {"change", "resync"}:
                fresh = await kube_children.get_cluster(self.kube, *key)
                if fresh is None or fresh["metadata"].get("deletionTimestamp"):
                    self.forget(key)
                    return None
                body = fresh
            return await self._reconcile_now(body, trigger, key, retry)

    async def _reconcile_now(
        self, body: Mapping[str, Any], trigger: str, key: tuple[str, str], retry: int
    ) -> Outcome | None:
        self.metrics.reconciles.labels(trigger=trigger).inc()
        started = time.perf_counter()
        try:
            outcome = await reconcile_cluster(
                self.kube,
                body,
                instance=self.settings.instance,
                probe=self.probe,
                memory=self.memories.setdefault(key, Memory()),
            )
        except pydantic.ValidationError as exc:
            self.metrics.reconcile_errors.labels(kind="parse").inc()
            raise kopf.PermanentError(f"the object does not match the operator's API: {exc}") from exc
        except ApiError as exc:
            self.metrics.reconcile_errors.labels(kind="api").inc()
            raise kopf.TemporaryError(str(exc), delay=retry_delay(retry, random.random())) from exc
        finally:
            self.metrics.reconcile_duration.observe(time.perf_counter() - started)
        if outcome is None:
            self.forget(key)
            return None
        self.memories[key] = outcome.memory
        self._requeue(key, outcome.requeue_after)
        self.metrics.clusters_ready.labels(namespace=key[0], name=key[1]).set(1 if outcome.ready else 0)
        if outcome.apply_error is not None:
            self.metrics.reconcile_errors.labels(kind="apply").inc()
            raise kopf.TemporaryError(outcome.apply_error, delay=retry_delay(retry, random.random()))
        return outcome

    async def post_notices(self, body: Mapping[str, Any], before: Mapping[str, Any] | None) -> None:
        """The Events a spec edit earns (``status/notices.py``); a spec that does not parse gets none
        here (its reconcile reports it)."""
        try:
            cluster = parse(body)
        except pydantic.ValidationError:
            return
        for type_, reason, message in notices.spec_notices(cluster, before):
            try:
                await kube_children.post_event(
                    self.kube, cluster, type_, reason, message, reporting_instance=self.settings.instance
                )
            except ApiError as exc:  # an Event is a courtesy; never fail a handler over one
                logger.warning("could not post event %s on %s: %s", reason, cluster.name, exc)

    def forget(self, key: tuple[str, str]) -> None:
        """A cluster deleted or being deleted: drop what this process keeps about it, and its
        ``resonance_operator_cluster_ready`` series (no stale series for a cluster that is gone)."""
        self.memories.pop(key, None)
        self.due.pop(key, None)
        with contextlib.suppress(KeyError):
            self.metrics.clusters_ready.remove(*key)

    def _requeue(self, key: tuple[str, str], delay: float | None) -> None:
        self.due[key] = None if delay is None else time.monotonic() + delay

    def requeue_due(self, key: tuple[str, str]) -> bool:
        """Whether the rollout tick should reconcile ``key`` now.

        A rollout step can be due sooner than the resync period (a short pause, an analysis
        interval, a drain poll); the tick checks every second. A cluster this process has not
        reconciled yet (just started) is due at once.
        """
        due = self.due.get(key, 0.0)
        return due is not None and time.monotonic() >= due


def retry_delay(retry: int, unit_random: float) -> float:
    """Seconds before kopf retries a failed reconcile: 5 s doubling per retry up to 60 s, times a
    jitter of 0.5-1 drawn from ``unit_random`` in [0, 1), so clusters that failed together (an API
    server restart) do not all retry in the same second."""
    base = min(RETRY_MAX_SECONDS, RETRY_DELAY_SECONDS * 2.0 ** min(max(retry, 0), 10))
    return base * (0.5 + unit_random / 2)


def _rollout_in_flight(status: kopf.Status, **_: Any) -> bool:
    rollout = status.get("rollout") or {}
    return bool(rollout.get("updateRevision") or rollout.get("drainingRevision"))


def _owner_name(body: Mapping[str, Any]) -> str | None:
    for ref in body.get("metadata", {}).get("ownerReferences", []):
        if ref.get("kind") == KIND and str(ref.get("apiVersion", "")).startswith(f"{GROUP}/"):
            return str(ref["name"])
    return None


def build_registry(runtime: Runtime) -> kopf.OperatorRegistry:
    """A registry with every handler, bound to ``runtime``."""
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        creds = runtime.credentials
        return kopf.ConnectionInfo(
            server=creds.server,
            ca_path=creds.ca_path,
            insecure=creds.insecure,
            scheme="Bearer" if creds.bearer_token() else None,
            token=creds.bearer_token(),
            certificate_path=creds.cert_path,
            private_key_path=creds.key_path,
            default_namespace=creds.default_namespace,
        )

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.finalizer = FINALIZER
        # Progress and diff-base in our own annotations; the status belongs to the reconciler.
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=STORAGE_PREFIX)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=STORAGE_PREFIX)
        # We post our own Events on real transitions; kopf would post one per log line.
        settings.posting.enabled = False
        # Least-privilege RBAC: no cluster-wide watch of CRDs and namespaces.
        settings.scanning.disabled = True
        settings.networking.request_timeout = runtime.settings.request_timeout_seconds
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        settings.peering.priority = runtime.settings.priority

    @kopf.on.cleanup(registry=registry)
    async def close(**_: Any) -> None:
        await runtime.probe.close()
        await runtime.kube.close()

    @kopf.on.resume(GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.update(GROUP, VERSION, PLURAL, registry=registry)
    async def changed(body: kopf.Body, patch: kopf.Patch, retry: int = 0, **_: Any) -> None:
        for key in LEGACY_STORAGE_KEYS:
            if key in body.metadata.annotations:
                patch.metadata.annotations[key] = None  # kopf applies the patch after the handler
        await runtime.reconcile(body, "change", retry)

    # Spec edits the operator acts on differently than written get an Event when made, not per reconcile.
    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.update(GROUP, VERSION, PLURAL, field="spec.worker", registry=registry)
    async def worker_edited(body: kopf.Body, reason: str, old: Any, **_: Any) -> None:
        await runtime.post_notices(body, old if reason == kopf.Reason.UPDATE else None)

    # Optional: no finalizer of its own; it only forgets what this process keeps about the cluster.
    @kopf.on.delete(GROUP, VERSION, PLURAL, optional=True, registry=registry)
    async def deleted(body: kopf.Body, **_: Any) -> None:
        runtime.forget((str(body["metadata"]["namespace"]), str(body["metadata"]["name"])))

    @kopf.timer(GROUP, VERSION, PLURAL, interval=runtime.settings.resync_seconds, registry=registry)
    async def resync(body: kopf.Body, retry: int = 0, **_: Any) -> None:
        await runtime.reconcile(body, "resync", retry)

    # A kopf timer (not an asyncio timer of our own) so that a peer frozen by kopf's peering stays
    # frozen; it runs only while a rollout is in flight and reconciles only when a step is due.
    @kopf.timer(
        GROUP, VERSION, PLURAL, interval=REQUEUE_TICK_SECONDS, when=_rollout_in_flight, registry=registry
    )
    async def rollout_tick(body: kopf.Body, **_: Any) -> None:
        key = (str(body["metadata"]["namespace"]), str(body["metadata"]["name"]))
        if runtime.requeue_due(key):
            await runtime.reconcile(body, "requeue")

    managed = {"app.kubernetes.io/managed-by": meta.MANAGED_BY}

    async def child_changed(event: kopf.RawEvent, body: kopf.Body, namespace: str | None, **_: Any) -> None:
        owner = _owner_name(body)
        if owner is None or namespace is None:
            return
        status = body.get("status", {})
        # Workload status moves on its own (pods start, get ready); that is what the owner reports.
        if event.get("type") == "DELETED" or status:
            await runtime.reconcile({"metadata": {"namespace": namespace, "name": owner}}, "child")

    for kind in kinds.WATCHED:
        kopf.on.event(kind.group, kind.version, kind.plural, labels=managed, registry=registry)(child_changed)

    return registry
