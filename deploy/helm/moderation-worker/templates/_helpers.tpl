{{/*
Names and labels.
*/}}
{{- define "moderation-worker.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "moderation-worker.fullname" -}}
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

{{- define "moderation-worker.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "moderation-worker.selectorLabels" -}}
app.kubernetes.io/name: {{ include "moderation-worker.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "moderation-worker.labels" -}}
helm.sh/chart: {{ include "moderation-worker.chart" . }}
{{ include "moderation-worker.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: worker
app.kubernetes.io/part-of: moderation-worker
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "moderation-worker.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "moderation-worker.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "moderation-worker.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- $flavour := ternary "cpu" "gpu" (eq (include "moderation-worker.engineKind" .) "remote") }}
{{- printf "%s:%s" .Values.image.repository (default (printf "%s-%s" .Chart.AppVersion $flavour) .Values.image.tag | toString) }}
{{- end }}
{{- end }}

{{/*
Fixed paths inside the container.
*/}}
{{- define "moderation-worker.configDir" -}}/etc/moderation-worker{{- end }}
{{- define "moderation-worker.saslDir" -}}/etc/moderation-worker/secrets/kafka-sasl{{- end }}
{{- define "moderation-worker.engineKeyDir" -}}/etc/moderation-worker/secrets/engine-api-key{{- end }}
{{- define "moderation-worker.tlsDir" -}}/etc/moderation-worker/secrets/kafka-tls{{- end }}
{{- define "moderation-worker.cacheDir" -}}/var/cache/moderation-worker{{- end }}

{{/*
The engine kind, config.engine.kind: "local" (vLLM in the pod, on its GPUs) or "remote".
"local" when unset, as the worker defaults.
*/}}
{{- define "moderation-worker.engineKind" -}}
{{- dig "engine" "kind" "local" .Values.config }}
{{- end }}

{{/*
GPUs per pod: gpu.count, or config.engine.tensor_parallel_size (the worker's default, 1,
when unset); none when the engine is remote.
*/}}
{{- define "moderation-worker.gpuCount" -}}
{{- if eq (include "moderation-worker.engineKind" .) "remote" }}
{{- 0 }}
{{- else if kindIs "invalid" .Values.gpu.count }}
{{- dig "engine" "tensor_parallel_size" 1 .Values.config | int }}
{{- else }}
{{- .Values.gpu.count | int }}
{{- end }}
{{- end }}

{{/*
Scheduling by engine kind: local-engine pods add the gpu.* tolerations, node labels and
default resources; remote-engine pods neither request GPUs nor go to GPU nodes.
*/}}
{{- define "moderation-worker.tolerations" -}}
{{- $all := .Values.tolerations | default list }}
{{- if ne (include "moderation-worker.engineKind" .) "remote" }}
{{- $all = concat $all (.Values.gpu.tolerations | default list) | uniq }}
{{- end }}
{{- toJson $all }}
{{- end }}

{{- define "moderation-worker.nodeSelector" -}}
{{- $all := deepCopy (.Values.nodeSelector | default dict) }}
{{- if ne (include "moderation-worker.engineKind" .) "remote" }}
{{- $all = merge $all (.Values.gpu.nodeSelector | default dict) }}
{{- end }}
{{- toJson $all }}
{{- end }}

{{- define "moderation-worker.resources" -}}
{{- $gpus := include "moderation-worker.gpuCount" . | int }}
{{- $remote := eq (include "moderation-worker.engineKind" .) "remote" }}
{{- $default := ternary .Values.remoteEngine.resources .Values.gpu.resources $remote }}
{{- $resources := deepCopy (.Values.resources | default $default | default dict) }}
{{- $requests := $resources.requests | default dict }}
{{- $limits := $resources.limits | default dict }}
{{- if gt $gpus 0 }}
{{- $_ := set $requests .Values.gpu.resourceName $gpus }}
{{- $_ := set $limits .Values.gpu.resourceName $gpus }}
{{- end }}
{{- $_ := set $resources "requests" $requests }}
{{- $_ := set $resources "limits" $limits }}
{{- toJson $resources }}
{{- end }}

{{/*
terminationGracePeriodSeconds: the drain deadline rounded up, plus the margin.
*/}}
{{- define "moderation-worker.terminationGracePeriod" -}}
{{- $drain := required "config.drain_deadline_s is read by the chart (terminationGracePeriodSeconds): set it" .Values.config.drain_deadline_s }}
{{- add (ceil $drain | int) (.Values.terminationGracePeriodMarginSeconds | int) }}
{{- end }}

{{/* A setting the chart reads; refused with a message when nulled out. */}}
{{- define "moderation-worker.healthPort" -}}
{{- required "config.health.port is read by the chart (container port, probes, Service): set it" (dig "health" "port" nil .Values.config) }}
{{- end }}

{{/*
Policies: which ConfigMap holds them ("" when none is configured).
*/}}
{{- define "moderation-worker.policiesConfigMapName" -}}
{{- if .Values.policyPack.existingConfigMap }}
{{- .Values.policyPack.existingConfigMap }}
{{- else if or .Values.policyPack.inline .Values.policyPack.useExamplePack }}
{{- printf "%s-policies" (include "moderation-worker.fullname" .) }}
{{- end }}
{{- end }}

{{/*
The policy files the chart ships in its own ConfigMap, as JSON: file name -> text (JSON, not
YAML: a toYaml/fromYaml round trip drops the last file's trailing newline)
(empty when an existing ConfigMap is used). README.md is skipped, as the worker skips it.
*/}}
{{- define "moderation-worker.policyFiles" -}}
{{- $files := dict }}
{{- if not .Values.policyPack.existingConfigMap }}
{{- if .Values.policyPack.inline }}
{{- $files = .Values.policyPack.inline }}
{{- else if .Values.policyPack.useExamplePack }}
{{- range $path, $_ := .Files.Glob "files/policies/*.md" }}
{{- if ne (lower (base $path)) "readme.md" }}
{{- $_ := set $files (base $path) ($.Files.Get $path) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- toJson $files }}
{{- end }}

{{/*
The ConfigMap key of each policy file, as JSON: file name -> key. ConfigMap keys allow only
A-Z a-z 0-9 . _ -, while a policy file may be named anything one file can be (values.schema.json,
policyPack.inline): a name that is not a valid key gets one derived from it (other characters
as "_", plus a hash of the name, so two names never share a key), and the volume mounts that
key under the original name.
*/}}
{{- define "moderation-worker.policyKeys" -}}
{{- $keys := dict }}
{{- range $name, $_ := include "moderation-worker.policyFiles" . | fromJson }}
{{- if regexMatch `^[-._a-zA-Z0-9]{1,253}$` $name }}
{{- $_ := set $keys $name $name }}
{{- else }}
{{- $safe := regexReplaceAll `[^-._a-zA-Z0-9]` $name "_" | trunc 200 }}
{{- $_ := set $keys $name (printf "%s-%s" $safe (sha256sum $name | trunc 12)) }}
{{- end }}
{{- end }}
{{- toJson $keys }}
{{- end }}

{{/*
Kafka credentials.
*/}}
{{- define "moderation-worker.sasl.enabled" -}}
{{- if hasPrefix "SASL_" (dig "kafka" "security_protocol" "PLAINTEXT" .Values.config) }}true{{- end }}
{{- end }}

{{- define "moderation-worker.tls.enabled" -}}
{{- if has (dig "kafka" "security_protocol" "PLAINTEXT" .Values.config) (list "SSL" "SASL_SSL") }}true{{- end }}
{{- end }}

{{/* The chart mounts a SASL password Secret (existing or created). */}}
{{- define "moderation-worker.sasl.secretName" -}}
{{- $c := .Values.credentials.kafkaSasl }}
{{- if $c.existingSecret }}
{{- $c.existingSecret }}
{{- else if $c.password }}
{{- printf "%s-kafka-sasl" (include "moderation-worker.fullname" .) }}
{{- end }}
{{- end }}

{{- define "moderation-worker.sasl.secretKey" -}}
{{- if .Values.credentials.kafkaSasl.existingSecret }}
{{- .Values.credentials.kafkaSasl.passwordKey }}
{{- else }}password{{- end }}
{{- end }}

{{/* The chart mounts a TLS Secret (existing or created). */}}
{{- define "moderation-worker.tls.secretName" -}}
{{- $c := .Values.credentials.kafkaTls }}
{{- if $c.existingSecret }}
{{- $c.existingSecret }}
{{- else if or $c.ca $c.cert $c.key }}
{{- printf "%s-kafka-tls" (include "moderation-worker.fullname" .) }}
{{- end }}
{{- end }}

{{/*
The keys of the TLS Secret that are mounted, as a dict role -> key (role: ca, cert, key).
*/}}
{{- define "moderation-worker.tls.keys" -}}
{{- $c := .Values.credentials.kafkaTls }}
{{- $keys := dict }}
{{- if $c.existingSecret }}
{{- if $c.caKey }}{{- $_ := set $keys "ca" $c.caKey }}{{- end }}
{{- if $c.certKey }}{{- $_ := set $keys "cert" $c.certKey }}{{- end }}
{{- if $c.keyKey }}{{- $_ := set $keys "key" $c.keyKey }}{{- end }}
{{- else }}
{{- if $c.ca }}{{- $_ := set $keys "ca" "ca.crt" }}{{- end }}
{{- if $c.cert }}{{- $_ := set $keys "cert" "tls.crt" }}{{- end }}
{{- if $c.key }}{{- $_ := set $keys "key" "tls.key" }}{{- end }}
{{- end }}
{{- toYaml $keys }}
{{- end }}

{{/* File names the TLS material is mounted as. */}}
{{- define "moderation-worker.tls.fileNames" -}}
ca: ca.crt
cert: tls.crt
key: tls.key
{{- end }}

{{/* The chart mounts a Secret with the engine servers' API key (existing or created). */}}
{{- define "moderation-worker.engineKey.secretName" -}}
{{- $c := .Values.credentials.engineApiKey }}
{{- if $c.existingSecret }}
{{- $c.existingSecret }}
{{- else if $c.value }}
{{- printf "%s-engine-api-key" (include "moderation-worker.fullname" .) }}
{{- end }}
{{- end }}

{{- define "moderation-worker.engineKey.secretKey" -}}
{{- if .Values.credentials.engineApiKey.existingSecret }}
{{- .Values.credentials.engineApiKey.key }}
{{- else }}api-key{{- end }}
{{- end }}

{{- define "moderation-worker.hfToken.secretName" -}}
{{- $c := .Values.credentials.hfToken }}
{{- if $c.existingSecret }}
{{- $c.existingSecret }}
{{- else if $c.value }}
{{- printf "%s-hf-token" (include "moderation-worker.fullname" .) }}
{{- end }}
{{- end }}

{{- define "moderation-worker.hfToken.secretKey" -}}
{{- if .Values.credentials.hfToken.existingSecret }}
{{- .Values.credentials.hfToken.key }}
{{- else }}token{{- end }}
{{- end }}

{{/*
Fields of config the chart sets itself, as "section.field: what sets it".
*/}}
{{- define "moderation-worker.chartManagedSettings" -}}
policies.dir: policyPack.mountPath
health.enabled: the chart (the probes need the health server)
health.host: the chart (the probes need the health server on all interfaces)
{{- end }}

{{/*
The worker's config.yaml: the config values as they are, plus the paths of what the chart
mounts. The coop section is left to the adapter's own config, so Coop changes do not roll
the worker's pods.
*/}}
{{- define "moderation-worker.config" -}}
{{- $config := omit (deepCopy .Values.config) "coop" }}
{{- $kafka := $config.kafka | default dict }}
{{- if include "moderation-worker.sasl.secretName" . }}
{{- $_ := set $kafka "sasl_password_file" (printf "%s/password" (include "moderation-worker.saslDir" .)) }}
{{- end }}
{{- if include "moderation-worker.tls.secretName" . }}
{{- $keys := include "moderation-worker.tls.keys" . | fromYaml }}
{{- $dir := include "moderation-worker.tlsDir" . }}
{{- if hasKey $keys "ca" }}{{- $_ := set $kafka "ssl_cafile" (printf "%s/ca.crt" $dir) }}{{- end }}
{{- if hasKey $keys "cert" }}{{- $_ := set $kafka "ssl_certfile" (printf "%s/tls.crt" $dir) }}{{- end }}
{{- if hasKey $keys "key" }}{{- $_ := set $kafka "ssl_keyfile" (printf "%s/tls.key" $dir) }}{{- end }}
{{- end }}
{{- $_ := set $config "kafka" $kafka }}
{{- if include "moderation-worker.engineKey.secretName" . }}
{{- $engine := $config.engine | default dict }}
{{- $_ := set $engine "api_key_file" (printf "%s/api-key" (include "moderation-worker.engineKeyDir" .)) }}
{{- $_ := set $config "engine" $engine }}
{{- end }}
{{- $_ := set $config "policies" (merge (dict "dir" .Values.policyPack.mountPath) ($config.policies | default dict)) }}
{{- $_ := set $config "health" (merge (dict "enabled" true "host" "0.0.0.0") ($config.health | default dict)) }}
{{- toYaml $config }}
{{- end }}

{{/*
Values of chart 0.1 that moved, as "old: new". The schema lets them through so that the
chart can refuse them here, naming where each went.
*/}}
{{- define "moderation-worker.movedValues" -}}
kafka: config.kafka
topics: config.topics
batch: config.batch
engine: config.engine
routing: config.routing
policies: config.policies
cache: config.cache
shadow: config.shadow
health: config.health
log: config.log
drain_deadline_s: config.drain_deadline_s
coopAdapter.url: config.coop.url
coopAdapter.itemTypeId: config.coop.item_type_id
coopAdapter.reporterTypeId: config.coop.reporter_type_id
coopAdapter.reporterId: config.coop.reporter_id
coopAdapter.policies: config.coop.policies
coopAdapter.decisions: config.coop.decisions
coopAdapter.port: config.coop.port
coopAdapter.path: config.coop.path
coopAdapter.groupId: config.coop.group_id
{{- end }}

{{/*
Checks of the chart's own values and of how they meet config: rendered (empty) by the
Deployment so that every install and upgrade runs them; each failure names the values to
change. The worker checks its settings itself, and values.schema.json refuses what a schema
can (types, ranges, enums, unknown keys).
*/}}
{{- define "moderation-worker.validate" -}}
{{- $v := .Values }}
{{- $moved := list }}
{{- range $old, $new := include "moderation-worker.movedValues" . | fromYaml }}
{{- $path := splitList "." $old }}
{{- $parent := ternary $v (get $v (first $path) | default dict) (eq (len $path) 1) }}
{{- if hasKey $parent (last $path) }}
{{- $moved = append $moved (printf "%s -> %s" $old $new) }}
{{- end }}
{{- end }}
{{- if $moved }}
{{- fail (printf "these values moved in chart 0.2 (docs/deploy.md, \"Upgrading to chart 0.2\"): %s" (join ", " $moved)) }}
{{- end }}
{{- range $field, $owner := include "moderation-worker.chartManagedSettings" . | fromYaml }}
{{- $path := splitList "." $field }}
{{- if hasKey (get $v.config (first $path) | default dict) (last $path) }}
{{- fail (printf "config.%s is set by %s: remove it from config" $field $owner) }}
{{- end }}
{{- end }}
{{- if and $v.autoscaling.keda.enabled $v.autoscaling.hpa.enabled }}
{{- fail "autoscaling.keda.enabled and autoscaling.hpa.enabled are both true: enable one autoscaler, not both (KEDA creates its own HPA)" }}
{{- end }}
{{- /* Engine */}}
{{- $engine := $v.config.engine | default dict }}
{{- if eq (include "moderation-worker.engineKind" .) "remote" }}
{{- if and (include "moderation-worker.engineKey.secretName" .) $engine.api_key_file }}
{{- fail "config.engine.api_key_file is set and credentials.engineApiKey provides the key too: use one (the chart sets api_key_file itself for credentials.engineApiKey)" }}
{{- end }}
{{- else if lt (include "moderation-worker.gpuCount" . | int) (dig "tensor_parallel_size" 1 $engine | int) }}
{{- fail (printf "gpu.count (%v) is smaller than config.engine.tensor_parallel_size (%v): each pod needs one GPU per tensor-parallel rank" $v.gpu.count $engine.tensor_parallel_size) }}
{{- end }}
{{- /* Kafka credentials: the chart's Secrets and the settings that use them */}}
{{- $kafka := $v.config.kafka | default dict }}
{{- $protocol := dig "security_protocol" "PLAINTEXT" $kafka }}
{{- $sasl := $v.credentials.kafkaSasl }}
{{- if include "moderation-worker.sasl.secretName" . }}
{{- if not (include "moderation-worker.sasl.enabled" .) }}
{{- fail (printf "credentials.kafkaSasl is set but config.kafka.security_protocol is %s: use SASL_SSL or SASL_PLAINTEXT, or remove the password" $protocol) }}
{{- end }}
{{- if $kafka.sasl_password_file }}
{{- fail "config.kafka.sasl_password_file is set and credentials.kafkaSasl provides the password too: use one (the chart sets sasl_password_file itself for credentials.kafkaSasl)" }}
{{- end }}
{{- end }}
{{- if include "moderation-worker.tls.secretName" . }}
{{- if not (include "moderation-worker.tls.enabled" .) }}
{{- fail (printf "credentials.kafkaTls is set but config.kafka.security_protocol is %s: use SSL or SASL_SSL, or remove the TLS credentials" $protocol) }}
{{- end }}
{{- $keys := include "moderation-worker.tls.keys" . | fromYaml }}
{{- if ne (hasKey $keys "cert") (hasKey $keys "key") }}
{{- fail "credentials.kafkaTls: a client certificate and its key go together: set both certKey and keyKey (or cert and key), or neither" }}
{{- end }}
{{- if or $kafka.ssl_cafile $kafka.ssl_certfile $kafka.ssl_keyfile }}
{{- fail "config.kafka.ssl_cafile/ssl_certfile/ssl_keyfile are set and credentials.kafkaTls provides TLS files too: use one (the chart sets the paths itself for credentials.kafkaTls)" }}
{{- end }}
{{- end }}
{{- /* KEDA needs the credentials from Secrets it can read */}}
{{- if and $v.autoscaling.keda.enabled (include "moderation-worker.sasl.enabled" .) (not (include "moderation-worker.sasl.secretName" .)) }}
{{- fail "autoscaling.keda with SASL needs the password in credentials.kafkaSasl (KEDA reads it from that Secret), not only in config.kafka.sasl_password_file" }}
{{- end }}
{{- /* Policies */}}
{{- $pp := $v.policyPack }}
{{- if and $pp.existingConfigMap $pp.inline }}
{{- fail "policyPack.existingConfigMap and policyPack.inline are both set: choose one source of policies" }}
{{- end }}
{{- if not (include "moderation-worker.policiesConfigMapName" .) }}
{{- fail "no policies configured: set policyPack.existingConfigMap, policyPack.inline, or policyPack.useExamplePack=true" }}
{{- end }}
{{- if and (not $pp.existingConfigMap) (not $pp.inline) $pp.useExamplePack }}
{{- if not (include "moderation-worker.policyFiles" . | fromJson) }}
{{- fail "policyPack.useExamplePack is true but the chart holds no files/policies/*.md: set policyPack.existingConfigMap or policyPack.inline" }}
{{- end }}
{{- end }}
{{- end }}
