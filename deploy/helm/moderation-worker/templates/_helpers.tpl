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
{{- $flavour := ternary "cpu" "gpu" (eq .Values.engine.kind "remote") }}
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
GPUs per pod: gpu.count, or engine.tensor_parallel_size; none when the engine is remote.
*/}}
{{- define "moderation-worker.gpuCount" -}}
{{- if eq .Values.engine.kind "remote" }}
{{- 0 }}
{{- else if kindIs "invalid" .Values.gpu.count }}
{{- .Values.engine.tensor_parallel_size | int }}
{{- else }}
{{- .Values.gpu.count | int }}
{{- end }}
{{- end }}

{{/*
terminationGracePeriodSeconds: the drain deadline rounded up, plus the margin.
*/}}
{{- define "moderation-worker.terminationGracePeriod" -}}
{{- add (ceil .Values.drain_deadline_s | int) (.Values.terminationGracePeriodMarginSeconds | int) }}
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
Kafka credentials.
*/}}
{{- define "moderation-worker.sasl.enabled" -}}
{{- if hasPrefix "SASL_" .Values.kafka.security_protocol }}true{{- end }}
{{- end }}

{{- define "moderation-worker.tls.enabled" -}}
{{- if has .Values.kafka.security_protocol (list "SSL" "SASL_SSL") }}true{{- end }}
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
The worker's config.yaml: the worker sections of the values, with the paths the chart
manages filled in. Only keys of worker/config.py's Settings are emitted.
*/}}
{{- define "moderation-worker.config" -}}
{{- $kafka := deepCopy .Values.kafka }}
{{- range $key := list "connect_retry_s" "connect_backoff_max_s" }}
{{- $_ := set $kafka $key (float64 (get $kafka $key)) }}
{{- end }}
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
{{- /* Fractional settings may arrive as strings from --set (e.g. "0.3"): emit numbers. */}}
{{- $batch := deepCopy .Values.batch }}
{{- $_ := set $batch "linger_ms" (float64 $batch.linger_ms) }}
{{- $engine := deepCopy .Values.engine }}
{{- $_ := set $engine "gpu_memory_utilization" (float64 $engine.gpu_memory_utilization) }}
{{- range $key := list "request_timeout_s" "connect_timeout_s" "connect_retry_s" "backoff_max_s" }}
{{- $_ := set $engine $key (float64 (get $engine $key)) }}
{{- end }}
{{- if include "moderation-worker.engineKey.secretName" . }}
{{- $_ := set $engine "api_key_file" (printf "%s/api-key" (include "moderation-worker.engineKeyDir" .)) }}
{{- end }}
{{- $routing := deepCopy .Values.routing }}
{{- range $key := list "threshold" "review_low" "review_high" "audit_label_1" "audit_label_0" }}
{{- $_ := set $routing $key (float64 (get $routing $key)) }}
{{- end }}
{{- $bands := dict }}
{{- range $id, $band := (default dict $routing.policies) }}
{{- $out := dict }}
{{- range $key, $value := (default dict $band) }}
{{- if not (kindIs "invalid" $value) }}
{{- $_ := set $out $key (float64 $value) }}
{{- end }}
{{- end }}
{{- $_ := set $bands $id $out }}
{{- end }}
{{- $_ := set $routing "policies" $bands }}
{{- $policies := dict "dir" .Values.policyPack.mountPath "default" .Values.policies.default "watch" .Values.policies.watch }}
{{- $cache := deepCopy .Values.cache }}
{{- $_ := set $cache "ttl_s" (float64 $cache.ttl_s) }}
{{- $shadow := deepCopy .Values.shadow }}
{{- $_ := set $shadow "sample" (float64 $shadow.sample) }}
{{- $_ := set $shadow "pairs" (default dict $shadow.pairs) }}
{{- $health := dict "enabled" true "host" "0.0.0.0" "port" .Values.health.port "stall_after_s" (float64 .Values.health.stall_after_s) }}
{{- $config := dict
  "kafka" $kafka
  "topics" .Values.topics
  "batch" $batch
  "engine" $engine
  "routing" $routing
  "policies" $policies
  "cache" $cache
  "shadow" $shadow
  "health" $health
  "log" .Values.log
  "drain_deadline_s" (float64 .Values.drain_deadline_s)
}}
{{- toYaml $config }}
{{- end }}

