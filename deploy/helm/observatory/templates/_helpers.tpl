{{/*
observatory.name is the chart's name, or nameOverride.
*/}}
{{- define "observatory.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
observatory.fullname names every object of the release: fullnameOverride,
else the release name when it already contains the chart's name, else
release-chart. Kubernetes names are at most 63 characters.
*/}}
{{- define "observatory.fullname" -}}
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

{{- define "observatory.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
observatory.selectorLabels pick the server's pods: the Service, the
disruption budget and the scrape objects select on exactly these.
*/}}
{{- define "observatory.selectorLabels" -}}
app.kubernetes.io/name: {{ include "observatory.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end }}

{{- define "observatory.labels" -}}
helm.sh/chart: {{ include "observatory.chart" . }}
{{ include "observatory.selectorLabels" . }}
app.kubernetes.io/version: {{ include "observatory.tag" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: observatory
{{- end }}

{{/*
observatory.tag is the image tag: image.tag, else the chart's appVersion.
"latest" (or no tag at all) fails the render: a pod restarted later would
run other code than its siblings.
*/}}
{{- define "observatory.tag" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag | toString }}
{{- if or (eq $tag "") (eq $tag "latest") }}
{{- fail "image.tag must name a release (the chart's appVersion by default), never \"latest\"" }}
{{- end }}
{{- $tag }}
{{- end }}

{{- define "observatory.image" -}}
{{- $ref := printf "%s:%s" .Values.image.repository (include "observatory.tag" .) }}
{{- if .Values.image.digest }}
{{- $ref = printf "%s@%s" $ref .Values.image.digest }}
{{- end }}
{{- $ref }}
{{- end }}

{{/*
The Secrets the pods read: the one a value names (existingSecret), else
the one the chart makes of the value. A missing one fails the render with
what to set.
*/}}
{{- define "observatory.adminSecret" -}}
{{- if .Values.admin.existingSecret }}
{{- .Values.admin.existingSecret }}
{{- else if .Values.admin.password }}
{{- printf "%s-admin" (include "observatory.fullname" .) }}
{{- else }}
{{- fail "the admin password is missing: set admin.existingSecret (a Secret with the password under admin.existingSecretKey) or admin.password" }}
{{- end }}
{{- end }}

{{- define "observatory.signingSecret" -}}
{{- if .Values.signingKeys.existingSecret }}
{{- .Values.signingKeys.existingSecret }}
{{- else if .Values.signingKeys.ring }}
{{- printf "%s-signing-keys" (include "observatory.fullname" .) }}
{{- else }}
{{- fail "the signing keys are missing: set signingKeys.existingSecret (a Secret with the key file under signingKeys.existingSecretKey) or signingKeys.ring (observatory rotate-key --signing-key-file keys.json makes one)" }}
{{- end }}
{{- end }}

{{- define "observatory.natsSecret" -}}
{{- if .Values.nats.credentials.existingSecret }}
{{- .Values.nats.credentials.existingSecret }}
{{- else if .Values.nats.credentials.creds }}
{{- printf "%s-nats" (include "observatory.fullname" .) }}
{{- else }}
{{- fail "serve's NATS credentials are missing: set nats.credentials.existingSecret (a Secret with the .creds file under nats.credentials.credsKey) or nats.credentials.creds (docs/deploy.md: nsc generate creds)" }}
{{- end }}
{{- end }}

{{/*
observatory.hasAccountSigningKey says whether serve gets
--nats-account-signing-key: with an existingSecret, unless
accountSigningKeyKey is emptied (a Secret without the key); else when the
value is set.
*/}}
{{- define "observatory.hasAccountSigningKey" -}}
{{- if .Values.nats.credentials.existingSecret }}
{{- if .Values.nats.credentials.accountSigningKeyKey }}true{{ end }}
{{- else if .Values.nats.credentials.accountSigningKey }}true{{ end }}
{{- end }}
