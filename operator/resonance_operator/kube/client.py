"""A small async Kubernetes API client: GET, server-side apply, DELETE, status
merge-patch and Event creation, each counted so tests can assert on them."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

from resonance_operator.api import kinds
from resonance_operator.api.observed import ChildKey
from resonance_operator.errors import ApiError, ConflictError
from resonance_operator.kube.credentials import Credentials

_NAMESPACED = re.compile(r"/namespaces/([^/]+)/")
WRITE_VERBS = frozenset({"apply", "delete", "patch_status", "patch", "create"})
RequestHook = Callable[[str, int], None]


def collection_path(api_version: str, kind: str, namespace: str) -> str:
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    return f"{prefix}/namespaces/{namespace}/{kinds.PLURALS[(api_version, kind)]}"


def object_path(key: ChildKey, namespace: str) -> str:
    return f"{collection_path(key.api_version, key.kind, namespace)}/{key.name}"


class KubeClient:
    """One per operator process; ``calls`` counts requests by verb."""

    def __init__(
        self,
        credentials: Credentials,
        *,
        field_manager: str = "resonance-operator",
        request_timeout: float = 30.0,
        max_concurrency: int = 32,
        on_request: RequestHook | None = None,
    ) -> None:
        self._credentials = credentials
        self.field_manager = field_manager
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._session: aiohttp.ClientSession | None = None
        self._limit = asyncio.Semaphore(max_concurrency)
        self._on_request = on_request
        self._discovery: dict[str, tuple[float, bool]] = {}
        self.calls: collections.Counter[str] = collections.Counter()
        self.calls_by_namespace: collections.Counter[tuple[str, str]] = collections.Counter()

    @property
    def writes(self) -> int:
        return sum(count for verb, count in self.calls.items() if verb in WRITE_VERBS)

    @property
    def reads(self) -> int:
        return sum(count for verb, count in self.calls.items() if verb not in WRITE_VERBS)

    def writes_in(self, namespace: str) -> int:
        return sum(
            n for (ns, verb), n in self.calls_by_namespace.items() if ns == namespace and verb in WRITE_VERBS
        )

    def reads_in(self, namespace: str) -> int:
        return sum(
            n
            for (ns, verb), n in self.calls_by_namespace.items()
            if ns == namespace and verb not in WRITE_VERBS
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": self.field_manager}
        if (token := self._credentials.bearer_token()) is not None:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    async def _request(
        self,
        verb: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        allow_not_found: bool = False,
    ) -> dict[str, Any] | None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._credentials.ssl_context()), timeout=self._timeout
            )
        headers = self._headers()
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body)
        self.calls[verb] += 1
        if (scoped := _NAMESPACED.search(path)) is not None:
            self.calls_by_namespace[(scoped.group(1), verb)] += 1
        try:
            async with (
                self._limit,
                self._session.request(
                    method, self._credentials.server + path, params=params, data=data, headers=headers
                ) as response,
            ):
                if self._on_request is not None:
                    self._on_request(verb, response.status)
                text = await response.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            # No answer at all (the API server restarting, a timeout): as retryable as a 503, and
            # one error type for the handlers, which retry an ApiError after a short delay.
            if self._on_request is not None:
                self._on_request(verb, 0)
            raise ApiError(503, method, path, f"no answer from the API server: {exc!r}") from exc
        if response.status == 404 and allow_not_found:
            return None
        if response.status >= 400:
            message = text
            with contextlib.suppress(ValueError):
                message = json.loads(text).get("message", text)
            error = ConflictError if response.status == 409 else ApiError
            raise error(response.status, method, path, message)
        return json.loads(text) if text else {}

    async def get(self, path: str) -> dict[str, Any] | None:
        """The object at ``path``, or ``None`` when it does not exist."""
        return await self._request("get", "GET", path, allow_not_found=True)

    async def list(self, path: str, label_selector: str) -> list[dict[str, Any]]:
        """The items of the collection at ``path`` matching ``label_selector``."""
        result = await self._request("list", "GET", path, params={"labelSelector": label_selector})
        assert result is not None
        return list(result.get("items") or [])

    async def patch(self, path: str, body: Mapping[str, Any]) -> None:
        """A JSON merge patch of the object at ``path`` (used for annotations only)."""
        await self._request("patch", "PATCH", path, body=body, content_type="application/merge-patch+json")

    async def apply(
        self,
        body: Mapping[str, Any],
        namespace: str,
        *,
        force: bool = False,
        dry_run: bool = False,
        field_manager: str | None = None,
    ) -> dict[str, Any]:
        """Server-side apply ``body`` as this field manager (or ``field_manager``).

        ``dry_run`` runs every validation and admission step and stores nothing (not counted as a write).
        """
        path = object_path(ChildKey.of(body), namespace)
        params = {
            "fieldManager": field_manager or self.field_manager,
            "force": "true" if force else "false",
        }
        if dry_run:
            params["dryRun"] = "All"
        result = await self._request(
            "dry_run" if dry_run else "apply",
            "PATCH",
            path,
            params=params,
            body=body,
            content_type="application/apply-patch+yaml",
        )
        assert result is not None
        return result

    async def delete(self, path: str) -> None:
        await self._request(
            "delete", "DELETE", path, body={"propagationPolicy": "Background"}, allow_not_found=True
        )

    async def patch_status(
        self, path: str, status: Mapping[str, Any], *, resource_version: str | None = None
    ) -> None:
        """A JSON merge patch of the status; with ``resource_version`` only over that version of the
        object (else 409, :class:`~resonance_operator.errors.ConflictError`)."""
        body: dict[str, Any] = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        await self._request(
            "patch_status", "PATCH", f"{path}/status", body=body, content_type="application/merge-patch+json"
        )

    async def create(self, collection: str, body: Mapping[str, Any]) -> None:
        await self._request("create", "POST", collection, body=body)

    def forget_discovery(self) -> None:
        """Ask discovery again on the next question (a CRD was installed or removed meanwhile)."""
        self._discovery.clear()

    async def api_group_version_served(self, group_version: str, *, ttl: float = 300.0) -> bool:
        """Discovery (which every authenticated user may read), cached for ``ttl`` seconds."""
        cached = self._discovery.get(group_version)
        if cached is not None and time.monotonic() - cached[0] < ttl:
            return cached[1]
        served = await self._request("discovery", "GET", f"/apis/{group_version}", allow_not_found=True)
        self._discovery[group_version] = (time.monotonic(), served is not None)
        return served is not None
