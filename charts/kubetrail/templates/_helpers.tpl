{{/* The image reference. */}}
{{- define "kubetrail.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The policies ConfigMap: the user's, or the chart's. */}}
{{- define "kubetrail.policiesConfigMap" -}}
{{ .Values.policies.existingConfigMap | default "kubetrail-policies" }}
{{- end -}}

{{/* Namespaces outside the fail-closed entries, as a YAML list. */}}
{{- define "kubetrail.excludedNamespaces" -}}
{{- $ns := list "kube-system" "kube-node-lease" .Release.Namespace -}}
{{- range .Values.webhook.namespaceExclusions }}{{ $ns = append $ns . }}{{ end -}}
{{- toYaml (uniq $ns) -}}
{{- end -}}
