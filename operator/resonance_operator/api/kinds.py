"""Every Kubernetes kind the operator touches, one entry each: its API path and the verbs it uses.

The API client builds every path from ``plural`` (:data:`PLURALS`); the handlers
watch the kinds marked ``watched``; the Helm chart must grant each kind its
``verbs`` — ``tests/operator/test_chart.py`` renders the chart's RBAC and checks it
against :data:`KINDS`, so a kind added here without its RBAC rule fails there.
The children built from these kinds are listed in ``desired/children.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from resonance_operator.api.spec import API_VERSION, KIND, PLURAL

CHILD_VERBS = frozenset({"get", "create", "patch", "delete"})
"""A child is read by name, server-side applied (which creates or patches it) and pruned."""


@dataclasses.dataclass(frozen=True)
class Kind:
    """One API resource and what the operator does with it."""

    api_version: str
    kind: str
    plural: str
    verbs: frozenset[str]
    subresources: Mapping[str, frozenset[str]] = dataclasses.field(default_factory=dict)
    watched: bool = False
    """Its objects are watched (kopf), so their status changes reach the owner's status at once."""
    optional: bool = False
    """Served only where a CRD installs it: the operator asks discovery before it reads or writes one."""

    @property
    def group(self) -> str:
        """The API group (``""`` for the core group), as RBAC rules name it."""
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]


def child(
    api_version: str,
    kind: str,
    plural: str,
    *,
    listed: bool = False,
    watched: bool = False,
    optional: bool = False,
) -> Kind:
    """The kind of a child: read by name, applied, pruned; also ``listed`` by label, or ``watched``."""
    verbs = set(CHILD_VERBS)
    if listed or watched:
        verbs.add("list")
    if watched:
        verbs.add("watch")
    return Kind(api_version, kind, plural, frozenset(verbs), watched=watched, optional=optional)


CONFIG_MAP = child("v1", "ConfigMap", "configmaps")
SECRET = child("v1", "Secret", "secrets")
SERVICE = child("v1", "Service", "services")
# Revision Deployments are also listed by label, so a revision nobody remembers is still pruned.
DEPLOYMENT = child("apps/v1", "Deployment", "deployments", listed=True, watched=True)
STATEFUL_SET = child("apps/v1", "StatefulSet", "statefulsets", watched=True)
INGRESS = child("networking.k8s.io/v1", "Ingress", "ingresses")
NETWORK_POLICY = child("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies")
HORIZONTAL_POD_AUTOSCALER = child("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers")
POD_DISRUPTION_BUDGET = child("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets")
SERVICE_MONITOR = child("monitoring.coreos.com/v1", "ServiceMonitor", "servicemonitors", optional=True)
POD_MONITOR = child("monitoring.coreos.com/v1", "PodMonitor", "podmonitors", optional=True)
HTTP_ROUTE = child("gateway.networking.k8s.io/v1", "HTTPRoute", "httproutes", optional=True)
# Scaling on connections per pod, where KEDA is installed (desired/keda.py).
SCALED_OBJECT = child("keda.sh/v1alpha1", "ScaledObject", "scaledobjects", optional=True)
# Backups (spec.backup): watched, so a backup Job's end reaches status.backup at once.
CRON_JOB = child("batch/v1", "CronJob", "cronjobs", watched=True)

CLUSTER = Kind(
    API_VERSION,
    KIND,
    PLURAL,
    # kopf lists, watches and patches it (finalizer, its annotations); the reconciler reads it
    # afresh and drops a handled rollout annotation.
    frozenset({"get", "list", "watch", "patch"}),
    subresources={
        "status": frozenset({"patch"}),
        # Children's owner references set blockOwnerDeletion, which needs update on finalizers.
        "finalizers": frozenset({"update"}),
    },
)
EVENT = Kind("v1", "Event", "events", frozenset({"create"}))
# Canary / blue-green: the worker Pods are listed to scrape their /metrics and drain them; when the
# feature flags change, their annotation is patched so kubelets refresh the flags' volume at once.
POD = Kind("v1", "Pod", "pods", frozenset({"list", "patch"}))

KINDS: tuple[Kind, ...] = (
    CLUSTER,
    CONFIG_MAP,
    SECRET,
    SERVICE,
    DEPLOYMENT,
    STATEFUL_SET,
    INGRESS,
    NETWORK_POLICY,
    HORIZONTAL_POD_AUTOSCALER,
    POD_DISRUPTION_BUDGET,
    SERVICE_MONITOR,
    POD_MONITOR,
    HTTP_ROUTE,
    SCALED_OBJECT,
    CRON_JOB,
    EVENT,
    POD,
)
PLURALS: Mapping[tuple[str, str], str] = {(k.api_version, k.kind): k.plural for k in KINDS}
"""(apiVersion, kind) → plural resource name, for every kind the operator touches."""
WATCHED: tuple[Kind, ...] = tuple(k for k in KINDS if k.watched)
