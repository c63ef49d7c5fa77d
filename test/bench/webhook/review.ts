/** The review the webhook benchmarks send: a realistic ~15 KiB Pod CREATE by an agent. */
import { review } from '../../webhook/support.ts';

/** A realistic Pod of about 15 KiB as the API server sends it (defaults filled, managedFields, many env vars). */
export function realisticPod(name: string, labels: Record<string, string> = {}): Record<string, unknown> {
  const env = (prefix: string, n: number): { name: string; value: string }[] =>
    Array.from({ length: n }, (_, i) => ({ name: `${prefix}_SETTING_${i}`, value: `value-${i}-${'x'.repeat(24)}` }));
  const container = (n: string, image: string): Record<string, unknown> => ({
    name: n,
    image,
    imagePullPolicy: 'IfNotPresent',
    command: ['/bin/server'],
    args: ['--port=8080', '--log-level=info', '--metrics-addr=:9090'],
    ports: [
      { name: 'http', containerPort: 8080, protocol: 'TCP' },
      { name: 'metrics', containerPort: 9090, protocol: 'TCP' },
    ],
    env: [...env(n.toUpperCase(), 64), { name: 'DB_PASSWORD', value: 'not-in-events' }, { name: 'API_TOKEN', value: 'not-in-events-either' }],
    resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { cpu: '500m', memory: '512Mi' } },
    volumeMounts: [
      { name: 'config', mountPath: '/etc/app', readOnly: true },
      { name: 'cache', mountPath: '/var/cache/app' },
    ],
    livenessProbe: { httpGet: { path: '/healthz', port: 8080, scheme: 'HTTP' }, initialDelaySeconds: 5, periodSeconds: 10, timeoutSeconds: 1, successThreshold: 1, failureThreshold: 3 },
    readinessProbe: { httpGet: { path: '/readyz', port: 8080, scheme: 'HTTP' }, periodSeconds: 5, timeoutSeconds: 1, successThreshold: 1, failureThreshold: 3 },
    securityContext: { runAsNonRoot: true, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } },
    terminationMessagePath: '/dev/termination-log',
    terminationMessagePolicy: 'File',
  });
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace: 'agents',
      labels: { app: 'shop', tier: 'web', 'app.kubernetes.io/name': 'shop', 'app.kubernetes.io/version': '1.4.2', ...labels },
      annotations: { 'prometheus.io/scrape': 'true', 'prometheus.io/port': '9090', 'example.com/owner': 'team-shop' },
    },
    spec: {
      containers: [container('app', 'registry.example.com/shop/web:1.4.2'), container('sidecar', 'registry.example.com/shop/proxy:2.0.1')],
      initContainers: [{ name: 'migrate', image: 'registry.example.com/shop/migrate:1.4.2', command: ['/bin/migrate', 'up'], env: env('MIGRATE', 20) }],
      volumes: [
        { name: 'config', configMap: { name: 'shop-config', defaultMode: 420 } },
        { name: 'cache', emptyDir: { sizeLimit: '1Gi' } },
      ],
      restartPolicy: 'Always',
      terminationGracePeriodSeconds: 30,
      dnsPolicy: 'ClusterFirst',
      serviceAccountName: 'default',
      securityContext: { fsGroup: 2000, seccompProfile: { type: 'RuntimeDefault' } },
      schedulerName: 'default-scheduler',
      tolerations: [
        { key: 'node.kubernetes.io/not-ready', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 },
        { key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 },
      ],
      priority: 0,
      enableServiceLinks: true,
      preemptionPolicy: 'PreemptLowerPriority',
    },
    status: { phase: 'Pending', qosClass: 'Burstable' },
  };
}

/** The bench's review: the tests' AdmissionReview (test/webhook/support.ts) with a fixed uid and the realistic Pod. */
export function reviewBody(): string {
  return JSON.stringify(
    review({
      uid: '705ab4f5-6393-11e8-b7cc-42010a800002',
      name: 'shop-web-7d4b9c',
      userInfo: { username: 'agent-ci', uid: 'agent-ci-uid', groups: ['agents', 'system:authenticated'], extra: { 'kubetrail.io/session': ['01930000-0000-7000-8000-000000000000'] } },
      object: realisticPod('shop-web-7d4b9c'),
      options: { kind: 'CreateOptions', apiVersion: 'meta.k8s.io/v1', fieldManager: 'kubectl-client-side-apply' },
    }),
  );
}
