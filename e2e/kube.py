"""Small helpers the e2e tests share: kubectl, waiting, throwaway namespaces.

Everything goes through ``KUBECONFIG``, so the suite runs unchanged against the
harness's control plane, kind, k3d or any other cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

CACHED_BIN = (
    Path(os.environ.get("RESONANCE_CACHE", Path.home() / ".cache" / "resonance-liminal")) / "bin" / "current"
)


def tool(name: str) -> str:
    """The harness-built binary when present, else the one on PATH."""
    cached = CACHED_BIN / name
    if cached.exists():
        return str(cached)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found: run `make binaries` or put it on PATH")
    return found


class KubectlError(RuntimeError):
    def __init__(self, args: list[str], returncode: int, stderr: str) -> None:
        super().__init__(f"kubectl {' '.join(args)} exited {returncode}: {stderr.strip()}")
        self.returncode = returncode
        self.stderr = stderr


def kubectl(*args: str, input: str | None = None, kubeconfig: str | None = None, check: bool = True) -> str:
    """Run kubectl and return its stdout; raise ``KubectlError`` on failure when ``check``."""
    env = dict(os.environ)
    if kubeconfig is not None:
        env["KUBECONFIG"] = kubeconfig
    proc = subprocess.run(
        [tool("kubectl"), *args], input=input, capture_output=True, text=True, env=env, timeout=120
    )
    if check and proc.returncode != 0:
        raise KubectlError(list(args), proc.returncode, proc.stderr)
    return proc.stdout


def kubectl_json(*args: str, kubeconfig: str | None = None) -> Any:
    return json.loads(kubectl(*args, "-o", "json", kubeconfig=kubeconfig))


def apply(manifest: dict[str, Any] | str, *, namespace: str | None = None) -> str:
    text = manifest if isinstance(manifest, str) else json.dumps(manifest)
    ns = ["-n", namespace] if namespace else []
    return kubectl("apply", *ns, "-f", "-", input=text)


def wait_until(check: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.5) -> Any:
    """Poll until ``check()`` returns something truthy; return it. Fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except (KubectlError, KeyError, IndexError) as exc:
            last_error = exc
            result = None
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last error: {last_error}")


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
