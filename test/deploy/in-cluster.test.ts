/**
 * kubetrail installed into the harness's real cluster with one
 * `kubectl apply -k manifests/` (issue 16 item 6): the image built here with
 * buildah and imported into the node's containerd, the image reference set
 * in manifests/kustomization.yaml, Kafka pointed at the harness broker's pod
 * listener. The tests run in order on one install and the last one removes it;
 * `after` deletes the webhook configurations first whatever happened (a
 * leftover fail-closed entry would refuse every later test's writes).
 *
 * The local PersistentVolumes are created before the apply; their binding
 * (a kube-system controller's write to a cluster-scoped object) may come after
 * the webhook configurations exist and before any webhook is ready.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { harness, kubectl } from '../support/env.ts';
import { suffix } from './support.ts';
import {
  admin,
  adminTry,
  agentDeniedAndStamped,
  createLocalPvs,
  deleteLocalPvs,
  forceUninstall,
  importedImage,
  kafkaEvents,
  rolloutStatus,
  userManifests,
  verifyTopic,
  waitFor,
  waitReady,
  webhookConfigurations,
  type NodeImage,
} from './in-cluster-support.ts';

const NS = 'kubetrail';
const id = suffix();
const topics = { events: `kt-incluster-${id}.events`, sessions: `kt-incluster-${id}.sessions` };
const scratch = mkdtempSync(path.join(tmpdir(), 'kt-incluster-run-'));
let img: NodeImage;
let manifests: { dir: string; cleanup: () => void } | undefined;

before(async () => {
  const ns = await adminTry(['get', 'namespace', NS, '-o', 'name']);
  assert.notEqual(ns.status, 0, `namespace ${NS} exists already: not a first install`);
  img = await importedImage();
  manifests = userManifests(img, topics);
});

after(async () => {
  await forceUninstall(NS);
  await adminTry(['-n', 'agents', 'delete', 'deployment,configmap,pod', '-l', `kubetrail.test/run=${id}`, '--ignore-not-found', '--wait=false']);
  await deleteLocalPvs();
  manifests?.cleanup();
  rmSync(scratch, { recursive: true, force: true });
});

test('one apply installs kubetrail: its pods become Ready with their probes and the spool claims bind', async () => {
  assert.ok(manifests);
  const started = Date.now();
  // The volumes exist first, as on a cluster with static local storage: an admin's PV create is
  // cluster-scoped and fail-closed while no webhook runs (docs/known-issues.md).
  await createLocalPvs(NS, ['webhook-0', 'webhook-1', 'proxy-0', 'proxy-1']);
  await admin(['apply', '-k', manifests.dir], undefined, 180_000);
  for (const c of ['webhook', 'proxy']) await waitReady(NS, c, 2, 240_000);
  const pvcs = JSON.parse(await admin(['-n', NS, 'get', 'pvc', '-o', 'json'])) as { items: { metadata: { name: string }; status: { phase: string } }[] };
  // The claims of the two replicas of each (a claim another test's install left behind, e.g. a third replica's, is not ours).
  const ours = ['data-kubetrail-proxy-0', 'data-kubetrail-proxy-1', 'data-kubetrail-webhook-0', 'data-kubetrail-webhook-1'];
  assert.deepEqual(pvcs.items.filter((p) => ours.includes(p.metadata.name)).map((p) => `${p.metadata.name}=${p.status.phase}`).sort(), ours.map((n) => `${n}=Bound`));
  const vwc = JSON.parse(await admin(['get', 'validatingwebhookconfiguration', 'kubetrail', '-o', 'json'])) as { webhooks: { clientConfig: { caBundle?: string } }[] };
  for (const w of vwc.webhooks) assert.ok(w.clientConfig.caBundle, 'the leader wrote the caBundle');
  // The pods run as the image's user with a read-only root filesystem, as the manifests ask.
  const pod = JSON.parse(await admin(['-n', NS, 'get', 'pod', 'kubetrail-webhook-0', '-o', 'json'])) as { spec: { containers: { image: string; securityContext: { readOnlyRootFilesystem: boolean } }[] } };
  assert.equal(pod.spec.containers[0]?.image, img.image);
  assert.equal(pod.spec.containers[0]?.securityContext.readOnlyRootFilesystem, true);
  const w = await admin(['-n', NS, 'exec', 'kubetrail-webhook-0', '--', 'node', '-e', "const fs=require('fs');let ro='no';try{fs.writeFileSync('/app/x','x')}catch(e){ro=e.code}console.log(process.getuid()+':'+process.getgid()+' '+ro)"]);
  assert.equal(w.trim(), '10001:10001 EROFS');
  process.stdout.write(`# install to all pods Ready: ${((Date.now() - started) / 1000).toFixed(1)} s; image ${img.image}, OCI archive ${(img.archiveBytes / 1024 / 1024).toFixed(1)} MiB\n`);
});

test('the API server calls the in-cluster webhook through its Service: an agent\'s privileged pod is denied, a Deployment is stamped and rolls out, the events reach Kafka', async () => {
  const { deployment, denied, created } = await agentDeniedAndStamped(id, '', topics.events);
  // Its ReplicaSet and pod are written by kube-system controllers through the same webhooks.
  await admin(['-n', 'agents', 'rollout', 'status', `deployment/${deployment}`, '--timeout=120s'], undefined, 150_000);
  assert.equal(denied.actor?.username, 'agent-ci');
  assert.equal(denied.source.component, 'webhook');
  assert.notEqual(created.id, '');
});

/** A kubeconfig for agent-ci that reaches the gateway through its Service's ClusterIP (the host routes the service range to the node). */
async function gatewayKubeconfig(): Promise<string> {
  const h = harness();
  const ip = (await admin(['-n', NS, 'get', 'service', 'kubetrail-proxy', '-o', 'jsonpath={.spec.clusterIP}'])).trim();
  const ca = Buffer.from((await admin(['-n', NS, 'get', 'secret', 'kubetrail-tls', '-o', 'jsonpath={.data.ca\\.crt}'])).trim(), 'base64');
  const caFile = path.join(scratch, 'gateway-ca.crt');
  writeFileSync(caFile, ca);
  const file = path.join(scratch, 'gateway.kubeconfig');
  writeFileSync(
    file,
    `apiVersion: v1
kind: Config
clusters:
- name: gateway
  cluster: {server: "https://${ip}:443", certificate-authority: "${caFile}", tls-server-name: kubetrail-proxy.${NS}.svc}
users:
- name: agent-ci
  user: {token: "${h.AGENT_TOKEN}"}
contexts:
- name: gateway
  context: {cluster: gateway, user: agent-ci, namespace: agents}
current-context: gateway
`,
    { mode: 0o600 },
  );
  return file;
}

