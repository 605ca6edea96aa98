{{/* Chart name. */}}
{{- define "resonance-operator.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name. */}}
{{- define "resonance-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Selector labels: never change after install. */}}
{{- define "resonance-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "resonance-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Common labels. */}}
{{- define "resonance-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "resonance-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: resonance-liminal
{{- end }}

{{/* ServiceAccount name. */}}
{{- define "resonance-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "resonance-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* RBAC rules, shared by the ClusterRole (all namespaces) and the Role (one namespace). */}}
{{- define "resonance-operator.rules" -}}
# The custom resource: kopf watches it and patches its annotations and finalizer.
- apiGroups: [resonance.liminal.dev]
  resources: [resonanceclusters]
  verbs: [get, list, watch, patch]
- apiGroups: [resonance.liminal.dev]
  resources: [resonanceclusters/status]
  verbs: [get, patch]
# Owner references with blockOwnerDeletion need update on the owner's finalizers.
- apiGroups: [resonance.liminal.dev]
  resources: [resonanceclusters/finalizers]
  verbs: [update]
# Children read by name and server-side applied; stale ones pruned. No list/watch needed.
- apiGroups: [""]
  resources: [configmaps, secrets, services]
  verbs: [get, create, patch, delete]
- apiGroups: [networking.k8s.io]
  resources: [ingresses, networkpolicies]
  verbs: [get, create, patch, delete]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [get, create, patch, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, create, patch, delete]
- apiGroups: [monitoring.coreos.com]
  resources: [servicemonitors, podmonitors]
  verbs: [get, create, patch, delete]
# Workloads are also watched, so pods getting ready show up in the status at once.
- apiGroups: [apps]
  resources: [deployments, statefulsets]
  verbs: [get, list, watch, create, patch, delete]
# Backups (spec.backup): the CronJob is watched, so a finished backup reaches status.backup at once.
- apiGroups: [batch]
  resources: [cronjobs]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
# Canary / blue-green: worker Pods are listed to scrape their /metrics and drain them (no watch); their
# annotation is patched when the feature flags change, so kubelets refresh the flags' volume at once.
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, patch]
# Canary weights through the Gateway API, when spec.rollout.gatewayRoute is set.
- apiGroups: [gateway.networking.k8s.io]
  resources: [httproutes]
  verbs: [get, create, patch, delete]
# Autoscaling on connections per pod, where KEDA is installed.
- apiGroups: [keda.sh]
  resources: [scaledobjects]
  verbs: [get, create, patch, delete]
{{- end }}
