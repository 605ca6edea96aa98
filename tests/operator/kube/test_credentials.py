"""Credential loading from real kubeconfig files (no API server needed to parse them)."""

from __future__ import annotations

import base64
import datetime
import ssl
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from resonance_operator.errors import CredentialsError
from resonance_operator.kube import credentials


def _self_signed(tmp_path: Path) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "resonance-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    return cert_pem, key_pem


def _kubeconfig(
    tmp_path: Path, user: dict[str, str], cluster: dict[str, object], namespace: str | None = None
) -> str:
    context: dict[str, str] = {"cluster": "c", "user": "u"}
    if namespace:
        context["namespace"] = namespace
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "ctx", "context": context}],
        "current-context": "ctx",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_token_user_with_ca_data(tmp_path: Path) -> None:
    cert, _ = _self_signed(tmp_path)
    path = _kubeconfig(
        tmp_path,
        {"token": "abc.def"},
        {"server": "https://127.0.0.1:6443", "certificate-authority-data": base64.b64encode(cert).decode()},
        namespace="apps",
    )
    creds = credentials.load(path)
    assert (creds.server, creds.bearer_token(), creds.default_namespace) == (
        "https://127.0.0.1:6443",
        "abc.def",
        "apps",
    )
    assert creds.ca_path is not None and Path(creds.ca_path).read_bytes().strip() == cert.strip()
    assert creds.cert_path is None and not creds.insecure
    context = creds.ssl_context()
    assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_REQUIRED


def test_client_certificate_user(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    path = _kubeconfig(
        tmp_path,
        {
            "client-certificate-data": base64.b64encode(cert).decode(),
            "client-key-data": base64.b64encode(key).decode(),
        },
        {"server": "https://k8s.local:443", "insecure-skip-tls-verify": True},
    )
    creds = credentials.load(path)
    assert creds.bearer_token() is None
    assert creds.insecure and creds.cert_path is not None and creds.key_path is not None
    context = creds.ssl_context()
    assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_NONE


def test_plain_http_and_rotating_token_file(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first\n")
    creds = credentials.Credentials(server="http://127.0.0.1:8080", token_path=token)
    assert creds.ssl_context() is False
    assert creds.bearer_token() == "first"
    token.write_text("second")
    assert creds.bearer_token() == "second"


def test_missing_kubeconfig_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(CredentialsError, match="cannot load kubeconfig"):
        credentials.load(str(tmp_path / "absent"))
    # No kubeconfig anywhere and no service account mounted (these tests do not run in a pod).
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(CredentialsError, match="not in a cluster"):
        credentials.load()
