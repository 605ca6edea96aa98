"""Chart behaviour for running it: one replica unless peering, a readiness probe, and the uninstall
warning about clusters left with the operator's finalizer."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from tests.monitoring.conftest import CHART, by_kind, render


def test_more_than_one_replica_without_peering_is_refused(helm: str) -> None:
    result = subprocess.run(
        [helm, "template", "rel", str(CHART), "--kube-version", "1.34.0", "--set", "replicaCount=2"],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert "/peering/enabled" in result.stderr
    ha = by_kind(render(helm, "--set", "replicaCount=3", "--set", "peering.enabled=true"), "Deployment")[0]
    assert ha["spec"]["replicas"] == 3
    assert by_kind(render(helm, "--set", "replicaCount=0"), "Deployment")[0]["spec"]["replicas"] == 0


def test_operator_container_has_a_readiness_probe(helm: str) -> None:
    container = by_kind(render(helm), "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}


def render_notes(helm: str, tmp_path: Path, *args: str) -> str:
    """NOTES.txt as helm renders it (helm template leaves NOTES out and helm install needs a cluster,
    so a copy of the chart carries the same text in a ConfigMap)."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    notes = (chart / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "_notes.tpl").write_text('{{- define "notes" }}' + notes + "{{- end }}")
    (chart / "templates" / "notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n"
        '  notes: |\n{{ include "notes" . | indent 4 }}\n'
    )
    out = subprocess.run(
        [
            helm,
            "template",
            "rel",
            str(chart),
            "--namespace",
            "ops",
            "--kube-version",
            "1.34.0",
            "--show-only",
            "templates/notes.yaml",
            *args,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return str(yaml.safe_load(out)["data"]["notes"])


def test_notes_warn_about_clusters_left_with_the_finalizer(helm: str, tmp_path: Path) -> None:
    notes = render_notes(helm, tmp_path)
    assert "delete every ResonanceCluster first" in notes
    assert "resonance.liminal.dev/kopf-finalizer" in notes
    assert "kubectl delete resonanceclusters --all --all-namespaces --wait" in notes
    assert "kept on uninstall" in notes
    ha = render_notes(helm, tmp_path / "ha", "--set", "peering.enabled=true", "--set", "replicaCount=2")
    assert "2 replica(s) with peering: one acts, the others stand by" in ha
