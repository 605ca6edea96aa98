"""The temporal graph: the projector (event log → Neo4j) and the queries over it.

The only package of the worker that imports ``neo4j`` (an import-linter contract
keeps it so). Callers see :class:`GraphError` / :class:`GraphQueryInputError`, never
a driver exception. The worker reaches it through ``store.Neo4jGraphStore`` (built by
``resonance_worker.storage.build_storage`` when a URI is set), which the living core
sees as a ``storage.GraphStore`` without importing this package. Model and queries:
docs/living-core.md, "Temporal graph and event log".
"""

from __future__ import annotations

from resonance_worker.graph.errors import GraphError, GraphQueryInputError
from resonance_worker.graph.projection import ProjectionInputError, plan
from resonance_worker.graph.projector import Projector, ProjectorConfig, ProjectorStats
from resonance_worker.graph.queries import (
    QUADRANTS,
    HourBucket,
    Partner,
    StateRecord,
    TimeOfDay,
    TransitionMatrix,
    replay_window,
    resonance_partners,
    state_as_of,
    time_of_day,
    timeline,
    transition_matrix,
)
from resonance_worker.graph.schema import ensure_schema

__all__ = [
    "QUADRANTS",
    "GraphError",
    "GraphQueryInputError",
    "HourBucket",
    "Partner",
    "ProjectionInputError",
    "Projector",
    "ProjectorConfig",
    "ProjectorStats",
    "StateRecord",
    "TimeOfDay",
    "TransitionMatrix",
    "ensure_schema",
    "plan",
    "replay_window",
    "resonance_partners",
    "state_as_of",
    "time_of_day",
    "timeline",
    "transition_matrix",
]
