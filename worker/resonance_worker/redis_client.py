"""How the worker reaches Redis: one server, or the primary that a set of Sentinels names.

:class:`RedisConnector` is built once per worker (by :func:`resonance_worker.storage.build_storage`)
and hands out the clients of the engine and the event log. Every client of one connector shares
one Sentinel manager (redis-py's ``master_for`` builds a pool per call; the manager's connections
to the Sentinels are the expensive part, rp#3433).

==============  ==========================================================================
mode            what a client connects to
==============  ==========================================================================
``standalone``  ``RESONANCE_REDIS_URL``
``sentinel``    the primary the Sentinels (``RESONANCE_REDIS_SENTINELS``) name for the service
                ``RESONANCE_REDIS_SENTINEL_SERVICE``; password, database and TLS (``rediss://``
                with ``ssl_ca_certs`` …) still come from ``RESONANCE_REDIS_URL``, whose host is
                ignored
``cluster``     a Redis Cluster (redis-py's ``RedisCluster``), found from the seed nodes
                ``RESONANCE_REDIS_CLUSTER_NODES``; password and TLS from ``RESONANCE_REDIS_URL``,
                whose host is ignored. :meth:`RedisConnector.node_client` reaches one node (the
                engine's sharded pub/sub holds one connection per primary)
==============  ==========================================================================

TLS (``RESONANCE_REDIS_TLS`` and ``RESONANCE_REDIS_TLS_*``, or a ``rediss://`` URL): every client
of the connector — the engine's, its pub/sub and sharded pub/sub connections, the event log's, the
person documents', the backup's snapshot — and its Sentinel manager speak TLS with the same
:class:`RedisTls`. With TLS asked for, a handshake that fails (an unknown CA, a wrong host name, a
plain-text server) is a connection error like any other: there is no fallback to plain text.

Failover, in Sentinel mode: each *new* connection asks the Sentinels where the primary is, so a
client finds the new primary once its connection to the old one broke. A connection to a primary
that was demoted gets ``READONLY`` on its next write; redis-py closes it and raises a connection
error (``SentinelManagedConnection.read_response``), which the engine retries like any other
broken connection (``engines.redis``). redis-py has no ``+switch-master`` listener (rp#3867): a
write can reach the demoted node until its connection breaks, and is then refused — never
silently kept.

Sits below the engines and the event log (import-linter), above the domain.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import redis.asyncio as aioredis
from pydantic import SecretStr
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import BlockingConnectionPool, SSLConnection, parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff, NoBackoff

from resonance_worker.settings import RedisMode, WorkerSettings

Address = tuple[str, int]


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """A Sentinel-managed pool that waits for a free connection (up to its ``timeout``) instead of
    failing with "Too many connections", as the standalone engine's ``BlockingConnectionPool``."""


@dataclass(frozen=True)
class RedisTls:
    """How a TLS connection to Redis is verified (and, with a client certificate, authenticated)."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True
    sentinels: bool = True
    """The Sentinels speak TLS too (the data nodes always do)."""

    @classmethod
    def from_settings(cls, settings: WorkerSettings) -> RedisTls | None:
        if not settings.redis_tls_enabled:
            return None
        return cls(
            ca_file=settings.redis_tls_ca_file,
            cert_file=settings.redis_tls_cert_file,
            key_file=settings.redis_tls_key_file,
            verify=settings.redis_tls_verify,
            sentinels=settings.redis_sentinel_tls,
        )

    def client_options(self) -> dict[str, Any]:
        """redis-py's ``ssl_*`` arguments of a client (the TLS connection class comes separately)."""
        options: dict[str, Any] = {
            "ssl_cert_reqs": "required" if self.verify else "none",
            "ssl_check_hostname": self.verify,
        }
        if self.ca_file is not None:
            options["ssl_ca_certs"] = self.ca_file
        if self.cert_file is not None:
            options.update(ssl_certfile=self.cert_file, ssl_keyfile=self.key_file)
        return options

    def context(self) -> ssl.SSLContext:
        """The same verification as an ``ssl`` context (the backup's snapshot connection)."""
        context = ssl.create_default_context(cafile=self.ca_file)
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.cert_file is not None:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context


