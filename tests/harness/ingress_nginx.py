"""An nginx.conf for Ingress objects, written the way ingress-nginx writes its own - pure, no I/O.

The e2e ingress harness (``e2e/ingress.py``) runs Debian's ``nginx`` in front of the worker processes at the
kwok Pod addresses. This module is the part of ingress-nginx's controller that matters to a WebSocket
service: it turns an Ingress, the Services it names and their EndpointSlices, plus the controller's
ConfigMap options, into an ``nginx.conf``. It follows ``rootfs/etc/nginx/template/nginx.tmpl`` and the
defaults in ``internal/ingress/controller/config/config.go`` of kubernetes/ingress-nginx (read at
dbb11b92d, 2026-03):

* **WebSocket upgrade** - ``map $http_upgrade $connection_upgrade`` (``''`` maps to ``''`` while upstream
  keep-alive is on, else ``close``), ``proxy_set_header Upgrade $http_upgrade`` and ``Connection
  $connection_upgrade`` in every location, ``proxy_http_version`` 1.1.
* **Timeouts and buffering** per location from the ``nginx.ingress.kubernetes.io/`` annotations
  ``proxy-connect-timeout`` / ``proxy-read-timeout`` / ``proxy-send-timeout`` (seconds; defaults 5 / 60 / 60),
  ``proxy-body-size`` (``client_max_body_size``, default ``1m``), ``proxy-buffering`` (default ``off``),
  ``proxy-request-buffering`` (default ``on``), ``proxy-http-version``, ``proxy-buffer-size``,
  ``proxy-next-upstream`` / ``-tries``.
* **Client addresses** - ``X-Real-IP $remote_addr``; ``X-Forwarded-For`` is ``$remote_addr`` (the peer
  nginx saw, whatever the client sent) unless ``use-forwarded-headers`` and ``compute-full-forwarded-for``
  are both on, when the incoming header gets ``$realip_remote_addr`` appended; the incoming value always
  travels as ``X-Original-Forwarded-For``. ``use-forwarded-headers`` (or ``use-proxy-protocol``, or
  ``enable-real-ip``) turns on the realip module: ``real_ip_header`` (the ``forwarded-for-header``, or
  ``proxy_protocol``), ``real_ip_recursive on`` and ``set_real_ip_from`` each ``proxy-real-ip-cidr``
  (default ``0.0.0.0/0``, as ingress-nginx's).
* **Upstreams** are the Service's ready endpoints (the EndpointSlices), round robin (``load-balance``'s
  default), ``keepalive`` ``upstream-keepalive-connections`` (320); a Service without ready endpoints
  answers 503, and a request for an unknown host gets the default backend's 404. On the harness's
  control plane the Pod IPs are loopback addresses, which the API server refuses in an EndpointSlice
  ("may not be in the loopback range"), so :func:`endpoint_slices_from_pods` computes the slices the
  EndpointSlice controller would write: the Service selector's Running, Ready, not terminating Pods, at
  the container port the Service's ``targetPort`` names.

What differs, on purpose: ingress-nginx balances in Lua and changes endpoints without a reload, where the
harness reloads (old workers keep their WebSockets until ``worker-shutdown-timeout``, as on an
ingress-nginx reload); TLS is not terminated here (rules are served over plain HTTP, as if
``ssl-redirect`` were false: what reaches the worker is the same); canary Ingresses (``canary: "true"``)
are refused, since weighting is done in Lua there.

Use::

    routes = routes_from_objects(ingress, services, endpoint_slices)
    text = render(routes, ControllerConfig.from_configmap(data), listen="127.0.0.1:18080", prefix=workdir)
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

ANNOTATION_PREFIX = "nginx.ingress.kubernetes.io/"
_SIZE = re.compile(r"^\d+[kKmMgG]?$")
_HEADER = re.compile(r"^[A-Za-z0-9-]+$")


class IngressError(ValueError):
    """An Ingress (or controller option) the harness cannot translate; the message says which field."""


def ingress_manifest(
    name: str,
    host: str,
    service: str,
    *,
    annotations: Mapping[str, str] | None = None,
    path: str = "/",
    path_type: str = "Prefix",
    port_name: str = "http",
) -> dict[str, Any]:
    """An ``networking.k8s.io/v1`` Ingress with one rule: ``host`` + ``path`` to ``service``'s named port,
    class ``nginx`` - the shape the operator renders, for tests that need one of their own."""
    backend = {"service": {"name": service, "port": {"name": port_name}}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "annotations": dict(annotations or {})},
        "spec": {
            "ingressClassName": "nginx",
            "rules": [
                {"host": host, "http": {"paths": [{"path": path, "pathType": path_type, "backend": backend}]}}
            ],
        },
    }


def _bool(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise IngressError(f"{name}: not a boolean: {value!r}")


def _int(value: str, name: str, *, minimum: int = 0) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        raise IngressError(f"{name}: not an integer: {value!r}") from None
    if number < minimum:
        raise IngressError(f"{name}: {number} is below {minimum}")
    return number


def _size(value: str, name: str) -> str:
    if not _SIZE.match(value.strip()):
        raise IngressError(f"{name}: not an nginx size (e.g. 64k, 8m): {value!r}")
    return value.strip()


def _on_off(value: str, name: str) -> str:
    lowered = value.strip().lower()
    if lowered not in ("on", "off"):
        raise IngressError(f"{name}: must be on or off, got {value!r}")
    return lowered


@dataclasses.dataclass(frozen=True)
class ControllerConfig:
    """The ingress-nginx ConfigMap options the harness honours, with ingress-nginx's own defaults."""

    use_forwarded_headers: bool = False
    compute_full_forwarded_for: bool = False
    forwarded_for_header: str = "X-Forwarded-For"
    proxy_real_ip_cidr: tuple[str, ...] = ("0.0.0.0/0",)
    use_proxy_protocol: bool = False
    enable_real_ip: bool = False
    proxy_body_size: str = "1m"
    proxy_connect_timeout: int = 5
    proxy_read_timeout: int = 60
    proxy_send_timeout: int = 60
    proxy_buffering: str = "off"
    proxy_request_buffering: str = "on"
    proxy_http_version: str = "1.1"
    proxy_buffer_size: str = "4k"
    proxy_next_upstream: str = "error timeout"
    proxy_next_upstream_tries: int = 3
    upstream_keepalive_connections: int = 320
    upstream_keepalive_timeout: int = 60
    upstream_keepalive_requests: int = 10000
    keep_alive: int = 75
    max_worker_connections: int = 16384
    worker_processes: int = 1
    """ingress-nginx runs one per CPU; the harness defaults to one, so a test's numbers are one process's."""
    worker_shutdown_timeout: str = "240s"

    @classmethod
    def from_configmap(cls, data: Mapping[str, str]) -> ControllerConfig:
        """The options from an ingress-nginx ConfigMap's ``data`` (unknown keys are an error: the harness
        would silently behave unlike the controller)."""
        parsed: dict[str, Any] = {}
        for key, value in data.items():
            name = key.replace("-", "_")
            field = {f.name: f for f in dataclasses.fields(cls)}.get(name)
            if field is None:
                raise IngressError(f"ConfigMap key {key!r} is not one the harness translates")
            if field.type == "bool":
                parsed[name] = _bool(value, key)
            elif field.type == "int":
                parsed[name] = _int(value, key, minimum=1 if "worker" in name else 0)
            elif name == "proxy_real_ip_cidr":
                parsed[name] = tuple(c.strip() for c in value.split(",") if c.strip())
            elif name in ("proxy_body_size", "proxy_buffer_size"):
                parsed[name] = _size(value, key)
            elif name in ("proxy_buffering", "proxy_request_buffering"):
                parsed[name] = _on_off(value, key)
            elif name == "forwarded_for_header" and not _HEADER.match(value):
                raise IngressError(f"{key}: not a header name: {value!r}")
            else:
                parsed[name] = value.strip()
        return dataclasses.replace(cls(), **parsed)

    @property
    def realip(self) -> bool:
        """Whether ingress-nginx enables the realip module (``nginx.tmpl``: any of the three options)."""
        return self.use_forwarded_headers or self.use_proxy_protocol or self.enable_real_ip