test('the in-cluster gateway serves kubectl through its Service, and an exec into a real pod is recorded', async () => {
  const kc = await gatewayKubeconfig();
  const pods = await kubectl(kc, ['get', 'pods', '-l', `app=d-${id}`, '-o', 'jsonpath={.items[0].metadata.name}']);
  assert.equal(pods.status, 0, pods.stderr);
  const pod = pods.stdout.trim();
  assert.ok(pod);
  const marker = `exec-through-gateway-${id}`;
  const ex = await kubectl(kc, ['exec', pod, '--', 'sh', '-c', `echo ${marker}; exit 3`]);
  assert.equal(ex.status, 3, ex.stderr);
  assert.equal(ex.stdout.trim(), marker);
  const session = await waitFor('the exec session in Kafka', async () => {
    const all = await kafkaEvents([topics.events, topics.sessions]);
    const end = all.find((e) => e.source.component === 'proxy' && e.type === 'session.end' && e.target?.name === pod && e.actor?.username === 'agent-ci');
    const output = all.some((e) => e.type === 'session.data' && JSON.stringify(e.body).includes(Buffer.from(marker).toString('base64').slice(0, 16)));
    return end ? { end, output } : undefined;
  });
  assert.ok(session);
});

/**
 * A steady writer: agent-ci creates ConfigMaps in `agents` straight at the API
 * server, one after another, and counts what was admitted and what refused.
 */
function writer(prefix: string): { stop: () => Promise<{ admitted: string[]; refused: string[] }> } {
  const h = harness();
  const ca = readFileSync(h.APISERVER_CA);
  const url = new URL(h.APISERVER_URL);
  const admitted: string[] = [];
  const refused: string[] = [];
  let running = true;
  const one = (name: string): Promise<{ status: number; body: string }> =>
    new Promise((resolve) => {
      const body = JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, labels: { 'kubetrail.test/run': id } }, data: { n: name } });
      const req = request(
        { host: url.hostname, port: url.port, method: 'POST', path: '/api/v1/namespaces/agents/configmaps', ca, headers: { authorization: `Bearer ${h.AGENT_TOKEN}`, 'content-type': 'application/json' } },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
        },
      );
      req.on('error', (e) => resolve({ status: 0, body: String(e) }));
      req.end(body);
    });
  const loop = (async () => {
    for (let i = 0; running; i++) {
      const name = `${prefix}-${i}`;
      const r = await one(name);
      if (r.status === 201) admitted.push(name);
      else refused.push(`${name}: ${r.status} ${r.body.slice(0, 300)}`);
      // Pacing of the load (about 10 writes a second), not a wait for a condition.
      await new Promise((res) => setTimeout(res, 100));
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return { admitted, refused };
    },
  };
}