def _tls_url(url: str) -> str:
    """``url`` with the ``rediss`` scheme (TLS asked for by settings rather than by the URL)."""
    if url.startswith("redis://"):
        return "rediss://" + url.removeprefix("redis://")
    if url.startswith("unix://"):
        raise ValueError("TLS to Redis needs a redis:// or rediss:// URL, not a unix socket")
    return url


def parse_address(text: str) -> Address:
    """``"host:port"`` (``[v6]:port`` too) → ``(host, port)``; ``ValueError`` names what is wrong."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"a Redis node or Sentinel address must be host:port, got {text!r}")
    return host, int(port)


def with_password(url: str, password: SecretStr | None) -> str:
    """``url`` with ``password`` in it, unless it has one already (or there is none to add)."""
    parts = urlsplit(url)
    if password is None or parts.password is not None or parts.scheme == "unix":
        return url
    user = quote(parts.username or "", safe="")
    secret = quote(password.get_secret_value(), safe="")
    return urlunsplit(parts._replace(netloc=f"{user}:{secret}@{parts.netloc.rpartition('@')[2]}"))


class RedisConnector:
    """Where Redis is, and the clients to it. :meth:`aclose` after the clients are closed."""

    def __init__(
        self,
        url: str,
        *,
        mode: RedisMode = RedisMode.STANDALONE,
        sentinels: Sequence[Address] = (),
        service: str = "resonance",
        sentinel_password: str | None = None,
        cluster_nodes: Sequence[Address] = (),
        tls: RedisTls | None = None,
    ) -> None:
        if mode is RedisMode.SENTINEL and not sentinels:
            raise ValueError("sentinel mode needs at least one Sentinel address")
        if mode is RedisMode.CLUSTER and not cluster_nodes:
            raise ValueError("cluster mode needs at least one seed node address")
        self.cluster_nodes = tuple(cluster_nodes)
        self.tls = tls
        self.url = url if tls is None else _tls_url(url)
        self.mode = mode
        self.service = service
        self.sentinels = tuple(sentinels)
        self._sentinel_password = sentinel_password
        self._manager: Sentinel | None = None

    @classmethod
    def from_settings(cls, settings: WorkerSettings) -> RedisConnector:
        password = settings.redis_sentinel_password
        return cls(
            with_password(settings.redis_url, settings.redis_password),
            mode=settings.redis_mode,
            sentinels=[parse_address(a) for a in settings.redis_sentinels],
            service=settings.redis_sentinel_service,
            sentinel_password=None if password is None else password.get_secret_value(),
            cluster_nodes=[parse_address(a) for a in settings.redis_cluster_nodes],
            tls=RedisTls.from_settings(settings),
        )

    def __repr__(self) -> str:
        if self.mode is RedisMode.SENTINEL:
            return f"RedisConnector(sentinel {self.service!r} via {len(self.sentinels)} Sentinels)"
        if self.mode is RedisMode.CLUSTER:
            return f"RedisConnector(cluster via {len(self.cluster_nodes)} seed nodes)"
        return f"RedisConnector({self.mode.value})"

    def tls_options(self) -> dict[str, Any]:
        """The ``ssl_*`` arguments every client of this connector is built with (none without TLS
        settings; a ``rediss://`` URL's own query still applies)."""
        return {} if self.tls is None else self.tls.client_options()

    def tls_context(self) -> ssl.SSLContext | None:
        """The TLS settings as an ``ssl`` context (None: none given; the URL decides)."""
        return None if self.tls is None else self.tls.context()

    def client(
        self,
        *,
        timeout: float,
        socket_timeout: float | None,
        retries: int = 0,
        max_connections: int | None = None,
    ) -> aioredis.Redis:
        """A client with its own pool. ``max_connections`` makes the pool wait (up to ``timeout``)
        for a free connection; ``retries`` quick retries of a command whose connection broke
        (0: the caller owns retrying, e.g. a non-idempotent publish)."""
        retry = Retry(ExponentialBackoff(cap=0.05, base=0.01), retries) if retries else Retry(NoBackoff(), 0)
        options: dict[str, Any] = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": timeout,
            "retry": retry,
            **self.tls_options(),
        }
        if self.mode is RedisMode.SENTINEL:
            return self._sentinel_client(options, timeout, max_connections)
        if self.mode is RedisMode.CLUSTER:
            cluster: aioredis.Redis = self._cluster_client(options, max_connections)
            return cluster
        if max_connections is None:
            return aioredis.Redis.from_url(self.url, **options)
        pool = BlockingConnectionPool.from_url(
            self.url, max_connections=max_connections, timeout=timeout, **options
        )
        return aioredis.Redis.from_pool(pool)  # the client owns (and closes) the pool

    def _sentinel_client(
        self, options: dict[str, Any], timeout: float, max_connections: int | None
    ) -> aioredis.Redis:
        kwargs: dict[str, Any] = dict(parse_url(self.url))
        for ignored in ("host", "port", "path"):
            kwargs.pop(ignored, None)
        if kwargs.pop("connection_class", None) is SSLConnection:
            kwargs["ssl"] = True  # SentinelConnectionPool picks its TLS connection class from this
        pool_class: type[SentinelConnectionPool] = SentinelConnectionPool
        if max_connections is not None:
            pool_class = _BlockingSentinelPool
            kwargs.update(max_connections=max_connections, timeout=timeout)
        client: aioredis.Redis = self._sentinel(timeout).master_for(
            self.service, connection_pool_class=pool_class, **kwargs, **options
        )
        return client

    def _url_options(self) -> dict[str, Any]:
        """Password, user and TLS of ``url`` (its host, port and database are not used)."""
        kwargs: dict[str, Any] = dict(parse_url(self.url))
        for ignored in ("host", "port", "path", "db"):
            kwargs.pop(ignored, None)
        if kwargs.pop("connection_class", None) is SSLConnection:
            kwargs["ssl"] = True
        return kwargs

    def _cluster_client(self, options: dict[str, Any], max_connections: int | None) -> Any:
        """A ``RedisCluster`` (typed ``Any`` at the call sites: it serves the same commands as a
        ``Redis`` but is not one). Its pools are per node; ``max_connections`` bounds each."""
        nodes = [ClusterNode(host, port) for host, port in self.cluster_nodes]
        kwargs = self._url_options() | options
        if max_connections is not None:
            kwargs["max_connections"] = max_connections
        return RedisCluster(startup_nodes=nodes, **kwargs)

    def node_client(self, host: str, port: int, *, timeout: float) -> aioredis.Redis:
        """A plain client of one Cluster node (the engine's sharded pub/sub connection to it)."""
        return aioredis.Redis(
            host=host,
            port=port,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            **self._url_options(),
            **self.tls_options(),
        )

    async def primary(self) -> Address | None:
        """Where the primary is now (Sentinel mode: asked of the Sentinels; else None)."""
        if self.mode is not RedisMode.SENTINEL:
            return None
        host, port = await self._sentinel(2.0).discover_master(self.service)
        return str(host), int(port)

    async def replicas(self) -> list[Address]:
        """The replicas the Sentinels know for the service (Sentinel mode; else empty): where a
        backup takes its snapshot, so the primary's clients never wait on it."""
        if self.mode is not RedisMode.SENTINEL:
            return []
        found = await self._sentinel(2.0).discover_slaves(self.service)
        return [(str(host), int(port)) for host, port in found]

    def _sentinel(self, timeout: float) -> Sentinel:
        """The one Sentinel manager of this connector (its connections to the Sentinels are shared)."""
        if self._manager is None:
            options: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
            if self._sentinel_password is not None:
                options["password"] = self._sentinel_password
            if self.tls is not None and self.tls.sentinels:
                options.update(ssl=True, **self.tls.client_options())
            self._manager = Sentinel(list(self.sentinels), sentinel_kwargs=options)  # type: ignore[no-untyped-call]
        return self._manager

    async def aclose(self) -> None:
        """Close the connections to the Sentinels."""
        manager, self._manager = self._manager, None
        if manager is not None:
            await manager.aclose()

    async def close(self) -> None:
        await self.aclose()
