"""Start kopf with the operator's settings."""

from __future__ import annotations

import asyncio

import kopf

from resonance_operator.settings import OperatorSettings


def run(settings: OperatorSettings) -> None:
    """Run the operator until it is stopped."""
    namespaces = [settings.namespace] if settings.namespace else []
    asyncio.run(
        kopf.operator(
            clusterwide=not namespaces,
            namespaces=namespaces,
            standalone=not settings.peering,
            peering_name=settings.peering or None,
            liveness_endpoint=f"http://0.0.0.0:{settings.health_port}/healthz",
        )
    )
