{{/* Names ---------------------------------------------------------------- */}}

{{- define "gatehouse.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's base name: the release name when it already says
"gatehouse" (so `helm install gatehouse` gives a Service `gatehouse`, as
envoy/istio/meshconfig.yaml expects), else "<release>-gatehouse". Suffixed
names stay within 63 characters. */}}
{{- define "gatehouse.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "gatehouse.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "gatehouse.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "gatehouse.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The gRPC Service's fully qualified name (Istio's extensionProviders,
Envoy clusters). */}}
{{- define "gatehouse.serviceFQDN" -}}
{{- printf "%s.%s.svc.%s" (include "gatehouse.fullname" .) .Release.Namespace .Values.clusterDomain }}
{{- end }}

{{/* Labels -------------------------------------------------------------------
Every object carries the app.kubernetes.io/* labels. Selectors use name,
instance and component only (immutable across upgrades); components:
server (gatehouse), gateway (Envoy), store (Redis). */}}

{{- define "gatehouse.labels" -}}
helm.sh/chart: {{ include "gatehouse.chart" .root }}
{{ include "gatehouse.selectorLabels" . }}
app.kubernetes.io/version: {{ get . "version" | default .root.Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/part-of: gatehouse
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "gatehouse.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gatehouse.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Images ------------------------------------------------------------------ */}}

{{- define "gatehouse.imageRef" -}}
{{- if .image.digest -}}
{{ .image.repository }}@{{ .image.digest }}
{{- else -}}
{{ .image.repository }}:{{ .image.tag | default .default }}
{{- end }}
{{- end }}

{{/* The version label of a component: its image tag (or the chart's
appVersion for gatehouse). */}}
{{- define "gatehouse.imageVersion" -}}
{{- if .image.digest }}{{ .image.digest | trimPrefix "sha256:" | trunc 12 }}{{ else }}{{ .image.tag | default .default }}{{ end }}
{{- end }}

{{/* Ports and addresses ----------------------------------------------------- */}}

{{- define "gatehouse.hostPort" -}}
{{- if contains ":" .addr }}[{{ .addr }}]:{{ .port }}{{ else }}{{ .addr }}:{{ .port }}{{ end }}
{{- end }}

{{/* Secrets ------------------------------------------------------------------
Every reference is mounted read-only under /var/run/secrets/gatehouse. */}}

{{- define "gatehouse.secretsDir" -}}/var/run/secrets/gatehouse{{- end }}

{{- define "gatehouse.redisPasswordSecret" -}}
{{- if .Values.secrets.redisPassword.secretName }}
{{- .Values.secrets.redisPassword.secretName }}
{{- else if .Values.redis.enabled }}
{{- .Values.redis.auth.existingSecret }}
{{- end }}
{{- end }}

{{- define "gatehouse.redisPasswordKey" -}}
{{- if .Values.secrets.redisPassword.secretName }}
{{- .Values.secrets.redisPassword.key }}
{{- else }}
{{- .Values.redis.auth.existingSecretKey }}
{{- end }}
{{- end }}

{{/* The configuration file ----------------------------------------------------
`config` with the listening addresses and the mounted signing keys filled
in. The checksum annotation hashes this text, so any change rolls the pods. */}}

{{- define "gatehouse.config" -}}
{{- $cfg := deepCopy (.Values.config | default dict) }}
{{- $server := get $cfg "server" | default dict }}
{{- $grpc := include "gatehouse.hostPort" (dict "addr" .Values.listenAddress "port" .Values.ports.grpc) }}
{{- $http := include "gatehouse.hostPort" (dict "addr" .Values.listenAddress "port" .Values.ports.http) }}
{{- if and (hasKey $server "grpc_addr") (ne (toString (get $server "grpc_addr")) $grpc) }}
{{- fail (printf "config.server.grpc_addr is %v, but the chart listens on %s (listenAddress and ports.grpc): remove config.server.grpc_addr" (get $server "grpc_addr") $grpc) }}
{{- end }}
{{- if and (hasKey $server "http_addr") (ne (toString (get $server "http_addr")) $http) }}
{{- fail (printf "config.server.http_addr is %v, but the chart listens on %s (listenAddress and ports.http): remove config.server.http_addr" (get $server "http_addr") $http) }}
{{- end }}
{{- $_ := set $server "grpc_addr" $grpc }}
{{- $_ := set $server "http_addr" $http }}
{{- $_ := set $cfg "server" $server }}
{{- with .Values.secrets.signingKeys }}
{{- $issuer := get $cfg "issuer" }}
{{- if not $issuer }}
{{- fail "secrets.signingKeys is set but config.issuer is not: the signing keys belong to the internal issuer (config.issuer.issuer, links, reissue)" }}
{{- end }}
{{- if hasKey $issuer "signing_keys" }}
{{- fail "config.issuer.signing_keys and secrets.signingKeys are both set: list the keys in secrets.signingKeys only (the chart mounts them and writes issuer.signing_keys)" }}
{{- end }}
{{- $keys := list }}
{{- range $i, $ref := . }}
{{- $keys = append $keys (dict "file" (printf "%s/signing-keys/%d/%s" (include "gatehouse.secretsDir" $) $i $ref.key)) }}
{{- end }}
{{- $_ := set $issuer "signing_keys" $keys }}
{{- end }}
{{- $store := get $cfg "store" | default dict }}
{{- if and .Values.redis.enabled (not (hasKey $store "redis")) }}
{{- if hasKey $store "memory" }}
{{- fail "redis.enabled and config.store.memory are both set: remove config.store.memory (with redis.enabled the chart points the store at the bundled Redis)" }}
{{- end }}
{{- $_ := set $store "redis" (dict "url" (printf "redis://%s-redis:%v/0" (include "gatehouse.fullname" .) .Values.redis.port)) }}
{{- end }}
{{- $redis := get $store "redis" }}
{{- if $redis }}
{{- $secret := include "gatehouse.redisPasswordSecret" . }}
{{- if $secret }}
{{- if hasKey $redis "password_file" }}
{{- fail "config.store.redis.password_file is set, and the chart mounts a Redis password Secret too: remove config.store.redis.password_file (the chart writes it from secrets.redisPassword)" }}
{{- end }}
{{- $_ := set $redis "password_file" (printf "%s/redis/%s" (include "gatehouse.secretsDir" .) (include "gatehouse.redisPasswordKey" .)) }}
{{- end }}
{{- end }}
{{- if .Values.secrets.storeKey.secretName }}
{{- if hasKey $store "encryption_key_file" }}
{{- fail "config.store.encryption_key_file and secrets.storeKey are both set: name the key in secrets.storeKey only (the chart mounts it and writes store.encryption_key_file)" }}
{{- end }}
{{- $_ := set $store "encryption_key_file" (printf "%s/store-key/%s" (include "gatehouse.secretsDir" .) .Values.secrets.storeKey.key) }}
{{- else if and $redis (not (hasKey $store "encryption_key_file")) }}
{{- fail "the store is Redis but secrets.storeKey is not set: gatehouse encrypts what it keeps in Redis with that key (make one with `gatehouse keys store-key`, store it in a Secret, and name it in secrets.storeKey)" }}
{{- end }}
{{- if $store }}
{{- $_ := set $cfg "store" $store }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/* Topology spread constraints; one without a labelSelector gets `selector`
(the selector labels of the component, as YAML text). */}}
{{- define "gatehouse.spreadConstraints" -}}
{{- $out := list }}
{{- range .constraints }}
{{- $c := deepCopy . }}
{{- if not (hasKey $c "labelSelector") }}
{{- $_ := set $c "labelSelector" (dict "matchLabels" (fromYaml $.selector)) }}
{{- end }}
{{- $out = append $out $c }}
{{- end }}
{{- toYaml $out }}
{{- end }}
