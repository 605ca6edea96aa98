#!/usr/bin/env python3
"""Copy crds/ (the single source) into the chart's templates/crds/, gated by
`crds.create` and annotated `helm.sh/resource-policy: keep` when `crds.keep`."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
SOURCE = REPO / "crds" / "resonance.liminal.dev_resonanceclusters.yaml"
TARGET = REPO / "charts" / "resonance-operator" / "templates" / "crds" / "resonanceclusters.yaml"

HEADER = "{{- if .Values.crds.create }}\n"
ANNOTATIONS = """  annotations:
    {{- if .Values.crds.keep }}
    helm.sh/resource-policy: keep
    {{- end }}
"""
FOOTER = "{{- end }}\n"


def render() -> str:
    lines = SOURCE.read_text().splitlines(keepends=True)
    body = [line for line in lines if not line.startswith("#")]
    out: list[str] = []
    for line in body:
        out.append(line)
        if line.startswith("metadata:"):
            out.append(ANNOTATIONS)
    return HEADER + "".join(out) + FOOTER


if __name__ == "__main__":
    TARGET.write_text(render())
    print(f"wrote {TARGET.relative_to(REPO)}")