@dataclasses.dataclass(frozen=True)
class LocationProxy:
    """The per-location proxy settings, from the controller defaults and the Ingress annotations."""

    connect_timeout: int
    read_timeout: int
    send_timeout: int
    body_size: str
    buffering: str
    request_buffering: str
    http_version: str
    buffer_size: str
    next_upstream: str
    next_upstream_tries: int

    @classmethod
    def from_annotations(cls, annotations: Mapping[str, str], config: ControllerConfig) -> LocationProxy:
        ours = {
            key.removeprefix(ANNOTATION_PREFIX): value
            for key, value in annotations.items()
            if key.startswith(ANNOTATION_PREFIX)
        }
        if _bool(ours.get("canary", "false"), "canary"):
            raise IngressError(
                "canary Ingresses are weighted in ingress-nginx's Lua balancer: not translated"
            )
        version = ours.get("proxy-http-version", config.proxy_http_version).strip()
        if version not in ("1.0", "1.1"):
            raise IngressError(f"proxy-http-version: must be 1.0 or 1.1, got {version!r}")
        return cls(
            connect_timeout=_int(ours.get("proxy-connect-timeout", str(config.proxy_connect_timeout)),
                                 "proxy-connect-timeout"),
            read_timeout=_int(ours.get("proxy-read-timeout", str(config.proxy_read_timeout)),
                              "proxy-read-timeout"),
            send_timeout=_int(ours.get("proxy-send-timeout", str(config.proxy_send_timeout)),
                              "proxy-send-timeout"),
            body_size=_size(ours.get("proxy-body-size", config.proxy_body_size), "proxy-body-size"),
            buffering=_on_off(ours.get("proxy-buffering", config.proxy_buffering), "proxy-buffering"),
            request_buffering=_on_off(
                ours.get("proxy-request-buffering", config.proxy_request_buffering), "proxy-request-buffering"
            ),
            http_version=version,
            buffer_size=_size(ours.get("proxy-buffer-size", config.proxy_buffer_size), "proxy-buffer-size"),
            next_upstream=ours.get("proxy-next-upstream", config.proxy_next_upstream).strip(),
            next_upstream_tries=_int(
                ours.get("proxy-next-upstream-tries", str(config.proxy_next_upstream_tries)),
                "proxy-next-upstream-tries",
            ),
        )  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Route:
    """One Ingress path, resolved down to the endpoints behind its Service port."""

    host: str
    path: str
    path_type: str
    upstream: str
    endpoints: tuple[tuple[str, int], ...]
    proxy: LocationProxy


