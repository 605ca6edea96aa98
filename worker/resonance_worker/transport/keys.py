"""The worker application's keys: what ``create_app`` puts in the ``web.Application`` for the
handlers and for ``__main__`` to find. Every key of the worker is here, typed."""

from __future__ import annotations

from aiohttp import web

from resonance_worker.living.core import Living
from resonance_worker.living.rights import DataRights
from resonance_worker.metrics import WorkerMetrics
from resonance_worker.settings import WorkerSettings
from resonance_worker.storage import Storage
from resonance_worker.transport.drain import Drainer
from resonance_worker.transport.node import Node
from resonance_worker.transport.positions import PositionChecker

SETTINGS = web.AppKey("settings", WorkerSettings)
STORAGE = web.AppKey("storage", Storage)
"""The engine, event log and graph; started with the app, closed at its cleanup."""
METRICS = web.AppKey("metrics", WorkerMetrics)
NODE = web.AppKey("node", Node)
DRAINER = web.AppKey("drainer", Drainer)
"""Drains this worker: ``POST /drain`` and SIGTERM (``__main__``)."""
POSITION_CHECKER = web.AppKey("position_checker", PositionChecker)
"""Only when ``position_check_seconds`` > 0."""
LIVING = web.AppKey("living", Living)
"""Only when the living core is on."""
RIGHTS = web.AppKey("rights", DataRights)
"""Export, erasure and retention of personal data (``user.export``, ``user.erase``)."""
