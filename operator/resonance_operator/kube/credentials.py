"""Credentials from ``KUBECONFIG`` (token or client-certificate users) or the
in-cluster service account, loaded with the ``kubernetes`` package's config
loaders so every kubeconfig flavour it knows works here too."""

from __future__ import annotations

import dataclasses
import os
import ssl
from pathlib import Path

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from resonance_operator.errors import CredentialsError

IN_CLUSTER_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


@dataclasses.dataclass(frozen=True)
class Credentials:
    server: str
    token: str | None = None
    token_path: Path | None = None  # re-read on each use: projected tokens rotate
    ca_path: str | None = None
    cert_path: str | None = None
    key_path: str | None = None
    insecure: bool = False
    default_namespace: str | None = None

    def bearer_token(self) -> str | None:
        if self.token_path is not None:
            return self.token_path.read_text().strip()
        return self.token

    def ssl_context(self) -> ssl.SSLContext | bool:
        if not self.server.startswith("https"):
            return False
        context = ssl.create_default_context(cafile=self.ca_path)
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.cert_path is not None:
            context.load_cert_chain(self.cert_path, self.key_path)
        return context


def load(kubeconfig: str | None = None) -> Credentials:
    """From ``kubeconfig`` (or ``$KUBECONFIG``/``~/.kube/config``), else the in-cluster account."""
    configuration = k8s_client.Configuration()
    token_path: Path | None = None
    namespace: str | None = None
    explicit = kubeconfig is not None
    # Resolved here, not by the kubernetes package (which reads $KUBECONFIG once, at import).
    kubeconfig = kubeconfig or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    try:
        k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)  # type: ignore[no-untyped-call]
        _, context = k8s_config.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        namespace = context.get("context", {}).get("namespace")
    except (k8s_config.ConfigException, FileNotFoundError, TypeError) as kubeconfig_error:
        if explicit:
            raise CredentialsError(
                f"cannot load kubeconfig {kubeconfig}: {kubeconfig_error}"
            ) from kubeconfig_error
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except k8s_config.ConfigException as in_cluster_error:
            raise CredentialsError(
                f"no kubeconfig ({kubeconfig_error}) and not in a cluster ({in_cluster_error})"
            ) from in_cluster_error
        token_path = IN_CLUSTER_TOKEN
    authorization = (configuration.api_key or {}).get("authorization") or (configuration.api_key or {}).get(
        "BearerToken"
    )
    token = authorization.split(" ", 1)[-1].strip() if authorization else None
    return Credentials(
        server=str(configuration.host).rstrip("/"),
        token=token,
        token_path=token_path,
        ca_path=configuration.ssl_ca_cert or None,
        cert_path=configuration.cert_file or None,
        key_path=configuration.key_file or None,
        insecure=not configuration.verify_ssl,
        default_namespace=namespace,
    )