{{/*
Checks the JSON schema cannot express. Rendered (empty) by the Deployment so that every
install and upgrade runs them; each failure names the values to change.
*/}}
{{- define "moderation-worker.validate" -}}
{{- $v := .Values }}
{{- if and $v.autoscaling.keda.enabled $v.autoscaling.hpa.enabled }}
{{- fail "autoscaling.keda.enabled and autoscaling.hpa.enabled are both true: enable one autoscaler, not both (KEDA creates its own HPA)" }}
{{- end }}
{{- if gt (float64 $v.routing.review_low) (float64 $v.routing.review_high) }}
{{- fail (printf "routing.review_low (%v) must not exceed routing.review_high (%v)" $v.routing.review_low $v.routing.review_high) }}
{{- end }}
{{- range $id, $band := $v.routing.policies }}
{{- if and $band (not (kindIs "invalid" $band.review_low)) (not (kindIs "invalid" $band.review_high)) }}
{{- if gt (float64 $band.review_low) (float64 $band.review_high) }}
{{- fail (printf "routing.policies.%s.review_low (%v) must not exceed routing.policies.%s.review_high (%v)" $id $band.review_low $id $band.review_high) }}
{{- end }}
{{- end }}
{{- end }}
{{- /* Engine */}}
{{- if eq $v.engine.kind "remote" }}
{{- if not $v.engine.url }}
{{- fail "engine.kind is remote: set engine.url to the vLLM servers' base URL(s)" }}
{{- end }}
{{- if and (include "moderation-worker.engineKey.secretName" .) $v.engine.api_key_file }}
{{- fail "engine.api_key_file is set and credentials.engineApiKey provides the key too: use one (the chart sets api_key_file itself for credentials.engineApiKey)" }}
{{- end }}
{{- else if lt (include "moderation-worker.gpuCount" . | int) ($v.engine.tensor_parallel_size | int) }}
{{- fail (printf "gpu.count (%v) is smaller than engine.tensor_parallel_size (%v): each pod needs one GPU per tensor-parallel rank" $v.gpu.count $v.engine.tensor_parallel_size) }}
{{- end }}
{{- /* Kafka SASL */}}
{{- $sasl := $v.credentials.kafkaSasl }}
{{- if include "moderation-worker.sasl.enabled" . }}
{{- if not $v.kafka.sasl_mechanism }}
{{- fail (printf "kafka.security_protocol is %s: set kafka.sasl_mechanism (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)" $v.kafka.security_protocol) }}
{{- end }}
{{- if not $v.kafka.sasl_username }}
{{- fail (printf "kafka.security_protocol is %s: set kafka.sasl_username" $v.kafka.security_protocol) }}
{{- end }}
{{- if and (not (include "moderation-worker.sasl.secretName" .)) (not $v.kafka.sasl_password_file) }}
{{- fail (printf "kafka.security_protocol is %s: set credentials.kafkaSasl.existingSecret (a Secret holding the password) or, for development only, credentials.kafkaSasl.password" $v.kafka.security_protocol) }}
{{- end }}
{{- if and (include "moderation-worker.sasl.secretName" .) $v.kafka.sasl_password_file }}
{{- fail "kafka.sasl_password_file is set and credentials.kafkaSasl provides the password too: use one (the chart sets sasl_password_file itself for credentials.kafkaSasl)" }}
{{- end }}
{{- else if or $sasl.existingSecret $sasl.password $v.kafka.sasl_password_file }}
{{- fail (printf "a SASL password is configured (credentials.kafkaSasl or kafka.sasl_password_file) but kafka.security_protocol is %s: use SASL_SSL or SASL_PLAINTEXT, or remove the password" $v.kafka.security_protocol) }}
{{- end }}
{{- /* Kafka TLS */}}
{{- $tls := $v.credentials.kafkaTls }}
{{- if include "moderation-worker.tls.secretName" . }}
{{- if not (include "moderation-worker.tls.enabled" .) }}
{{- fail (printf "credentials.kafkaTls is set but kafka.security_protocol is %s: use SSL or SASL_SSL, or remove the TLS credentials" $v.kafka.security_protocol) }}
{{- end }}
{{- $keys := include "moderation-worker.tls.keys" . | fromYaml }}
{{- if ne (hasKey $keys "cert") (hasKey $keys "key") }}
{{- fail "credentials.kafkaTls: a client certificate and its key go together: set both certKey and keyKey (or cert and key), or neither" }}
{{- end }}
{{- if or $v.kafka.ssl_cafile $v.kafka.ssl_certfile $v.kafka.ssl_keyfile }}
{{- fail "kafka.ssl_cafile/ssl_certfile/ssl_keyfile are set and credentials.kafkaTls provides TLS files too: use one (the chart sets the paths itself for credentials.kafkaTls)" }}
{{- end }}
{{- end }}
{{- if ne (empty $v.kafka.ssl_certfile) (empty $v.kafka.ssl_keyfile) }}
{{- fail "kafka.ssl_certfile and kafka.ssl_keyfile must be set together" }}
{{- end }}
{{- /* KEDA needs the credentials from Secrets it can read */}}
{{- if and $v.autoscaling.keda.enabled (include "moderation-worker.sasl.enabled" .) (not (include "moderation-worker.sasl.secretName" .)) }}
{{- fail "autoscaling.keda with SASL needs the password in credentials.kafkaSasl (KEDA reads it from that Secret), not only in kafka.sasl_password_file" }}
{{- end }}
{{- /* Policies */}}
{{- $pp := $v.policyPack }}
{{- if and $pp.existingConfigMap $pp.inline }}
{{- fail "policyPack.existingConfigMap and policyPack.inline are both set: choose one source of policies" }}
{{- end }}
{{- if not (include "moderation-worker.policiesConfigMapName" .) }}
{{- fail "no policies configured: set policyPack.existingConfigMap, policyPack.inline, or policyPack.useExamplePack=true" }}
{{- end }}
{{- range $name, $text := $pp.inline }}
{{- if not (or (hasSuffix ".md" $name) (hasSuffix ".txt" $name)) }}
{{- fail (printf "policyPack.inline: %q must end in .md or .txt (the worker loads only those files)" $name) }}
{{- end }}
{{- end }}
{{- if and (not $pp.existingConfigMap) (not $pp.inline) $pp.useExamplePack }}
{{- if not (include "moderation-worker.policyFiles" . | fromJson) }}
{{- fail "policyPack.useExamplePack is true but the chart holds no files/policies/*.md: set policyPack.existingConfigMap or policyPack.inline" }}
{{- end }}
{{- end }}
{{- /* When the chart ships the policies it knows their ids: catch typos in policy ids. */}}
{{- $files := include "moderation-worker.policyFiles" . | fromJson }}
{{- if $files }}
{{- $ids := list }}
{{- range $name, $text := $files }}
{{- if hasPrefix "---" $text }}
{{- $ids = append $ids (regexFind `(?m)^id:[ \t]*[^\s]+` $text | trimPrefix "id:" | trim | trimAll `"'`) }}
{{- else }}
{{- /* No front matter: the worker takes the id from the file name (worker/policies.py). */}}
{{- $stem := regexReplaceAll `\.[^.]*$` $name "" | lower }}
{{- $ids = append $ids (regexReplaceAll `[^a-z0-9._-]+` $stem "-" | trimAll "-._") }}
{{- end }}
{{- end }}
{{- range $id := $v.policies.default }}
{{- if not (has $id $ids) }}
{{- fail (printf "policies.default names %q, but the policy pack has no such id (ids: %s)" $id (join ", " (sortAlpha $ids))) }}
{{- end }}
{{- end }}
{{- range $id, $_ := $v.routing.policies }}
{{- if not (has $id $ids) }}
{{- fail (printf "routing.policies.%s: the policy pack has no policy with this id (ids: %s)" $id (join ", " (sortAlpha $ids))) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
