"""A throw-away certificate authority and a loopback server certificate, made with ``openssl``.

For services the tests start with TLS on (Redis with ``--tls-port``): the server presents ``cert``/``key``
signed by ``ca``, valid for ``127.0.0.1`` and ``localhost``; clients verify it against ``ca``.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_tls(directory: Path) -> TlsFiles:
    """A CA and a server certificate for loopback in ``directory`` (made once; reused if present)."""
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(directory / "ca.crt", directory / "server.crt", directory / "server.key")
    if files.cert.exists():
        return files
    ca_key = directory / "ca.key"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(files.ca),
             "-days", "2", "-subj", "/CN=resonance-test-ca")  # fmt: skip
    csr = directory / "server.csr"
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(files.key), "-out", str(csr),
             "-subj", "/CN=127.0.0.1")  # fmt: skip
    extensions = directory / "server.ext"
    extensions.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(files.ca), "-CAkey", str(ca_key), "-CAcreateserial",
             "-out", str(files.cert), "-days", "2", "-extfile", str(extensions))  # fmt: skip
    files.key.chmod(0o600)
    return files
