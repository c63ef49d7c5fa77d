/** What the pods scenario does through the real API server: create and delete pods, and read its webhook latency metrics. */
import { readFileSync } from 'node:fs';
import https from 'node:https';
import { realisticPod } from './review.ts';

async function apiRequest(url: string, token: string, ca: string, method: string, body?: string, agent?: https.Agent): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method, ca, agent: agent ?? false, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } }, (res) => {
      let b = '';
      res.on('data', (c: Buffer) => (b += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: b }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Creates `n` pods through the API server with `concurrency` in flight; returns pods/s. */
export async function createPods(env: { APISERVER_URL: string; AGENT_TOKEN: string; APISERVER_CA: string }, prefix: string, label: string, n: number, concurrency: number): Promise<number> {
  const ca = readFileSync(env.APISERVER_CA, 'utf8');
  const agent = new https.Agent({ keepAlive: true, maxSockets: concurrency });
  let next = 0;
  let failures = 0;
  let firstFailure = '';
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) {
        const i = next++;
        const pod = realisticPod(`${prefix}-${i}`, { 'kubetrail-test': label });
        delete (pod as { status?: unknown }).status;
        // Bound to a node that does not exist: admission is what is measured, not the scheduler and the
        // harness node's kubelet starting each pod (which made every case's CPU per pod several times larger).
        (pod['spec'] as Record<string, unknown>)['nodeName'] = 'kt-bench-no-such-node';
        const r = await apiRequest(`${env.APISERVER_URL}/api/v1/namespaces/agents/pods`, env.AGENT_TOKEN, ca, 'POST', JSON.stringify(pod), agent);
        if (r.status !== 201) {
          failures++;
          firstFailure ||= `${r.status} ${r.body.slice(0, 300)}`;
        }
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  agent.destroy();
  if (failures > 0) throw new Error(`${failures} of ${n} pod creates failed; first: ${firstFailure}`);
  return n / seconds;
}

export async function deletePods(env: { APISERVER_URL: string; ADMIN_TOKEN: string; APISERVER_CA: string }, label: string): Promise<void> {
  const ca = readFileSync(env.APISERVER_CA, 'utf8');
  await apiRequest(`${env.APISERVER_URL}/api/v1/namespaces/agents/pods?labelSelector=${encodeURIComponent(`kubetrail-test=${label}`)}&gracePeriodSeconds=0`, env.ADMIN_TOKEN, ca, 'DELETE');
}

/** Sum and count of the API server's own admission-webhook latency histogram, per webhook name (its /metrics). */
export async function webhookCallStats(env: { APISERVER_URL: string; ADMIN_TOKEN: string; APISERVER_CA: string }): Promise<Map<string, { sum: number; count: number }>> {
  const ca = readFileSync(env.APISERVER_CA, 'utf8');
  const r = await apiRequest(`${env.APISERVER_URL}/metrics`, env.ADMIN_TOKEN, ca, 'GET');
  const out = new Map<string, { sum: number; count: number }>();
  for (const line of r.body.split('\n')) {
    const m = /^apiserver_admission_webhook_admission_duration_seconds_(sum|count)\{([^}]*)\} (\S+)$/.exec(line);
    if (!m) continue;
    const name = /(?:^|,)name="([^"]*)"/.exec(m[2] as string)?.[1] ?? '?';
    const e = out.get(name) ?? { sum: 0, count: 0 };
    if (m[1] === 'sum') e.sum += Number(m[3]);
    else e.count += Number(m[3]);
    out.set(name, e);
  }
  return out;
}
