"""The worker's error tree.

::

    WorkerError                 base of everything the worker raises on purpose
    ├── ConfigError             settings that cannot work (raised at start-up)
    └── EngineError             the engine (Redis) failed or is unreachable
        ├── EngineTimeoutError       an engine call exceeded its deadline
        └── EngineCircuitOpenError   refused at once: the engine failed repeatedly (circuit open)

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
