"""Errors of the temporal graph. Callers (RPC, server API) never need to import neo4j::

EngineError (resonance_worker.errors)
└── GraphError                  Neo4j failed, timed out or is unreachable; retry later
ValueError
├── GraphQueryInputError        a bad query argument (the message says which)
└── ProjectionInputError        an event payload that cannot be projected (graph.projection)
"""

from __future__ import annotations

from resonance_worker.errors import EngineError


class GraphError(EngineError):
    """Neo4j failed, timed out or is unreachable."""


class GraphQueryInputError(ValueError):
    """A query argument the graph refuses."""
