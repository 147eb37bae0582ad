{{/* The release's full name, at most 63 characters (a DNS label). */}}
{{- define "llm-cost-exporter.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "llm-cost-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "llm-cost-exporter.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "llm-cost-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: exporter
{{- end -}}

{{- define "llm-cost-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "llm-cost-exporter.fullname" .) -}}
{{- else -}}
{{- required "serviceAccount.name: name the existing ServiceAccount (serviceAccount.create is false)" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "llm-cost-exporter.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* Where the pieces live inside the container. */}}
{{- define "llm-cost-exporter.configDir" -}}/etc/llm-cost-exporter{{- end -}}
{{- define "llm-cost-exporter.webDir" -}}/etc/llm-cost-exporter/web{{- end -}}
{{- define "llm-cost-exporter.otlpDir" -}}/etc/llm-cost-exporter/otlp{{- end -}}
{{- define "llm-cost-exporter.stateDir" -}}/var/lib/llm-cost-exporter{{- end -}}
{{- define "llm-cost-exporter.podResourcesDir" -}}/var/lib/kubelet/pod-resources{{- end -}}

{{/* The uid the exporter runs as: root only to reach the kubelet's socket. */}}
{{- define "llm-cost-exporter.uid" -}}
{{- if .Values.podResources.enabled -}}0{{- else -}}65532{{- end -}}
{{- end -}}

{{/* "https" when the web configuration serves TLS. */}}
{{- define "llm-cost-exporter.scheme" -}}
{{- if and .Values.webConfig.enabled (or .Values.webConfig.tls (and (not .Values.webConfig.existingSecret) .Values.webConfig.config.tls_server_config)) -}}
https
{{- else -}}
http
{{- end -}}
{{- end -}}

{{/* True when the server refuses a client without a certificate: the kubelet's
probes present none, so they check the port instead. */}}
{{- define "llm-cost-exporter.clientCertRequired" -}}
{{- $tls := dict -}}
{{- if and .Values.webConfig.enabled (not .Values.webConfig.existingSecret) -}}
{{- $tls = .Values.webConfig.config.tls_server_config | default dict -}}
{{- end -}}
{{- if has ($tls.client_auth_type | default "") (list "RequireAnyClientCert" "RequireAndVerifyClientCert") -}}
true
{{- end -}}
{{- end -}}

{{/* True unless config.web.serve_metrics is false: a node that only pushes over OTLP,
whose /metrics answers 404 (/healthz stays). */}}
{{- define "llm-cost-exporter.servesMetrics" -}}
{{- $web := .Values.config.web | default dict -}}
{{- if not (and (kindIs "bool" $web.serve_metrics) (not $web.serve_metrics)) -}}
true
{{- end -}}
{{- end -}}

{{/* Refuses to render a monitor (`.value` names what turned it on) of a node that
serves no /metrics: every scrape of it would see a 404. */}}
{{- define "llm-cost-exporter.requireMetrics" -}}
{{- if not (include "llm-cost-exporter.servesMetrics" .root) -}}
{{- fail (printf "%s: config.web.serve_metrics is false (the node only pushes over OTLP; /metrics answers 404), so every scrape would fail; turn it off, or serve /metrics" .value) -}}
{{- end -}}
{{- end -}}

{{/* config.otlp's files inside the otlp Secret's directory need that Secret mounted. */}}
{{- define "llm-cost-exporter.otlpFilesMounted" -}}
{{- $otlp := .Values.config.otlp | default dict -}}
{{- $files := dict -}}
{{- range $header, $path := ($otlp.header_files | default dict) -}}
{{- $_ := set $files (printf "header_files.%s" $header) $path -}}
{{- end -}}
{{- range $key, $path := ($otlp.tls | default dict) -}}
{{- if has $key (list "ca_file" "cert_file" "key_file") -}}
{{- $_ := set $files (printf "tls.%s" $key) $path -}}
{{- end -}}
{{- end -}}
{{- $dir := printf "%s/" (include "llm-cost-exporter.otlpDir" .) -}}
{{- range $name, $path := $files -}}
{{- if and (kindIs "string" $path) (hasPrefix $dir $path) (not $.Values.otlp.existingSecret) -}}
{{- fail (printf "otlp.existingSecret: config.otlp.%s reads %s, but no Secret is mounted at %s; name the Secret holding it" $name $path $dir) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The configuration file: the user's `config` with the keys the chart owns. */}}
{{- define "llm-cost-exporter.config" -}}
{{- $config := deepCopy .Values.config -}}
{{- if not $config.cost -}}
{{- fail "config.cost: set what a node costs, e.g. --set config.cost.gpu_prices_per_hour.H100=2.49 (the chart assumes no price: a missing one would read as $0)" -}}
{{- end -}}
{{- if not $config.api_prices -}}
{{- fail "config.api_prices: set the API prices to compare with, e.g. --set config.api_prices.default.catalog=anthropic/claude-3-5-haiku (the chart assumes no price)" -}}
{{- end -}}
{{- include "llm-cost-exporter.otlpFilesMounted" . -}}
{{- $_ := set $config "state_file" (printf "%s/state.json" (include "llm-cost-exporter.stateDir" .)) -}}
{{- $web := $config.web | default dict -}}
{{- if not $web.listen_address -}}
{{- $_ := set $web "listen_address" (printf "0.0.0.0:%v" .Values.containerPort) -}}
{{- end -}}
{{- $_ := set $config "web" $web -}}
{{- $kubernetes := $config.kubernetes | default dict -}}
{{- $podResources := $kubernetes.pod_resources | default dict -}}
{{- $_ := set $podResources "enabled" .Values.podResources.enabled -}}
{{- if .Values.podResources.enabled -}}
{{- $_ := set $podResources "socket" (printf "%s/kubelet.sock" (include "llm-cost-exporter.podResourcesDir" .)) -}}
{{- end -}}
{{- $discovery := $kubernetes.discovery | default dict -}}
{{- $_ := set $discovery "enabled" .Values.discovery.enabled -}}
{{- if .Values.discovery.enabled -}}
{{- with .Values.discovery.labelSelector -}}
{{- $_ := set $discovery "label_selector" . -}}
{{- end -}}
{{- $_ := set $discovery "port" .Values.discovery.port -}}
{{- $_ := set $discovery "path" .Values.discovery.path -}}
{{- $_ := set $discovery "type" .Values.discovery.type -}}
{{- end -}}
{{- $_ := set $kubernetes "pod_resources" $podResources -}}
{{- $_ := set $kubernetes "discovery" $discovery -}}
{{- $_ := set $config "kubernetes" $kubernetes -}}
{{- toYaml $config -}}
{{- end -}}

{{/* What the ServiceMonitor's and the PodMonitor's endpoint share. honorLabels keeps
the exporter's namespace/pod/container labels (the GPU's pod, not the exporter's);
`job` becomes the rules' job so up{job=...} in the alerts matches. */}}
{{- define "llm-cost-exporter.scrapeEndpoint" -}}
{{- $root := .root -}}
path: /metrics
scheme: {{ include "llm-cost-exporter.scheme" $root }}
interval: {{ .monitor.interval }}
scrapeTimeout: {{ .monitor.scrapeTimeout }}
honorLabels: true
{{- with $root.Values.scrape.tlsConfig }}
tlsConfig:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.scrape.basicAuth }}
basicAuth:
  {{- toYaml . | nindent 2 }}
{{- end }}
relabelings:
  - action: replace
    targetLabel: job
    replacement: {{ $root.Values.prometheusRule.params.job | quote }}
  - action: replace
    sourceLabels: [__meta_kubernetes_pod_node_name]
    targetLabel: node
  {{- with .monitor.relabelings }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with .monitor.metricRelabelings }}
metricRelabelings:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
