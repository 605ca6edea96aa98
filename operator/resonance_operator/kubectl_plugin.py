"""``kubectl resonance``: a ResonanceCluster at a glance, and the rollout's three buttons.

Installed as the ``kubectl-resonance`` console script, so ``kubectl`` finds it as a plugin::

    kubectl resonance status demo -n apps     # revisions, rollout step and weights, pods, datastores, events
    kubectl resonance promote demo -n apps    # finish the current step (end a pause, accept an analysis)
    kubectl resonance promote demo --full     # skip every remaining step
    kubectl resonance abort demo              # roll back: stable takes new connections, the canary drains
    kubectl resonance retry demo              # start an aborted rollout again, or rerun an analysis

It talks to the cluster through ``kubectl`` itself (so contexts, kubeconfigs and auth plugins behave
as they do for ``kubectl``; ``--context``/``--kubeconfig`` are passed on). Each pod's connections and
thyroid pain come from its ``/metrics`` through the API server's pod proxy (``-`` when not
reachable). The buttons set the ``resonance.liminal.dev/rollout-action`` annotation, exactly as the
Argo CD resource actions in ``deploy/argocd/actions`` do; the operator acts on it and removes it.
"""

from __future__ import annotations

import argparse
import calendar
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from resonance_operator.rollout.request import ACTION_ANNOTATION, Request

KIND = "resonanceclusters.resonance.liminal.dev"
REVISION_LABEL = "resonance.liminal.dev/revision"
Kubectl = Callable[[Sequence[str]], str]
"""Runs ``kubectl`` with these arguments and returns its stdout (raises :class:`PluginError`)."""


class PluginError(Exception):
    """A failure to show the user (kubectl's own message, or ours), exit status 1."""


@dataclass(frozen=True)
class PodLine:
    name: str
    revision: str
    phase: str
    ready: bool
    connections: float | None
    pain: float | None


def run_kubectl(base: Sequence[str]) -> Kubectl:
    def call(args: Sequence[str]) -> str:
        done = subprocess.run(["kubectl", *base, *args], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise PluginError(done.stderr.strip() or f"kubectl {' '.join(args)} failed")
        return done.stdout

    return call


def _metrics(text: str) -> tuple[float | None, float | None]:
    connections = pain = None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "resonance_connections":
                connections = (connections or 0.0) + sample.value
            elif sample.name == "resonance_thyroid_pain":
                pain = sample.value
    return connections, pain


def _scrape(kubectl: Kubectl, namespace: str, pod: str, ip: str | None, port: int) -> str | None:
    """A pod's ``/metrics``: through the API server's pod proxy, else straight from its IP when this
    machine is on the pod network (the API server refuses to proxy to some addresses, such as
    loopback ones); None when neither answers."""
    try:
        return kubectl(["get", "--raw", f"/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy/metrics"])
    except PluginError:
        pass
    if not ip:
        return None
    host = f"[{ip}]" if ":" in ip else ip
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=2) as reply:
            return str(reply.read().decode("utf-8", "replace"))
    except (OSError, ValueError):
        return None


