#!/usr/bin/env python3
"""A real Kubernetes control plane on loopback, without Docker.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler (built from
the Go module proxy by ``build-binaries``) plus kwok for fake nodes, so the pods
of a Deployment are scheduled, Running and Ready. RBAC is on and
ServiceAccount tokens work.

    controlplane.py up   [--workdir DIR] [--nodes N]   # start, wait, print KUBECONFIG
    controlplane.py down [--workdir DIR]               # stop everything, remove state
    controlplane.py status [--workdir DIR]
    controlplane.py restart kube-apiserver [--workdir DIR]  # kill and start again in place

Standard library only, so it runs before any virtualenv exists.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DEFAULT_WORKDIR = REPO / ".run" / "cluster"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


def log(msg: str) -> None:
    print(f"controlplane: {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    """A free loopback port below the ephemeral range, which outgoing connections draw from
    (a port handed out by binding to 0 can be taken as a source port before we listen on it)."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 32768)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-32767")


def build_binaries() -> Path:
    out = subprocess.run([str(HERE / "build-binaries")], check=True, stdout=subprocess.PIPE, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


def make_pki(pki: Path) -> None:
    """A CA, a serving certificate for 127.0.0.1/localhost, and the ServiceAccount signing key."""
    pki.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("genrsa", "-out", str(pki / "ca.key"), "2048")
    openssl(
        "req",
        "-x509",
        "-new",
        "-nodes",
        "-key",
        str(pki / "ca.key"),
        "-subj",
        "/CN=resonance-test-ca",
        "-days",
        "3650",
        "-out",
        str(pki / "ca.crt"),
    )
    openssl("genrsa", "-out", str(pki / "apiserver.key"), "2048")
    ext = pki / "apiserver.ext"
    ext.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
        "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:10.96.0.1\n"
        "extendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n"
    )
    openssl(
        "req",
        "-new",
        "-key",
        str(pki / "apiserver.key"),
        "-subj",
        "/CN=kube-apiserver",
        "-out",
        str(pki / "apiserver.csr"),
    )
    openssl(
        "x509",
        "-req",
        "-in",
        str(pki / "apiserver.csr"),
        "-CA",
        str(pki / "ca.crt"),
        "-CAkey",
        str(pki / "ca.key"),
        "-CAcreateserial",
        "-days",
        "3650",
        "-extfile",
        str(ext),
        "-out",
        str(pki / "apiserver.crt"),
    )
    openssl("genrsa", "-out", str(pki / "sa.key"), "2048")
    openssl("rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub"))


def kubeconfig_text(server: str, ca: Path, token: str, user: str = "admin") -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "resonance-test", "cluster": {"server": server, "certificate-authority": str(ca)}}
            ],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": "resonance-test", "context": {"cluster": "resonance-test", "user": user}}],
            "current-context": "resonance-test",
        },
        indent=2,
    )


def start(name: str, argv: list[str], workdir: Path) -> int:
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with (logs / f"{name}.log").open("ab") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    (workdir / "pids").mkdir(exist_ok=True)
    (workdir / "pids" / name).write_text(str(proc.pid))
    # The exact command line, so ``restart`` brings the component back with the same flags.
    (workdir / "argv").mkdir(exist_ok=True)
    (workdir / "argv" / name).write_text(json.dumps(argv))
    return proc.pid


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    with contextlib.suppress(FileNotFoundError):
        if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            return False
    return True


def wait_for(
    what: str, check, *, timeout: float, pid: int | None = None, workdir: Path | None = None, name: str = ""
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # any failure just means "not yet"
            pass
        if pid is not None and not alive(pid):
            tail = ""
            if workdir is not None:
                tail = "\n".join(
                    (workdir / "logs" / f"{name}.log").read_text(errors="replace").splitlines()[-30:]
                )
            raise SystemExit(f"controlplane: {name} died while waiting for {what}\n{tail}")
        time.sleep(0.25)
    raise SystemExit(f"controlplane: timed out after {timeout:.0f} s waiting for {what}")


class Api:
    """Just enough of a client to wait for readiness and create nodes."""

    def __init__(self, server: str, ca: Path, token: str) -> None:
        self.server = server
        self.token = token
        self.ctx = ssl.create_default_context(cafile=str(ca))

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=10) as resp:
                raw = resp.read()
                return resp.status, (json.loads(raw) if raw[:1] == b"{" else {})
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            return exc.code, (json.loads(raw) if raw[:1] == b"{" else {})


def pod_cidr(workdir: Path) -> str:
    """A loopback /16 for this cluster's Pod IPs, ``127.N.0.0/16`` with N (100..249) from the
    work directory: control planes running side by side on one machine (the test run's, a
    developer's) then give their Pods different addresses, and real workers bound at them
    (``e2e/podrunner.py``) do not collide."""
    digest = hashlib.sha256(str(workdir.resolve()).encode()).digest()
    return f"127.{100 + digest[0] % 150}.0.0/16"


