"""Feature flags from a file, reloaded without a restart: the watcher and ``GET /features``.

The operator renders the CR's ``spec.features`` into a ConfigMap mounted in every worker pod;
``features_file`` names the file. The worker reads it at start-up, then every
``features_poll_seconds`` reads it again and compares the bytes (a ConfigMap volume is updated by
the kubelet swapping a ``..data`` symlink, so neither the path nor always the mtime says that it
changed; the content does). A changed file is validated whole
(:func:`~resonance_worker.domain.features.parse_feature_text`): a valid one replaces the set in
force at once (:meth:`Node.apply_features`, which tells each ``system:features`` subscriber its own
values); an invalid one is logged with every problem, counted
(``resonance_feature_reloads{result="invalid"}``) and changes nothing. A missing file is no flags.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from aiohttp import web

from resonance_worker.domain.features import EMPTY, FeatureSet, FeatureSetError, parse_feature_text
from resonance_worker.errors import ConfigError
from resonance_worker.transport.background import run_in_background
from resonance_worker.transport.http import ApiError, check_api_key, json_response, response_for
from resonance_worker.transport.node import Node

log = logging.getLogger("resonance.worker.features")


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


class FeatureFile:
    """One flag file and the bytes last read from it."""

    def __init__(self, path: str, node: Node) -> None:
        self.path = Path(path)
        self.node = node
        self.last: bytes | None = b"\0"  # never a file's content: the first read always counts

    def load(self, content: bytes | None) -> FeatureSet | None:
        """Apply ``content`` if it differs from the last read; None when unchanged or refused."""
        if content == self.last:
            return None
        self.last = content
        metrics = self.node.metrics
        try:
            features = EMPTY if content is None else parse_feature_text(content.decode("utf-8", "replace"))
        except FeatureSetError as exc:
            metrics.feature_reloads.labels(result="invalid").inc()
            log.error(
                "feature flags refused; the set in force stays",
                extra={
                    "path": str(self.path),
                    "errors": exc.errors,
                    "version": self.node.features.current.version,
                },
            )
            return None
        told = self.node.apply_features(features)
        metrics.feature_reloads.labels(result="applied").inc()
        log.info(
            "feature flags applied",
            extra={
                "path": str(self.path),
                "version": features.version,
                "flags": len(features.flags),
                "told": told,
            },
        )
        return features

    def load_now(self) -> None:
        """The start-up read: an invalid file stops the worker (nothing was in force before)."""
        content = _read(self.path)
        if content is not None:
            try:
                parse_feature_text(content.decode("utf-8", "replace"))
            except FeatureSetError as exc:
                raise ConfigError(f"features_file {self.path}: {exc}") from exc
        self.load(content)

    async def watch(self, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            try:
                content = await asyncio.to_thread(_read, self.path)
            except OSError as exc:
                log.warning("feature flag file unreadable", extra={"path": str(self.path), "error": str(exc)})
                continue
            self.load(content)


def install_features(app: web.Application, node: Node, path: str | None, period: float) -> None:
    """Load the flag file now and watch it; ``GET /features`` (API key) shows the set in force."""

    async def features(request: web.Request) -> web.Response:
        try:
            check_api_key(request, node.settings.api_key)
        except ApiError as exc:
            return response_for(exc)
        return json_response(feature_report(node))

    app.router.add_get("/features", features)
    if path is None:
        return
    file = FeatureFile(path, node)
    file.load_now()
    run_in_background(app, "feature-flags", lambda: file.watch(period))


def feature_report(node: Node) -> dict[str, object]:
    """The definitions' version, the flags with what they gate, and this worker's exposure and
    outcome counts (the console's admin view shows them)."""
    current = node.features.current
    counts: dict[str, dict[str, dict[str, float]]] = {}
    for family, key in (
        (node.metrics.feature_exposures, "exposures"),
        (node.metrics.feature_outcomes, "outcomes"),
    ):
        for metric in family.collect():
            for sample in metric.samples:
                if not sample.name.endswith("_total"):
                    continue
                labels = sample.labels
                slot = counts.setdefault(labels["flag"], {}).setdefault(key, {})
                name = labels["variant"] if key == "exposures" else f"{labels['variant']}:{labels['outcome']}"
                slot[name] = sample.value
    return {
        "version": current.version,
        "flags": [
            {
                "name": flag.name,
                "enabled": flag.enabled,
                "rollout": flag.rollout,
                "variants": {v.name: v.weight for v in flag.variants},
                "gates": {"rpc": sorted(flag.gated_rpc), "namespaces": sorted(flag.gated_namespaces)},
                "outcomes": sorted(flag.outcomes),
                "counts": counts.get(flag.name, {}),
            }
            for flag in current.flags
        ],
    }