// Each terminating pod drains first (core/drain.ts): unready, still answering, with Connection: close.
test('a rolling restart of the webhook and the gateway under a steady write load loses no event and refuses no write', async () => {
  const prefix = `load-${id}`;
  const w = writer(prefix);
  try {
    for (const sts of ['kubetrail-webhook', 'kubetrail-proxy']) {
      await admin(['-n', NS, 'rollout', 'restart', `statefulset/${sts}`]);
      await rolloutStatus(NS, `statefulset/${sts}`, 240);
    }
  } finally {
    await w.stop();
  }
  const { admitted, refused } = await w.stop();
  assert.deepEqual(refused, [], 'no write refused');
  assert.ok(admitted.length > 20, `a steady load (${admitted.length} writes)`);
  const seen = await waitFor('an admission event for every admitted write', async () => {
    const names = new Set(
      (await kafkaEvents([topics.events])).filter((e) => e.type === 'admission.review' && e.body['webhook'] === 'validate' && e.target?.resource === 'configmaps' && e.target.name?.startsWith(`${prefix}-`)).map((e) => e.target?.name),
    );
    return admitted.every((n) => names.has(n)) ? names : undefined;
  }, 120_000);
  assert.equal([...seen].filter((n) => !admitted.includes(n as string)).length, 0, 'no event for a write the client did not see admitted');
  const v = await verifyTopic([topics.events, topics.sessions], NS);
  assert.equal(v.status, 0, `kubetrail verify: ${v.stdout.slice(-2000)}${v.stderr.slice(-2000)}`);
  process.stdout.write(`# rolling restart: ${admitted.length} writes admitted, 0 refused, all recorded; verify clean\n`);
});

test('lock-out drill: with the webhook scaled to 0, kube-system and kubetrail\'s namespace stay writable, other writes get a clear refusal, scaling back restores service', async () => {
  await admin(['-n', NS, 'scale', 'statefulset/kubetrail-webhook', '--replicas=0']);
  await waitFor('no webhook pod', async () => (await admin(['-n', NS, 'get', 'pods', '-l', 'app.kubernetes.io/component=webhook', '-o', 'name'])).trim() === '');
  for (const ns of ['kube-system', NS]) {
    const r = await adminTry(['-n', ns, 'create', 'configmap', `drill-${id}`]);
    assert.equal(r.status, 0, `${ns} is writable: ${r.stderr}`);
    await admin(['-n', ns, 'delete', 'configmap', `drill-${id}`]);
  }
  const refused = await adminTry(['-n', 'agents', 'create', 'configmap', `drill-${id}`]);
  assert.notEqual(refused.status, 0);
  assert.match(refused.stderr, /failed calling webhook "validate\.kubetrail\.io"/);
  // The API server dials the Service's ClusterIP (its default service resolver): no endpoint there is a refused connection.
  assert.match(refused.stderr, /failed to call webhook: Post "https:\/\/kubetrail-webhook\.kubetrail\.svc:443\/validate\?timeout=5s": (dial tcp [0-9.]+:443: connect: connection refused|context deadline exceeded)/);
  await admin(['-n', NS, 'scale', 'statefulset/kubetrail-webhook', '--replicas=2']);
  await waitReady(NS, 'webhook', 2, 180_000, '2 ready webhook pods again');
  await waitFor('writes admitted again', async () => (await adminTry(['-n', 'agents', 'create', 'configmap', `drill-${id}`])).status === 0 || undefined, 60_000);
  await admin(['-n', 'agents', 'label', 'configmap', `drill-${id}`, `kubetrail.test/run=${id}`, '--overwrite']);
});

test('uninstall with kubectl delete -k leaves no webhook configuration behind', async () => {
  assert.ok(manifests);
  const d = await adminTry(['delete', '-k', manifests.dir, '--ignore-not-found', '--wait=true', '--timeout=180s'], undefined, 200_000);
  assert.equal(d.status, 0, d.stderr);
  assert.deepEqual(await webhookConfigurations(), []);
  // Writes elsewhere are no longer sent to anything.
  const r = await adminTry(['-n', 'agents', 'create', 'configmap', `after-${id}`, '-o', 'name']);
  assert.equal(r.status, 0, r.stderr);
  await adminTry(['-n', 'agents', 'delete', 'configmap', `after-${id}`]);
});