def up(workdir: Path, nodes: int) -> None:
    if (workdir / "env").exists() and all(alive(p) for p in pids(workdir).values()) and pids(workdir):
        log(f"already running; KUBECONFIG={workdir / 'kubeconfig'}")
        print(f"export KUBECONFIG={workdir / 'kubeconfig'}")
        return
    down(workdir, quiet=True)
    t0 = time.monotonic()
    bins = build_binaries()
    workdir.mkdir(parents=True, exist_ok=True)
    pki = workdir / "pki"
    make_pki(pki)
    token = secrets.token_hex(24)
    (pki / "tokens.csv").write_text(f"{token},admin,admin,system:masters\n")
    ports = {name: free_port() for name in ("etcd", "etcd_peer", "apiserver", "kcm", "scheduler", "kwok")}
    server = f"https://127.0.0.1:{ports['apiserver']}"
    (workdir / "env").write_text(json.dumps({"server": server, "ports": ports}))
    kubeconfig = workdir / "kubeconfig"
    kubeconfig.write_text(kubeconfig_text(server, pki / "ca.crt", token))
    kubeconfig.chmod(0o600)
    # etcd data on tmpfs when there is one: the control plane is disposable.
    shm = Path("/dev/shm")
    etcd_data = (shm if shm.is_dir() else workdir) / f"resonance-etcd-{ports['etcd']}"
    (workdir / "etcd-data").write_text(str(etcd_data))

    etcd_url = f"http://127.0.0.1:{ports['etcd']}"
    pid = start(
        "etcd",
        [
            str(bins / "etcd"),
            "--name=node0",
            f"--data-dir={etcd_data}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{ports['etcd_peer']}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{ports['etcd_peer']}",
            f"--initial-cluster=node0=http://127.0.0.1:{ports['etcd_peer']}",
            "--unsafe-no-fsync",
            "--log-level=warn",
            "--listen-metrics-urls=",
        ],
        workdir,
    )
    wait_for(
        "etcd health",
        lambda: urllib.request.urlopen(etcd_url + "/health", timeout=2).status == 200,
        timeout=60,
        pid=pid,
        workdir=workdir,
        name="etcd",
    )

    pid = start(
        "kube-apiserver",
        [
            str(bins / "kube-apiserver"),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={ports['apiserver']}",
            "--endpoint-reconciler-type=none",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--token-auth-file={pki / 'tokens.csv'}",
            "--authorization-mode=Node,RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--api-audiences=https://kubernetes.default.svc.cluster.local",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--allow-privileged=true",
            "--profiling=false",
        ],
        workdir,
    )
    api = Api(server, pki / "ca.crt", token)
    wait_for(
        "kube-apiserver /readyz",
        lambda: api.request("GET", "/readyz")[0] == 200,
        timeout=180,
        pid=pid,
        workdir=workdir,
        name="kube-apiserver",
    )

    start(
        "kube-controller-manager",
        [
            str(bins / "kube-controller-manager"),
            f"--kubeconfig={kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports['kcm']}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            "--use-service-account-credentials=false",
            "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-node-route-controller",
            "--concurrent-deployment-syncs=10",
            "--concurrent-replicaset-syncs=10",
        ],
        workdir,
    )
    start(
        "kube-scheduler",
        [
            str(bins / "kube-scheduler"),
            f"--kubeconfig={kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports['scheduler']}",
        ],
        workdir,
    )
    start(
        "kwok",
        [
            str(bins / "kwok"),
            f"--kubeconfig={kubeconfig}",
            f"--config={bins / 'kwok-stages.yaml'}",
            "--manage-all-nodes=true",
            # Pod IPs are loopback addresses (Linux routes all of 127/8 to lo), so
            # e2e/podrunner.py can run real workers bound at them.
            f"--cidr={pod_cidr(workdir)}",
            "--node-ip=10.240.0.1",
            f"--server-address=127.0.0.1:{ports['kwok']}",
            "--node-lease-duration-seconds=40",
        ],
        workdir,
    )

    for i in range(nodes):
        status, body = api.request(
            "POST",
            "/api/v1/nodes",
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": f"kwok-node-{i}",
                    "labels": {
                        "type": "kwok",
                        "kubernetes.io/hostname": f"kwok-node-{i}",
                        "topology.kubernetes.io/zone": f"zone-{i % 3}",
                    },
                    "annotations": {"kwok.x-k8s.io/node": "fake"},
                },
            },
        )
        if status not in (201, 409):
            raise SystemExit(f"controlplane: creating node failed: {status} {body}")

    def nodes_ready() -> bool:
        _, body = api.request("GET", "/api/v1/nodes")
        ready = [
            n
            for n in body.get("items", [])
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in n.get("status", {}).get("conditions", [])
            )
        ]
        return len(ready) >= nodes

    wait_for(
        "kwok nodes Ready", nodes_ready, timeout=120, pid=pids(workdir)["kwok"], workdir=workdir, name="kwok"
    )
    wait_for(
        "default ServiceAccount",
        lambda: api.request("GET", "/api/v1/namespaces/default/serviceaccounts/default")[0] == 200,
        timeout=120,
        pid=pids(workdir)["kube-controller-manager"],
        workdir=workdir,
        name="kube-controller-manager",
    )
    log(f"up in {time.monotonic() - t0:.1f} s: {server}, {nodes} kwok nodes, pod IPs in {pod_cidr(workdir)}")
    print(f"export KUBECONFIG={kubeconfig}")


