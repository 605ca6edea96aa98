"""Errors of the temporal graph. Callers (RPC, server API) never need to import neo4j::

EngineError (resonance_worker.errors)
└── GraphError                  Neo4j failed, timed out or is unreachable; retry later
ValueError
├── GraphQueryInputError        a bad query argument (the message says which)
└── ProjectionInputError        an event payload that cannot be projected (graph.projection)

The first two are defined in ``resonance_worker.errors`` (catchable without loading this package,
hence neo4j) and named here for the graph's own modules.
"""

from __future__ import annotations

from resonance_worker.errors import GraphError, GraphQueryInputError

__all__ = ["GraphError", "GraphQueryInputError"]
