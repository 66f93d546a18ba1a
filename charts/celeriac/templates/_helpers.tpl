{{/* Names, labels and the checks every template runs first. */}}

{{- define "celeriac.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "<release>-celeriac", or the release name alone when it already says celeriac. */}}
{{- define "celeriac.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "celeriac.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "celeriac.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: celeriac
{{- end }}

{{/* Never change after the first install: the Deployment's selector is immutable. */}}
{{- define "celeriac.selectorLabels" -}}
app.kubernetes.io/name: {{ include "celeriac.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "celeriac.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "celeriac.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false: name an existing ServiceAccount" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "celeriac.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "celeriac.workerImage" -}}
{{- default (printf "ghcr.io/celeriac/celeriac:%s" .Chart.AppVersion) .Values.workerImage }}
{{- end }}

{{/* The watched namespaces with scope "namespaces" (default: the release namespace), as a list. */}}
{{- define "celeriac.watchNamespaces" -}}
{{- if .Values.watch.namespaces }}
{{- toJson .Values.watch.namespaces }}
{{- else }}
{{- toJson (list .Release.Namespace) }}
{{- end }}
{{- end }}

{{/* The operator's command line: the image's ENTRYPOINT (operator/Dockerfile), stated explicitly. */}}
{{- define "celeriac.command" -}}
["python", "-m", "celeriac_operator"]
{{- end }}

{{/*
Contradictory values fail the render with what to change. The schema checks each value alone;
these check combinations.
*/}}
{{- define "celeriac.validate" -}}
{{- if and (gt (int .Values.replicas) 1) (not .Values.peering.enabled) }}
{{- fail (printf "replicas is %d but peering.enabled is false: without peering every replica would act at once. Set peering.enabled=true or replicas=1." (int .Values.replicas)) }}
{{- end }}
{{- if and .Values.image.tag .Values.image.digest }}
{{- fail (printf "image.tag (%s) and image.digest (%s) are both set: the digest alone decides which image runs. Set only one." .Values.image.tag .Values.image.digest) }}
{{- end }}
{{- if and (eq .Values.watch.scope "cluster") .Values.watch.namespaces }}
{{- fail (printf "watch.namespaces is %v but watch.scope is cluster, which watches every namespace. Set watch.scope=namespaces or empty watch.namespaces." .Values.watch.namespaces) }}
{{- end }}
{{- end }}