def pids(workdir: Path) -> dict[str, int]:
    found = {}
    for name in COMPONENTS:
        path = workdir / "pids" / name
        if path.exists():
            found[name] = int(path.read_text())
    return found


def down(workdir: Path, *, quiet: bool = False) -> None:
    running = pids(workdir)
    # Reverse order: clients of the API first, etcd last.
    for name in reversed(COMPONENTS):
        pid = running.get(name)
        if pid is None:
            continue
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        (workdir / "pids" / name).unlink(missing_ok=True)
    data_file = workdir / "etcd-data"
    if data_file.exists():
        shutil.rmtree(data_file.read_text().strip(), ignore_errors=True)
    if workdir.exists() and (running or not quiet):
        shutil.rmtree(workdir, ignore_errors=True)
    if not quiet:
        log("down" if running else "nothing was running")


def status(workdir: Path) -> int:
    running = pids(workdir)
    for name in COMPONENTS:
        pid = running.get(name)
        print(f"{name:26} {'running' if pid and alive(pid) else 'stopped'}")
    return 0 if running and all(alive(p) for p in running.values()) else 1


def restart(workdir: Path, name: str, *, grace: float) -> None:
    """Stop one component and start it again in place: same binary, flags, port, certs, etcd data.

    ``grace`` 0 kills it outright (SIGKILL, a crash); otherwise SIGTERM and up to ``grace``
    seconds to exit. Only the API server is supported: its clients' watches are what restarting
    it tests, and ``/readyz`` says when it is back.
    """
    if name != "kube-apiserver":
        raise SystemExit(f"controlplane: restarting {name} is not supported (only kube-apiserver)")
    pid = pids(workdir).get(name)
    if pid is None:
        raise SystemExit(f"controlplane: no {name} in {workdir}")
    saved = workdir / "argv" / name
    if saved.exists():
        argv = json.loads(saved.read_text())
    else:  # started by an older harness: read the live command line
        argv = Path(f"/proc/{pid}/cmdline").read_text().rstrip("\0").split("\0")
    t0 = time.monotonic()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL if grace <= 0 else signal.SIGTERM)
    deadline = time.monotonic() + max(grace, 0) + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    while alive(pid):
        time.sleep(0.05)
    stopped = time.monotonic()
    config = json.loads((workdir / "kubeconfig").read_text())
    token = config["users"][0]["user"]["token"]
    server = json.loads((workdir / "env").read_text())["server"]
    api = Api(server, workdir / "pki" / "ca.crt", token)
    log_file = workdir / "logs" / f"{name}.log"
    for attempt in range(40):
        offset = log_file.stat().st_size if log_file.exists() else 0
        new_pid = start(name, argv, workdir)
        try:
            wait_for(
                f"{name} /readyz after restart",
                lambda: api.request("GET", "/readyz")[0] == 200,
                timeout=180,
                pid=new_pid,
                workdir=workdir,
                name=name,
            )
            break
        except SystemExit:
            # The port is in the ephemeral range: a client retrying its connection meanwhile can
            # get it as its own local port (a TCP self-connect) and hold it for a moment. Retry.
            with log_file.open("rb") as out:
                out.seek(offset)
                if b"address already in use" not in out.read() or attempt == 39:
                    raise
            time.sleep(0.5)
    log(
        f"{name} restarted: down {time.monotonic() - stopped:.1f} s "
        f"(stop {stopped - t0:.1f} s), pid {pid} -> {new_pid}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["up", "down", "status", "restart"])
    parser.add_argument("component", nargs="?", help="for restart: the component (kube-apiserver)")
    parser.add_argument(
        "--grace", type=float, default=0.0, help="for restart: SIGTERM and wait this long; 0 = SIGKILL"
    )
    parser.add_argument(
        "--workdir", type=Path, default=Path(os.environ.get("RESONANCE_CLUSTER_DIR", DEFAULT_WORKDIR))
    )
    parser.add_argument("--nodes", type=int, default=3)
    args = parser.parse_args()
    workdir = args.workdir.resolve()
    if args.command == "up":
        try:
            up(workdir, args.nodes)
        except BaseException:
            down(workdir, quiet=True)
            raise
        return 0
    if args.command == "down":
        down(workdir)
        return 0
    if args.command == "restart":
        if not args.component:
            parser.error("restart needs a component, e.g. `restart kube-apiserver`")
        restart(workdir, args.component, grace=args.grace)
        return 0
    return status(workdir)


if __name__ == "__main__":
    sys.exit(main())
