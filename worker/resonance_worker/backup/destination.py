"""Where backups go: a directory (a PersistentVolumeClaim mounted in the Job) or S3-compatible storage.

Both store ``<prefix>/<id>/<file>``; both are thin shells over :mod:`plan` (names, manifest, retention).
S3 requests are signed with AWS Signature V4 (:mod:`sigv4`), path-style, so AWS S3 and compatible stores
(MinIO, Ceph RGW, S3Proxy, versitygw) all work; every request has a deadline.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import xml.etree.ElementTree as ElementTree
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import aiohttp
import yarl

from resonance_worker.backup.plan import MANIFEST, BackupError
from resonance_worker.backup.sigv4 import Credentials, object_url, sign

CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while block := source.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


class Destination(Protocol):
    async def put(self, backup: str, name: str, source: Path) -> None: ...
    async def get(self, backup: str, name: str, target: Path) -> None: ...
    async def backups(self) -> tuple[list[str], list[str]]:
        """(complete, incomplete) backup ids: complete ones hold a manifest."""
        ...

    async def remove(self, backup: str) -> None: ...


class DirectoryDestination:
    def __init__(self, root: Path, prefix: str) -> None:
        self.base = root / prefix

    async def put(self, backup: str, name: str, source: Path) -> None:
        target = self.base / backup / name
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        await asyncio.to_thread(shutil.copyfile, source, partial)
        partial.replace(target)

    async def get(self, backup: str, name: str, target: Path) -> None:
        source = self.base / backup / name
        if not source.is_file():
            raise BackupError(f"backup {backup} has no {name} in {self.base}")
        await asyncio.to_thread(shutil.copyfile, source, target)

    async def backups(self) -> tuple[list[str], list[str]]:
        if not self.base.is_dir():
            return [], []
        folders = [p for p in self.base.iterdir() if p.is_dir()]
        complete = sorted(p.name for p in folders if (p / MANIFEST).is_file())
        incomplete = sorted(p.name for p in folders if not (p / MANIFEST).is_file())
        return complete, incomplete

    async def remove(self, backup: str) -> None:
        await asyncio.to_thread(shutil.rmtree, self.base / backup, True)


class S3Destination:
    def __init__(
        self, endpoint: str, bucket: str, prefix: str, credentials: Credentials, *, timeout: float = 300.0
    ) -> None:
        self.endpoint, self.bucket, self.prefix = endpoint.rstrip("/"), bucket, prefix.strip("/")
        self.credentials = credentials
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    def _key(self, backup: str, name: str = "") -> str:
        return f"{self.prefix}/{backup}/{name}" if name else f"{self.prefix}/{backup}/"

    async def _request(
        self, method: str, key: str = "", *, query: dict[str, str] | None = None, source: Path | None = None
    ) -> tuple[int, bytes, aiohttp.ClientResponse | None]:
        url = object_url(self.endpoint, self.bucket, key, query)
        payload_hash = (
            await asyncio.to_thread(file_sha256, source) if source else hashlib.sha256(b"").hexdigest()
        )
        headers = sign(method, url, self.credentials, at=datetime.now(UTC), payload_sha256=payload_hash)
        async with aiohttp.ClientSession(timeout=self.timeout) as http:
            if source is not None:
                headers["Content-Length"] = str((await asyncio.to_thread(source.stat)).st_size)
                with source.open("rb") as body:
                    async with http.request(
                        method, yarl.URL(url, encoded=True), data=body, headers=headers
                    ) as r:
                        return r.status, await r.read(), None
            async with http.request(method, yarl.URL(url, encoded=True), headers=headers) as r:
                return r.status, await r.read(), None

    @staticmethod
    def _check(status: int, body: bytes, what: str) -> None:
        if status >= 300:
            raise BackupError(f"S3 {what}: HTTP {status}: {body[:300].decode(errors='replace')}")

    async def put(self, backup: str, name: str, source: Path) -> None:
        status, body, _ = await self._request("PUT", self._key(backup, name), source=source)
        self._check(status, body, f"PUT {name}")

    async def get(self, backup: str, name: str, target: Path) -> None:
        # Whole-body read is fine for the event log; the RDB streams (see _download).
        await self._download(self._key(backup, name), target)

    async def _download(self, key: str, target: Path) -> None:
        url = object_url(self.endpoint, self.bucket, key)
        headers = sign("GET", url, self.credentials, at=datetime.now(UTC))
        async with (
            aiohttp.ClientSession(timeout=self.timeout) as http,
            http.get(yarl.URL(url, encoded=True), headers=headers) as r,
        ):
            if r.status >= 300:
                self._check(r.status, await r.read(), f"GET {key}")
            with target.open("wb") as out:
                async for block in r.content.iter_chunked(CHUNK):
                    out.write(block)

    async def _list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        token = ""
        while True:
            query = {"list-type": "2", "prefix": prefix}
            if token:
                query["continuation-token"] = token
            status, body, _ = await self._request("GET", "", query=query)
            self._check(status, body, "LIST")
            root = ElementTree.fromstring(body)
            ns = root.tag.split("}")[0] + "}" if root.tag.startswith("{") else ""
            keys += [el.text or "" for el in root.iter(f"{ns}Key")]
            token = root.findtext(f"{ns}NextContinuationToken") or ""
            if root.findtext(f"{ns}IsTruncated") != "true" or not token:
                return keys

    async def backups(self) -> tuple[list[str], list[str]]:
        found: dict[str, bool] = {}
        for key in await self._list(self.prefix + "/"):
            parts = key[len(self.prefix) + 1 :].split("/")
            if len(parts) >= 2 and parts[0]:
                found[parts[0]] = found.get(parts[0], False) or parts[1] == MANIFEST
        return sorted(b for b, done in found.items() if done), sorted(
            b for b, done in found.items() if not done
        )

    async def remove(self, backup: str) -> None:
        for key in await self._list(self._key(backup)):
            status, body, _ = await self._request("DELETE", key)
            if status != 404:
                self._check(status, body, f"DELETE {key}")

    async def ensure_bucket(self) -> None:
        status, body, _ = await self._request("PUT", "")
        if status not in (200, 409):  # 409: it exists already (BucketAlreadyOwnedByYou)
            self._check(status, body, "PUT bucket")
