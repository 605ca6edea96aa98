"""Resonance operator: reconciles ``ResonanceCluster`` objects
(``resonance.liminal.dev``) into worker Deployments, Services, Redis, Neo4j and
rollouts.

Layers, outermost first (enforced by ``.importlinter``): ``handlers`` (the only
place importing kopf) → ``reconcile`` → ``kube`` (the only place talking to the
API) → ``status`` / ``rollout`` → ``desired`` (pure builders) → ``api``
(typed spec, no I/O).
"""

__version__ = "0.1.0"
