"""A real ``nginx`` (Debian's) on a loopback port, configured by ``tests/harness/ingress_nginx.py``.

``NginxProxy(workdir).start(conf)`` checks the file with ``nginx -t`` first, so a bad configuration fails
with nginx's own message; ``reload(conf)`` checks the new file and sends SIGHUP (nginx starts new worker
processes and lets the old ones finish their connections, up to ``worker_shutdown_timeout``, as an
ingress-nginx reload does). ``stop`` ends it and everything it started.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

from tests.harness.processes import ServiceProcess, free_port, port_open

TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
STREAM_MODULE = Path("/usr/lib/nginx/modules/ngx_stream_module.so")
"""Debian's ``libnginx-mod-stream``: nginx as a TCP proxy (``.ci/deps`` installs it)."""


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if found is None:
        raise RuntimeError("nginx not found: run `make deps` (apt-get install nginx)")
    return found


class NginxError(RuntimeError):
    """nginx refused a configuration (the message is ``nginx -t``'s output)."""


class NginxProxy:
    """One nginx master with its configuration, logs and pid file under ``workdir``."""

    def __init__(self, workdir: Path, *, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.binary = nginx_binary()
        self.workdir = workdir
        self.host = host
        self.port = port or free_port(host)
        self.conf_path = workdir / "nginx.conf"
        self.reloads = 0
        workdir.mkdir(parents=True, exist_ok=True)
        for name in TEMP_DIRS:
            (workdir / name).mkdir(exist_ok=True)
        self.process = ServiceProcess(
            f"nginx:{self.port}",
            [self.binary, "-p", str(workdir), "-c", str(self.conf_path), "-g", "daemon off;"],
            log_path=workdir / "nginx.out",
        )

    @property
    def listen(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def run_as_root(self) -> bool:
        return os.geteuid() == 0

    def ws_url(self, path: str = "/connection/websocket") -> str:
        return f"ws://{self.listen}{path}"

    def _check(self, text: str) -> None:
        candidate = self.workdir / "nginx.conf.candidate"
        candidate.write_text(text)
        result = subprocess.run(
            [self.binary, "-t", "-q", "-p", str(self.workdir), "-c", str(candidate)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if result.returncode != 0:
            raise NginxError(f"nginx -t refused the configuration:\n{result.stderr}\n{text}")
        candidate.replace(self.conf_path)

    def start(self, conf: str, timeout: float = 20.0) -> NginxProxy:
        self._check(conf)
        self.process.start()
        self.process.wait_until(lambda: port_open(self.host, self.port), timeout=timeout, what="open port")
        return self

    def workers(self) -> dict[int, str]:
        """The master's worker processes now: pid -> process title (``nginx: worker process`` or,
        once told to go, ``nginx: worker process is shutting down``)."""
        found = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue  # gone meanwhile
            # The parent pid is the second field after the parenthesised command name.
            if int(stat.rsplit(")", 1)[1].split()[1]) == self.process.pid:
                found[int(entry.name)] = title.strip()
        return found

    def reload(self, conf: str, timeout: float = 10.0) -> None:
        """Check ``conf`` and make nginx use it (SIGHUP); open connections finish on the old workers.

        Returns once the reload has happened: new workers run and every old one has stopped accepting
        (its title says it is shutting down) or is gone. A SIGHUP alone returns before that, and a
        client connecting in between still reaches an old worker with the old upstreams.
        """
        self._check(conf)
        before = self.workers()
        os.kill(self.process.pid, signal.SIGHUP)  # the master only: it replaces its workers
        self.reloads += 1

        def reloaded() -> bool:
            now = self.workers()
            fresh = set(now) - set(before)
            old_accepting = [pid for pid in before if pid in now and "shutting down" not in now[pid]]
            return bool(fresh) and not old_accepting

        self.process.wait_until(reloaded, timeout=timeout, what="nginx reload")

    def stop(self) -> int | None:
        return self.process.stop()

    def access_log(self) -> str:
        path = self.workdir / "access.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def error_log(self) -> str:
        path = self.workdir / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""


def stream_proxy_conf(nginx: NginxProxy, upstream: str, *, proxy_protocol: bool = True) -> str:
    """An ``nginx.conf`` making ``nginx`` a TCP proxy to ``upstream`` (``host:port``) that sends the PROXY
    protocol header (as an NLB or HAProxy ``send-proxy`` in front of the workers would)."""
    prefix = nginx.workdir
    return "\n".join(
        [
            f"load_module {STREAM_MODULE};",
            *(["user root root;"] if nginx.run_as_root else []),
            "worker_processes 1;",
            f"pid {prefix / 'nginx.pid'};",
            f"error_log {prefix / 'error.log'} notice;",
            "events { worker_connections 1024; }",
            "stream {",
            "  server {",
            f"    listen {nginx.listen};",
            f"    proxy_pass {upstream};",
            f"    proxy_protocol {'on' if proxy_protocol else 'off'};",
            "  }",
            "}",
            "",
        ]
    )
