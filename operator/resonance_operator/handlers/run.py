"""Start kopf with the operator's settings."""

from __future__ import annotations

import asyncio
import logging
import threading

import kopf
from prometheus_client import start_http_server

from resonance_operator.handlers.cluster import Runtime, build_registry
from resonance_operator.kube import credentials as kube_credentials
from resonance_operator.kube.client import KubeClient
from resonance_operator.metrics import OperatorMetrics
from resonance_operator.probe.pods import PodProbe
from resonance_operator.settings import OperatorSettings


def build_runtime(settings: OperatorSettings, metrics: OperatorMetrics | None = None) -> Runtime:
    metrics = metrics or OperatorMetrics.create()
    credentials = kube_credentials.load(settings.kubeconfig)
    kube = KubeClient(
        credentials,
        field_manager=settings.field_manager,
        request_timeout=settings.request_timeout_seconds,
        max_concurrency=settings.max_concurrent_requests,
        on_request=metrics.count_request,
    )
    probe = PodProbe(timeout=settings.probe_timeout_seconds)
    return Runtime(settings=settings, kube=kube, metrics=metrics, credentials=credentials, probe=probe)


async def serve(
    runtime: Runtime,
    *,
    stop_flag: asyncio.Future[None] | threading.Event | None = None,
    ready_flag: asyncio.Future[None] | threading.Event | None = None,
) -> None:
    """Run kopf with ``runtime`` until ``stop_flag`` is set (or a signal, in the main thread)."""
    settings = runtime.settings
    namespaces = [settings.namespace] if settings.namespace else []
    await kopf.operator(
        registry=build_registry(runtime),
        clusterwide=not namespaces,
        namespaces=namespaces,
        standalone=not settings.peering,
        peering_name=settings.peering or None,
        priority=settings.priority,
        liveness_endpoint=f"http://0.0.0.0:{settings.health_port}/healthz" if settings.health_port else None,
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )


def run(settings: OperatorSettings) -> None:
    """Run the operator until it is stopped (the ``resonance-operator`` console script)."""
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    runtime = build_runtime(settings)
    if settings.metrics_port:
        start_http_server(settings.metrics_port, registry=runtime.metrics.registry)
    asyncio.run(serve(runtime))
