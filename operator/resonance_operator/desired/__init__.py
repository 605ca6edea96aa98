"""Pure builders of every child object of a ``ResonanceCluster``.

All functions here are purely computational: they take the typed cluster (and,
where needed, values the caller observed or generated) and return plain dicts
ready for server-side apply. No API calls, no clock, no randomness.

``children`` is the registry: one entry per kind of child (its kind, its names,
its builder) from which what is observed, applied and pruned is derived. The
builders live by tier: ``settings`` (the worker environment, generated Secrets),
``datastores`` (Redis, Neo4j, NetworkPolicy), ``worker`` (the rolling worker
tier), ``revisions`` (the worker tier of a canary or blue-green), ``keda`` (the
KEDA ScaledObject that scales on connections per pod where KEDA is installed).
"""