def _service_port(service: Mapping[str, Any], wanted: Mapping[str, Any]) -> Mapping[str, Any]:
    name = service["metadata"]["name"]
    for port in service.get("spec", {}).get("ports", []):
        if ("name" in wanted and port.get("name") == wanted["name"]) or (
            "number" in wanted and port.get("port") == wanted["number"]
        ):
            return dict(port)
    raise IngressError(f"Service {name} has no port {dict(wanted)}")


def _ready_endpoints(
    service_port: Mapping[str, Any], slices: Iterable[Mapping[str, Any]]
) -> tuple[tuple[str, int], ...]:
    """The ready addresses of the Service's EndpointSlices, at the slice port matching the Service port.

    EndpointSlice ports carry the Service port's *name* and the resolved container port number."""
    port_name = service_port.get("name", "")
    found: set[tuple[str, int]] = set()
    for piece in slices:
        numbers = [p["port"] for p in piece.get("ports") or [] if p.get("name", "") == port_name]
        if not numbers:
            continue
        for endpoint in piece.get("endpoints") or []:
            conditions = endpoint.get("conditions", {})
            if conditions.get("ready") is False or conditions.get("terminating") is True:
                continue
            for address in endpoint.get("addresses", []):
                found.update((address, number) for number in numbers)
    return tuple(sorted(found))


