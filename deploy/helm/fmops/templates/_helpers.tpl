{{- define "fmops.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "fmops.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "fmops.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "fmops.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "fmops.secretName" -}}
{{- .Values.existingSecret | default (include "fmops.fullname" .) -}}
{{- end -}}

{{/* The environment every fmops container gets: settings from the ConfigMap, secrets from the Secret. */}}
{{- define "fmops.env" -}}
envFrom:
  - configMapRef:
      name: {{ include "fmops.fullname" . }}
env:
  - name: FMOPS_DATABASE_URL
    valueFrom: {secretKeyRef: {name: {{ include "fmops.secretName" . }}, key: database-url}}
  - name: FMOPS_SECRET_KEY
    valueFrom: {secretKeyRef: {name: {{ include "fmops.secretName" . }}, key: secret-key}}
  - name: FMOPS_REDIS_URL
    valueFrom: {secretKeyRef: {name: {{ include "fmops.secretName" . }}, key: redis-url, optional: true}}
  - name: AWS_ACCESS_KEY_ID
    valueFrom: {secretKeyRef: {name: {{ include "fmops.secretName" . }}, key: aws-access-key-id, optional: true}}
  - name: AWS_SECRET_ACCESS_KEY
    valueFrom: {secretKeyRef: {name: {{ include "fmops.secretName" . }}, key: aws-secret-access-key, optional: true}}
{{- end -}}

{{/* The /data volume: a shared claim when one is given, else scratch space per pod. */}}
{{- define "fmops.dataVolume" -}}
- name: data
{{- if .Values.data.existingClaim }}
  persistentVolumeClaim: {claimName: {{ .Values.data.existingClaim }}}
{{- else }}
  emptyDir: {}
{{- end }}
{{- end -}}
