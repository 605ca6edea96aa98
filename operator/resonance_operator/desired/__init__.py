"""Pure builders of every child object of a ``ResonanceCluster``.

All functions here are purely computational: they take the typed cluster (and,
where needed, values the caller observed or generated) and return plain dicts
ready for server-side apply. No API calls, no clock, no randomness.
"""