def _selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def _pod_ready(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status", {})
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions", [])}
    return (
        status.get("phase") == "Running" and bool(status.get("podIP")) and conditions.get("Ready") == "True"
    )


def _target_port(service_port: Mapping[str, Any], pod: Mapping[str, Any]) -> int | None:
    target = service_port.get("targetPort", service_port.get("port"))
    if isinstance(target, int):
        return target
    for container in pod.get("spec", {}).get("containers", []):
        for port in container.get("ports", []):
            if port.get("name") == target:
                return int(port["containerPort"])
    return None


def endpoint_slices_from_pods(
    service: Mapping[str, Any], pods: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """What the EndpointSlice controller would write for ``service``: one slice per Service port, with the
    selected Pods' IPs, ``ready`` false for a Pod not Ready and ``terminating`` for one being deleted."""
    selector = service.get("spec", {}).get("selector") or {}
    chosen = [
        pod
        for pod in pods
        if _selects(selector, pod["metadata"].get("labels", {})) and pod.get("status", {}).get("podIP")
    ]
    slices = []
    for service_port in service.get("spec", {}).get("ports", []):
        by_number: dict[int, list[dict[str, Any]]] = {}
        for pod in chosen:
            number = _target_port(service_port, pod)
            if number is None:
                continue
            terminating = pod["metadata"].get("deletionTimestamp") is not None
            by_number.setdefault(number, []).append(
                {
                    "addresses": [pod["status"]["podIP"]],
                    "conditions": {"ready": _pod_ready(pod) and not terminating, "terminating": terminating},
                    "targetRef": {"kind": "Pod", "name": pod["metadata"]["name"]},
                }
            )
        for number, endpoints in sorted(by_number.items()):
            slices.append(
                {
                    "metadata": {"labels": {"kubernetes.io/service-name": service["metadata"]["name"]}},
                    "ports": [{"name": service_port.get("name", ""), "port": number, "protocol": "TCP"}],
                    "endpoints": endpoints,
                }
            )
    return slices


def routes_from_objects(
    ingress: Mapping[str, Any],
    services: Mapping[str, Mapping[str, Any]],
    endpoint_slices: Mapping[str, Sequence[Mapping[str, Any]]],
    config: ControllerConfig | None = None,
) -> list[Route]:
    """Every path of ``ingress`` with its endpoints: ``services`` and ``endpoint_slices`` are keyed by the
    Service name (slices by their ``kubernetes.io/service-name`` label). A missing Service is an error; a
    Service without ready endpoints gives a route with none (served as 503)."""
    config = config or ControllerConfig()
    namespace = ingress["metadata"].get("namespace", "default")
    proxy = LocationProxy.from_annotations(ingress["metadata"].get("annotations") or {}, config)
    routes = []
    for rule in ingress.get("spec", {}).get("rules", []):
        host = rule.get("host", "")
        for path in rule.get("http", {}).get("paths", []):
            backend = path["backend"].get("service")
            if backend is None:
                raise IngressError("only service backends are translated")
            service = services.get(backend["name"])
            if service is None:
                raise IngressError(f"Ingress backend Service {backend['name']} does not exist")
            port = _service_port(service, backend["port"])
            routes.append(
                Route(
                    host=host,
                    path=path.get("path", "/"),
                    path_type=path.get("pathType", "ImplementationSpecific"),
                    upstream=f"{namespace}-{backend['name']}-{port.get('name') or port['port']}",
                    endpoints=_ready_endpoints(port, endpoint_slices.get(backend["name"], ())),
                    proxy=proxy,
                )
            )
    return routes


def _location_paths(route: Route) -> list[str]:
    """nginx location modifiers for an Ingress path (``Prefix /a`` serves ``/a`` and ``/a/...``)."""
    if route.path_type == "Exact":
        return [f"= {route.path}"]
    if route.path_type == "Prefix" and route.path != "/":
        trimmed = route.path.rstrip("/")
        return [f"= {trimmed}", f"{trimmed}/"]
    return [route.path]


def _forwarded_for(config: ControllerConfig) -> str:
    return (
        "$full_x_forwarded_for"
        if config.use_forwarded_headers and config.compute_full_forwarded_for
        else "$remote_addr"
    )


def _header_variable(header: str) -> str:
    return "$http_" + header.lower().replace("-", "_")


def _location(route: Route, modifier: str, config: ControllerConfig) -> list[str]:
    proxy = route.proxy
    lines = [f"        location {modifier} {{", f"            client_max_body_size {proxy.body_size};"]
    if not route.endpoints:
        # ingress-nginx's default backend answers a Service without endpoints with 503.
        return [*lines, "            return 503;", "        }"]
    lines += [
        "            proxy_set_header Host $http_host;",
        "            proxy_set_header Upgrade $http_upgrade;",
        "            proxy_set_header Connection $connection_upgrade;",
        "            proxy_set_header X-Request-ID $req_id;",
        "            proxy_set_header X-Real-IP $remote_addr;",
        f"            proxy_set_header X-Forwarded-For {_forwarded_for(config)};",
        "            proxy_set_header X-Forwarded-Host $http_host;",
        "            proxy_set_header X-Forwarded-Port $server_port;",
        "            proxy_set_header X-Forwarded-Proto $scheme;",
        "            proxy_set_header X-Forwarded-Scheme $scheme;",
        "            proxy_set_header X-Scheme $scheme;",
        "            proxy_set_header X-Original-Forwarded-For "
        f"{_header_variable(config.forwarded_for_header)};",
        '            proxy_set_header Proxy "";',
        f"            proxy_connect_timeout {proxy.connect_timeout}s;",
        f"            proxy_send_timeout {proxy.send_timeout}s;",
        f"            proxy_read_timeout {proxy.read_timeout}s;",
        f"            proxy_buffering {proxy.buffering};",
        f"            proxy_buffer_size {proxy.buffer_size};",
        f"            proxy_buffers 4 {proxy.buffer_size};",
        f"            proxy_request_buffering {proxy.request_buffering};",
        f"            proxy_http_version {proxy.http_version};",
        f"            proxy_next_upstream {proxy.next_upstream};",
        f"            proxy_next_upstream_tries {proxy.next_upstream_tries};",
        f"            proxy_pass http://{route.upstream};",
        "        }",
    ]
    return lines


def render(
    routes: Sequence[Route],
    config: ControllerConfig,
    *,
    listen: str,
    prefix: Path,
    run_as_root: bool = False,
    worker_rlimit_nofile: int = 19000,
) -> str:
    """The whole ``nginx.conf``: ``listen`` is ``address:port``; ``prefix`` holds the pid file, logs and
    temporary files (start nginx with ``-p prefix``). ``run_as_root`` keeps the worker processes root
    when the master is (nginx would drop them to ``nobody``, which cannot write ``prefix``)."""
    listen_options = " proxy_protocol" if config.use_proxy_protocol else ""
    lines = [
        "# Generated by tests/harness/ingress_nginx.py from Ingress objects, as ingress-nginx would.",
        *(["user root root;"] if run_as_root else []),
        f"worker_processes {config.worker_processes};",
        f"worker_rlimit_nofile {worker_rlimit_nofile};",
        f"worker_shutdown_timeout {config.worker_shutdown_timeout};",
        f"pid {prefix / 'nginx.pid'};",
        f"error_log {prefix / 'error.log'} notice;",
        "events {",
        f"    worker_connections {config.max_worker_connections};",
        "    multi_accept on;",
        "}",
        "http {",
        f"    client_body_temp_path {prefix / 'client_body'};",
        f"    proxy_temp_path {prefix / 'proxy'};",
        f"    fastcgi_temp_path {prefix / 'fastcgi'};",
        f"    uwsgi_temp_path {prefix / 'uwsgi'};",
        f"    scgi_temp_path {prefix / 'scgi'};",
        "    log_format upstreaminfo '$remote_addr [$time_local] \"$request\" $status '",
        "                            '$upstream_addr xff=\"$http_x_forwarded_for\"';",
        f"    access_log {prefix / 'access.log'} upstreaminfo;",
        f"    keepalive_timeout {config.keep_alive}s;",
        "    server_tokens off;",
    ]
    if config.realip:
        header = "proxy_protocol" if config.use_proxy_protocol else config.forwarded_for_header
        lines += [f"    real_ip_header {header};", "    real_ip_recursive on;"]
        lines += [f"    set_real_ip_from {cidr};" for cidr in config.proxy_real_ip_cidr]
    keepalive = config.upstream_keepalive_connections > 0
    lines += [
        "    map $http_upgrade $connection_upgrade {",
        "        default upgrade;",
        "        '' '';" if keepalive else "        '' close;",
        "    }",
        "    map $http_x_request_id $req_id {",
        "        default $http_x_request_id;",
        '        "" $request_id;',
        "    }",
    ]
    if config.use_forwarded_headers and config.compute_full_forwarded_for:
        source = "$proxy_protocol_addr" if config.use_proxy_protocol else "$realip_remote_addr"
        lines += [
            "    map $http_x_forwarded_for $full_x_forwarded_for {",
            f'        default "$http_x_forwarded_for, {source}";',
            f"        '' \"{source}\";",
            "    }",
        ]
    upstreams: dict[str, tuple[tuple[str, int], ...]] = {}
    for route in routes:
        if route.endpoints:
            upstreams[route.upstream] = route.endpoints
    for name, endpoints in sorted(upstreams.items()):
        lines.append(f"    upstream {name} {{")
        lines += [f"        server {ip}:{port} max_fails=0;" for ip, port in endpoints]
        if keepalive:
            lines += [
                f"        keepalive {config.upstream_keepalive_connections};",
                f"        keepalive_timeout {config.upstream_keepalive_timeout}s;",
                f"        keepalive_requests {config.upstream_keepalive_requests};",
            ]
        lines.append("    }")
    lines += [
        "    server {",
        f"        listen {listen} default_server{listen_options};",
        "        server_name _;",
        "        location / { return 404; }",
        "    }",
    ]
    by_host: dict[str, list[Route]] = {}
    for route in routes:
        by_host.setdefault(route.host, []).append(route)
    for host, host_routes in sorted(by_host.items()):
        if not host:
            raise IngressError("rules without a host are not translated (the default server answers 404)")
        lines += ["    server {", f"        listen {listen}{listen_options};", f"        server_name {host};"]
        for route in host_routes:
            for modifier in _location_paths(route):
                lines += _location(route, modifier, config)
        lines.append("    }")
    lines.append("}")
    return "\n".join(lines) + "\n"
