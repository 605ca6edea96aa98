"""A real Neo4j 5.26 Community server (Bolt on loopback, auth on) for the tests.

The server is the one `e2e/services/neo4j/up` starts: the official Community jars from Maven Central,
run by the machine's Java 17 through ``org.neo4j.server.CommunityEntryPoint``. ``up --foreground`` writes
the config, sets the initial password (``neo4j-admin dbms set-initial-password``) on first start, then
execs the JVM, so the process this class supervises is the server itself.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
from pathlib import Path

import neo4j
from neo4j.exceptions import AuthError, DriverError, Neo4jError

from tests.harness.processes import ServiceProcess, free_port, port_open, tethered_popen

SERVICE_DIR = Path(__file__).resolve().parents[2] / "e2e" / "services" / "neo4j"

# Resolving the jars from Maven Central is a one-off per machine and version; give it room.
BUILD_TIMEOUT = 900.0


class Neo4jServer:
    """One Neo4j home (config, data, logs) in ``workdir``; the same port and password across restarts."""

    user = "neo4j"

    def __init__(self, workdir: Path, *, port: int | None = None, password: str | None = None) -> None:
        self.host = "127.0.0.1"
        self.workdir = workdir
        self.port = port or free_port()
        # Neo4j wants at least 8 characters; 24 url-safe ones are plenty.
        self._password = password or secrets.token_urlsafe(18)
        self.process: ServiceProcess | None = None

    @property
    def uri(self) -> str:
        return f"bolt://{self.host}:{self.port}"

    @property
    def password(self) -> str:
        return self._password

    @property
    def auth(self) -> tuple[str, str]:
        return (self.user, self._password)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.alive()

    def start(self, timeout: float = 180.0) -> Neo4jServer:
        """Start the server and return once an authenticated Bolt connection succeeds."""
        if self.running:
            raise RuntimeError(f"neo4j on port {self.port} is already running")
        build_server_classpath()
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [str(SERVICE_DIR / "up"), "--foreground", "--dir", str(self.workdir), "--port", str(self.port)]
        self.process = ServiceProcess(
            f"neo4j:{self.port}",
            argv,
            log_path=self.workdir / "logs" / "harness-console.log",
            # The password stays off the command line, where `ps` would show it.
            env={"RESONANCE_NEO4J_PASSWORD": self._password},
        )
        self.process.start()
        self.process.wait_until(self._accepts_login, timeout=timeout, what="authenticated Bolt connection")
        return self

    def stop(self) -> None:
        """Stop cleanly (SIGTERM: Neo4j checkpoints first), SIGKILL only if it hangs."""
        if self.process is not None:
            self.process.stop(timeout=60.0)

    def kill(self) -> None:
        """SIGKILL, as a crash would: the next start recovers from the transaction log."""
        if self.process is not None:
            self.process.kill()

    def restart(self, timeout: float = 180.0) -> Neo4jServer:
        """Stop and start again: same port, same data directory, same password."""
        self.stop()
        return self.start(timeout)

    def log_tail(self, lines: int = 40) -> str:
        return self.process.log_tail(lines) if self.process is not None else "(not started)"

    def _accepts_login(self) -> bool:
        if not port_open(self.host, self.port):
            return False
        try:
            with neo4j.GraphDatabase.driver(self.uri, auth=self.auth, connection_timeout=2.0) as driver:
                driver.verify_connectivity()
        except AuthError:
            # Not a matter of waiting: the database holds another password (e.g. a reused workdir).
            raise
        except (DriverError, Neo4jError, OSError):
            return False
        return True


def build_server_classpath() -> Path:
    """Resolve (once per version, cached) the server's jars; return the cache dir holding classpath.txt."""
    build = tethered_popen(
        [str(SERVICE_DIR / "build")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        stdout, stderr = build.communicate(timeout=BUILD_TIMEOUT)
    except BaseException:
        # SIGTERM first: `build` then stops the throwaway server it may run (a SIGKILL would orphan that).
        _end_process_group(build)
        raise
    if build.returncode != 0:
        raise RuntimeError(f"e2e/services/neo4j/build failed:\n{stderr.strip()}")
    return Path(stdout.strip().splitlines()[-1])


def _end_process_group(process: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=90)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
