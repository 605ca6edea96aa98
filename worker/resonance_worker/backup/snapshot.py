"""A Redis snapshot over the network, as ``redis-cli --rdb`` takes it: the node is asked for a full
synchronisation (``SYNC``) and the RDB it sends is written to a file.

A consistent point in time of the whole dataset (channel histories, presence, the event log, people's
cached state), taken without touching the node's disk and without ``redis-cli`` in the image. The node
sends the RDB it writes for a new replica; ``REPLCONF rdb-only 1`` (Redis ≥ 7.0) tells it this
"replica" wants only the snapshot, so it closes the link afterwards instead of streaming its writes.
Take it from a replica (Sentinel mode does) so the primary's clients never wait on its fork.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ssl
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from resonance_worker.backup.plan import BackupError

CHUNK = 1 << 20


def _command(*words: str) -> bytes:
    parts = [f"*{len(words)}\r\n".encode()]
    for word in words:
        data = word.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _tls_context(url: str) -> ssl.SSLContext | None:
    parts = urlsplit(url)
    if parts.scheme != "rediss":
        return None
    query = parse_qs(parts.query)
    context = ssl.create_default_context(cafile=query.get("ssl_ca_certs", [None])[0])
    context.check_hostname = query.get("ssl_check_hostname", ["true"])[0].lower() != "false"
    return context


async def take_snapshot(
    url: str,
    target: Path,
    *,
    host: str | None = None,
    port: int | None = None,
    deadline_s: float = 600.0,
    tls: ssl.SSLContext | None = None,
) -> tuple[int, str]:
    """Write the node's RDB to ``target``; returns (bytes, SHA-256). ``url`` gives the password and
    TLS (``rediss://``); ``host``/``port`` override its address (a replica found through Sentinel);
    ``tls`` the TLS settings (the connector's), over the URL's."""
    parts = urlsplit(url)
    address = (host or parts.hostname or "127.0.0.1", port or parts.port or 6379)
    context = tls if tls is not None else _tls_context(url)
    try:
        async with asyncio.timeout(deadline_s):
            return await _sync(address, parts.username, parts.password, context, target)
    except TimeoutError:
        raise BackupError(
            f"the snapshot from {address[0]}:{address[1]} took over {deadline_s:.0f} s"
        ) from None
    except OSError as exc:
        raise BackupError(f"the snapshot from {address[0]}:{address[1]} failed: {exc}") from exc


async def _sync(
    address: tuple[str, int],
    user: str | None,
    password: str | None,
    tls: ssl.SSLContext | None,
    target: Path,
) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection(*address, ssl=tls)
    try:
        if password is not None:
            words = ("AUTH", unquote(user), unquote(password)) if user else ("AUTH", unquote(password))
            writer.write(_command(*words))
            if not (answer := await reader.readline()).startswith(b"+"):
                raise BackupError(
                    f"Redis refused the backup's AUTH: {answer.decode(errors='replace').strip()}"
                )
        writer.write(_command("REPLCONF", "rdb-only", "1"))
        await reader.readline()  # +OK, or -ERR on Redis < 7.0 (then the link just stays open)
        writer.write(_command("SYNC"))
        await writer.drain()
        while (line := await reader.readline()) in (b"\n", b"\r\n"):
            pass  # keep-alive newlines while the node writes its RDB
        if not line.startswith(b"$") or line.startswith(b"$EOF:"):
            raise BackupError(f"Redis answered SYNC with {line[:200].decode(errors='replace').strip()!r}")
        size = int(line[1:].strip())
        digest = hashlib.sha256()
        partial = target.with_name(target.name + ".partial")
        with partial.open("wb") as out:
            left = size
            while left:
                block = await reader.read(min(CHUNK, left))
                if not block:
                    raise BackupError(f"Redis closed the link {size - left} bytes into a {size}-byte RDB")
                digest.update(block)
                out.write(block)
                left -= len(block)
        partial.replace(target)
        return size, digest.hexdigest()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
