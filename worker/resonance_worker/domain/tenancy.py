"""Tenants (``RESONANCE_TENANT_ISOLATION``): a ``tenant`` claim in the
connection token partitions channel names.

A channel belongs to the tenant named before the first ``/`` of its name
(after the namespace): ``chat:acme/lobby`` is tenant ``acme``'s, ``chat:lobby``
belongs to no tenant. With isolation on, a connection uses only channels of its
own tenant (none, when its token has no ``tenant``), so the rest of the name -
private ``$`` channels, ``#user`` limits - is judged inside one tenant, and the
same user id in two tenants never meets. Each user's personal channel becomes
``personal:<tenant>/#<user>``. The server API is the back end's and is not
limited by tenant.
"""

from __future__ import annotations

from resonance_worker.domain.channels import NAMESPACE_BOUNDARY, USER_BOUNDARY

TENANT_BOUNDARY = "/"


def split_tenant(channel: str) -> tuple[str, str]:
    """``(tenant, channel without it)``: ``chat:acme/$x`` -> ``("acme", "chat:$x")``."""
    namespace, sep, name = channel.partition(NAMESPACE_BOUNDARY)
    if not sep:
        namespace, name = "", channel
    tenant, boundary, rest = name.partition(TENANT_BOUNDARY)
    if not boundary:
        return "", channel
    return tenant, f"{namespace}{NAMESPACE_BOUNDARY}{rest}" if sep else rest


def valid_tenant(tenant: str) -> bool:
    """A tenant id cannot contain the characters that structure channel names."""
    return not any(c in tenant for c in (TENANT_BOUNDARY, NAMESPACE_BOUNDARY, USER_BOUNDARY, "\n"))


def personal_channel(tenant: str, user: str) -> str:
    prefix = f"{tenant}{TENANT_BOUNDARY}" if tenant else ""
    return f"personal{NAMESPACE_BOUNDARY}{prefix}{USER_BOUNDARY}{user}"
