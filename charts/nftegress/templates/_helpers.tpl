{{/* Chart name, truncated to the 63 characters of a label value. */}}
{{- define "nftegress.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Prefix of every object name: the release name, plus the chart name unless the release name
already contains it ("nftegress" for a release named nftegress).
*/}}
{{- define "nftegress.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "nftegress.agentName" -}}{{ include "nftegress.fullname" . }}-agent{{- end }}
{{- define "nftegress.controllerName" -}}{{ include "nftegress.fullname" . }}-controller{{- end }}

{{/* Labels of every object. */}}
{{- define "nftegress.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "nftegress.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: nftegress
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component: (dict "ctx" $ "component" "agent"). */}}
{{- define "nftegress.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nftegress.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Labels of one component's objects: (dict "ctx" $ "component" "agent"). */}}
{{- define "nftegress.componentLabels" -}}
{{ include "nftegress.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "nftegress.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}
{{- end }}

{{/* KUBERNETES_SERVICE_HOST/PORT for clusters without kube-proxy. */}}
{{- define "nftegress.apiServerEnv" -}}
{{- if .Values.k8sServiceHost }}
- name: KUBERNETES_SERVICE_HOST
  value: {{ .Values.k8sServiceHost | quote }}
- name: KUBERNETES_SERVICE_PORT
  value: {{ default "443" (toString .Values.k8sServicePort) | quote }}
{{- end }}
{{- end }}

{{- define "nftegress.leaseName" -}}{{ include "nftegress.controllerName" . }}{{- end }}

{{/* The username of the agent's service account, as the API server authenticates it. */}}
{{- define "nftegress.agentUser" -}}
system:serviceaccount:{{ .Release.Namespace }}:{{ include "nftegress.agentName" . }}
{{- end }}
