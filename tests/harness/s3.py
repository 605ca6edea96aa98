"""A real S3-compatible server on loopback: S3Proxy (from Maven Central) over a directory.

S3Proxy speaks the S3 REST API with AWS Signature V2/V4 checked against one key pair, and stores objects
through Apache jclouds' filesystem blob store under ``workdir/blobs`` (a bucket is a directory, an object
a file). Backups written "to S3" in the tests go through that real API; a request signed with another
secret is refused with 403. The jars are resolved once per version by ``e2e/services/s3proxy/build``
and cached under ``~/.cache/resonance-liminal``; the server starts in about 3 s on this machine.
"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

from tests.harness.processes import ServiceProcess, free_port, port_open

SERVICE_DIR = Path(__file__).resolve().parents[2] / "e2e" / "services" / "s3proxy"
BUILD_TIMEOUT = 600.0  # a cold resolve from Maven Central: about 20 s here


class S3Server:
    """One S3Proxy with a generated access key and secret; ``endpoint`` is its http:// address."""

    region = "us-east-1"

    def __init__(self, workdir: Path, *, port: int | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.workdir = workdir
        self.access_key = "resonance-" + secrets.token_hex(4)
        self.secret_key = secrets.token_urlsafe(24)
        self.blobs = workdir / "blobs"
        self.process: ServiceProcess | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 60.0) -> S3Server:
        built = subprocess.run(
            [str(SERVICE_DIR / "build")], capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False
        )
        if built.returncode != 0:
            raise RuntimeError(f"e2e/services/s3proxy/build failed:\n{built.stderr}")
        classpath = (Path(built.stdout.strip()) / "classpath.txt").read_text().strip()
        self.blobs.mkdir(parents=True, exist_ok=True)
        properties = self.workdir / "s3proxy.properties"
        properties.write_text(
            "\n".join(
                [
                    f"s3proxy.endpoint={self.endpoint}",
                    "s3proxy.authorization=aws-v2-or-v4",
                    f"s3proxy.identity={self.access_key}",
                    f"s3proxy.credential={self.secret_key}",
                    "jclouds.provider=filesystem",
                    f"jclouds.filesystem.basedir={self.blobs}",
                ]
            )
            + "\n"
        )
        properties.chmod(0o600)
        argv = [
            "java",
            "-Xmx128m",
            "-XX:TieredStopAtLevel=1",
            f"-Dlogback.configurationFile={SERVICE_DIR / 'logback.xml'}",
            "-cp",
            classpath,
            "org.gaul.s3proxy.Main",
            "--properties",
            str(properties),
        ]
        self.process = ServiceProcess(f"s3proxy:{self.port}", argv, log_path=self.workdir / "s3proxy.log")
        self.process.start()
        self.process.wait_until(lambda: port_open(self.host, self.port), timeout=timeout, what="open port")
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
