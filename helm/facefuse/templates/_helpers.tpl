{{- define "facefuse.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "facefuse.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "facefuse.chartLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "facefuse.labels" -}}
{{ include "facefuse.chartLabels" . }}
app.kubernetes.io/name: {{ include "facefuse.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of one component's objects: (list . "triton"). */}}
{{- define "facefuse.componentLabels" -}}
{{ include "facefuse.chartLabels" (index . 0) }}
{{ include "facefuse.selectorLabels" . }}
{{- end -}}

{{/* Selector labels of one component: pass (list . "triton") or (list . "gateway"). */}}
{{- define "facefuse.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "facefuse.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "facefuse.triton.fullname" -}}{{ include "facefuse.fullname" . }}-triton{{- end -}}
{{- define "facefuse.gateway.fullname" -}}{{ include "facefuse.fullname" . }}-gateway{{- end -}}
{{- define "facefuse.triton.headless" -}}{{ include "facefuse.fullname" . }}-triton-pods{{- end -}}

{{- define "facefuse.triton.adminSecret" -}}
{{- default (printf "%s-admin" (include "facefuse.triton.fullname" .)) .Values.triton.adminKey.existingSecret -}}
{{- end -}}

{{/* The model repository roots Triton is started with. */}}
{{- define "facefuse.triton.repositories" -}}
{{- $repo := .Values.triton.modelRepository -}}
{{- if or (eq $repo.source "s3") (eq $repo.source "gcs") -}}
{{- required "triton.modelRepository.url is needed for s3/gcs" $repo.url | trimSuffix "/" -}}
{{- else -}}
/opt/facefuse/repository
{{- end -}}
{{- end -}}

{{/* Selector of the pods the queue-time metric is read from. */}}
{{- define "facefuse.triton.podRegex" -}}{{ include "facefuse.triton.fullname" . }}-[a-z0-9]+-[a-z0-9]+{{- end -}}

{{/* Queue time per request entering an ensemble, over every Triton pod of this release
     (KEDA); the recording rule computes the same per pod (Prometheus Adapter). */}}
{{- define "facefuse.queueQuery" -}}
{{- $sel := printf "namespace=%q,pod=~%q" .Release.Namespace (include "facefuse.triton.podRegex" .) -}}
sum(rate(nv_inference_queue_duration_us{{ "{" }}{{ $sel }},model!~"face_fusion|face_analyze|face_fuse"{{ "}" }}[{{ .Values.autoscaling.window }}])) / clamp_min(sum(rate(nv_inference_request_success{{ "{" }}{{ $sel }},model=~"face_fusion|face_analyze|face_fuse"{{ "}" }}[{{ .Values.autoscaling.window }}])), 1e-9)
{{- end -}}
