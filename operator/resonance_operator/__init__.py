"""Resonance operator: reconciles ``ResonanceCluster`` objects
(``resonance.liminal.dev``) into worker Deployments, Services, Redis, Neo4j and
rollouts.

Layers, outermost first (enforced by ``.importlinter``): ``handlers`` (the only
place importing kopf) → ``reconcile`` (one reconcile as a table of contents) →
``rollout_pass`` (observe → step → act) → ``kube`` (the only place talking to the
API) | ``probe`` (the only place talking to worker Pods) → ``status`` (pure) →
``desired`` (pure builders) → ``rollout`` (the pure step machine and analysis) →
``api`` (typed spec, conditions, kinds; no I/O).

Where to add things:

* an operator child: its pure builder in ``desired/``, one entry in the registry
  ``desired/children.py``; a kind new to the operator in ``api/kinds.py`` and its
  RBAC rule in the chart (``tests/operator/test_chart.py`` checks);
* a rollout step: ``rollout/strategies.py`` (``canary_steps``), with its field in
  ``api/spec.py`` and the CRD;
* a condition or a reason: ``api/conditions.py``, and its rules in
  ``status/ready.py``, ``progressing.py`` or ``degraded.py``.
"""

__version__ = "0.1.0"
