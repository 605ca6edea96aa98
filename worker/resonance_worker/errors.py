"""The worker's error tree.

::

    WorkerError                 base of everything the worker raises on purpose
    ├── ConfigError             settings that cannot work (raised at start-up)
    └── EngineError             a store (the engine, the event log, the graph) failed or is away
        ├── EngineTimeoutError       an engine call exceeded its deadline
        ├── EngineCircuitOpenError   refused at once: the engine failed repeatedly (circuit open)
        └── GraphError               Neo4j failed, timed out or is unreachable; retry later
    ValueError
    └── GraphQueryInputError    a bad argument to a graph query (the message says which)

The event log's errors (``EventLogError`` under ``EngineError``) are in
``resonance_worker.eventlog.base``. The graph's are here, not in ``resonance_worker.graph``, so
that code calling the graph through ``storage.GraphStore`` catches them without loading neo4j.

Protocol errors sent to clients are not exceptions of this tree: they are
values (code and message) produced by the sans-I/O protocol core.
"""

from __future__ import annotations


class WorkerError(Exception):
    """Base class for errors the worker raises deliberately."""


class ConfigError(WorkerError):
    """The settings cannot work; raised before the server starts."""


class EngineError(WorkerError):
    """The engine failed; the caller may retry later."""


class EngineTimeoutError(EngineError):
    """An engine call exceeded its deadline."""


class EngineCircuitOpenError(EngineError):
    """Refused without trying: the engine's circuit breaker is open."""


class EngineOutOfMemoryError(EngineError):
    """Redis refused a write: it reached ``maxmemory`` with ``noeviction`` (nothing was evicted)."""


class GraphError(EngineError):
    """Neo4j failed, timed out or is unreachable."""


class GraphQueryInputError(ValueError):
    """A query argument the graph refuses."""