def _ready(pod: Mapping[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in pod.get("status", {}).get("conditions") or []
    )


def pod_lines(kubectl: Kubectl, namespace: str, selector: str) -> list[PodLine]:
    """The cluster's worker Pods with what each one's ``/metrics`` says (through the pod proxy)."""
    pods = json.loads(kubectl(["get", "pods", "-n", namespace, "-l", selector, "-o", "json"]))["items"]
    lines = []
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        name = pod["metadata"]["name"]
        ports = [p for c in pod["spec"]["containers"] for p in c.get("ports") or []]
        connections = pain = None
        if ports and pod.get("status", {}).get("phase") == "Running":
            port = int(ports[0]["containerPort"])
            text = _scrape(kubectl, namespace, name, pod.get("status", {}).get("podIP"), port)
            if text is not None:
                connections, pain = _metrics(text)
        lines.append(
            PodLine(
                name=name,
                revision=(pod["metadata"].get("labels") or {}).get(REVISION_LABEL, "-"),
                phase=pod.get("status", {}).get("phase", "-"),
                ready=_ready(pod),
                connections=connections,
                pain=pain,
            )
        )
    return lines


def _age(timestamp: str | None, now: float) -> str:
    if not timestamp:
        return "-"
    try:
        then = calendar.timegm(time.strptime(timestamp[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return "-"
    seconds = max(0, int(now - then))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _number(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def render_status(
    cluster: Mapping[str, Any], pods: Sequence[PodLine], events: Sequence[Mapping[str, Any]], *, now: float
) -> str:
    """The text of ``kubectl resonance status`` (pure, so it is tested on its own)."""
    meta, spec, status = cluster["metadata"], cluster.get("spec", {}), cluster.get("status") or {}
    rollout = status.get("rollout") or {}
    lines = [
        f"Cluster:     {meta['namespace']}/{meta['name']}",
        f"Endpoint:    {status.get('endpoint', '-')}",
        f"Workers:     {status.get('workers', '-')} ready "
        f"(spec replicas {spec.get('worker', {}).get('replicas', '-')})",
        "",
        "Conditions:",
    ]
    for condition in status.get("conditions") or []:
        lines.append(
            f"  {condition['type']:<12} {condition['status']:<6} {condition.get('reason', ''):<22} "
            f"{condition.get('message', '')}".rstrip()
        )
    lines += ["", "Rollout:"]
    lines.append(f"  Strategy:  {rollout.get('strategy', spec.get('rollout', {}).get('strategy', '-'))}")
    if rollout.get("phase"):
        lines.append(f"  Phase:     {rollout['phase']}  step {rollout.get('step', '-')}")
    if rollout.get("message"):
        lines.append(f"  Message:   {rollout['message']}")
    stable, update = rollout.get("stableRevision"), rollout.get("updateRevision")
    weights = rollout.get("weights") or {}
    connections = rollout.get("connections") or {}
    for label, revision, side in (("Stable", stable, "stable"), ("Canary", update, "canary")):
        if revision and (side == "stable" or revision != stable):
            lines.append(
                f"  {label + ':':<10} {revision}  weight {weights.get(side, '-')}%  "
                f"connections {connections.get(side, '-')}"
            )
    if rollout.get("drainingRevision"):
        lines.append(f"  Draining:  {rollout['drainingRevision']}")
    analysis = rollout.get("analysis") or {}
    if analysis:
        lines.append(
            f"  Analysis:  {analysis.get('measurements', 0)} measured, {analysis.get('failures', 0)} failed, "
            f"{analysis.get('inconclusive', 0)} inconclusive; {analysis.get('lastMessage', '')}".rstrip("; ")
        )
    if rollout.get("abortReason"):
        lines.append(f"  Aborted:   {rollout['abortReason']}")
    lines += ["", "Pods:"]
    rows = [["NAME", "REVISION", "PHASE", "READY", "CONNECTIONS", "THYROID PAIN"]]
    rows += [
        [p.name, p.revision, p.phase, "yes" if p.ready else "no", _number(p.connections), _number(p.pain, 2)]
        for p in pods
    ]
    lines += _table(rows) if pods else ["  (none)"]
    lines += ["", "Datastores:"]
    components = status.get("components") or {}
    for name in ("redis", "neo4j"):
        component = components.get(name)
        if component:
            mode = component.get("mode", "-")
            ready = "off" if mode == "disabled" else "ready" if component.get("ready") else "not ready"
            lines.append(f"  {name:<7} {mode:<9} {ready}")
    lines += ["", "Events (last 5):"]
    recent = sorted(events, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")[-5:]
    if recent:
        rows = [["AGE", "TYPE", "REASON", "MESSAGE"]]
        rows += [
            [
                _age(e.get("lastTimestamp") or (e.get("eventTime") or "")[:19] + "Z", now),
                e.get("type", ""),
                e.get("reason", ""),
                e.get("message", "").splitlines()[0][:100] if e.get("message") else "",
            ]
            for e in recent
        ]
        lines += _table(rows)
    else:
        lines.append("  (none)")
    return "\n".join(lines) + "\n"


def status(kubectl: Kubectl, name: str, namespace: str) -> str:
    cluster = json.loads(kubectl(["get", KIND, name, "-n", namespace, "-o", "json"]))
    selector = (cluster.get("status") or {}).get("selector") or f"app.kubernetes.io/instance={name}"
    pods = pod_lines(kubectl, namespace, selector)
    events = json.loads(
        kubectl(
            [
                "get",
                "events",
                "-n",
                namespace,
                "--field-selector",
                f"involvedObject.name={name},involvedObject.kind=ResonanceCluster",
                "-o",
                "json",
            ]
        )
    )["items"]
    return render_status(cluster, pods, events, now=time.time())


def request(kubectl: Kubectl, name: str, namespace: str, action: Request) -> str:
    kubectl(["get", KIND, name, "-n", namespace, "-o", "name"])  # a clear "not found" first
    kubectl(["annotate", KIND, name, "-n", namespace, "--overwrite", f"{ACTION_ANNOTATION}={action.value}"])
    return (
        f"resonancecluster {namespace}/{name}: {action.value} requested (the operator removes it once done)\n"
    )


def _common(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument(
        "-n", "--namespace", default=default, help="the cluster's namespace (default: kubectl's)"
    )
    parser.add_argument("--context", default=default, help="the kubeconfig context to use")
    parser.add_argument("--kubeconfig", default=default, help="the kubeconfig file to use")


def parser() -> argparse.ArgumentParser:
    """The command line; ``-n``, ``--context`` and ``--kubeconfig`` go before or after the command."""
    parser = argparse.ArgumentParser(prog="kubectl resonance", description=__doc__.split("\n\n")[0])
    _common(parser, None)
    common = argparse.ArgumentParser(add_help=False)
    _common(common, argparse.SUPPRESS)  # given after the command, they override; absent, they do not
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, parents=[common])
        sub.add_argument("name", help="the ResonanceCluster")
        return sub

    command("status", "revisions, rollout, pods, datastores and events")
    command("promote", "finish the current step (--full: every remaining step)").add_argument(
        "--full", action="store_true", help="skip every remaining step and promote"
    )
    command("abort", "roll back to the stable revision")
    command("retry", "start an aborted rollout again, or rerun an analysis")
    return parser


def main(argv: list[str] | None = None, kubectl: Kubectl | None = None) -> int:
    args = parser().parse_args(argv)
    base = [f"--{key}={value}" for key in ("context", "kubeconfig") if (value := getattr(args, key))]
    call = kubectl or run_kubectl(base)
    try:
        namespace = args.namespace or _current_namespace(call)
        if args.command == "status":
            sys.stdout.write(status(call, args.name, namespace))
        else:
            action = {
                "promote": Request.PROMOTE_FULL if getattr(args, "full", False) else Request.PROMOTE,
                "abort": Request.ABORT,
                "retry": Request.RETRY,
            }[args.command]
            sys.stdout.write(request(call, args.name, namespace, action))
    except PluginError as exc:
        print(f"kubectl resonance: {exc}", file=sys.stderr)
        return 1
    return 0


def _current_namespace(kubectl: Kubectl) -> str:
    found = kubectl(["config", "view", "--minify", "-o", "jsonpath={..namespace}"]).strip()
    return found or "default"


def entry() -> None:
    raise SystemExit(main())
