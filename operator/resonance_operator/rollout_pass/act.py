"""The rollout pass's actions (I/O, writes): carry out what ``step.take`` decided.

Called by the reconciler after it applied the children of ``Pass.topology``, so
the Services no longer select a revision that has just lost.
"""

from __future__ import annotations

from resonance_operator.api.spec import ResonanceCluster
from resonance_operator.kube import children as kube_children
from resonance_operator.kube.client import KubeClient
from resonance_operator.probe.pods import PodProbe
from resonance_operator.rollout.request import ACTION_ANNOTATION
from resonance_operator.rollout_pass.step import Pass


async def carry_out(kube: KubeClient, probe: PodProbe, cluster: ResonanceCluster, done: Pass) -> None:
    """Start the drain a promotion or rollback began; drop the annotation the decision handled."""
    if done.drains is not None:
        await probe.start_drains(done.drains.orders, done.drains.api_key)
    if done.remove_annotation:
        await kube_children.remove_annotation(kube, cluster, ACTION_ANNOTATION)
