/**
 * `kubetrail start`: the local all-in-one, the README's first command.
 *
 * Runs the admission webhook and the gateway on loopback with generated dev
 * certificates and the local event log. Upstream is the current kube context
 * when it answers; otherwise the test harness's local control plane (etcd +
 * kube-apiserver, built once) is started and the webhooks are registered
 * against it. It prints an agent kubeconfig that routes through the gateway
 * and commands to try.
 *
 * Webhooks are registered only on the local control plane: pointing a real
 * cluster's webhooks at a laptop would stall that cluster's writes whenever
 * the laptop sleeps. For a real cluster, deploy with `kubectl apply -k manifests/`.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { loadConfig, configFileFromArgv, type Config } from '../core/config.ts';
import { ConfigError } from '../core/errors.ts';
import { createLogger, type Logger } from '../core/logger.ts';
import { createMetricsRegistry, startHealthServer } from '../core/health-server.ts';
import { createEventPipeline } from '../core/pipeline.ts';
import { Shutdown } from '../core/shutdown.ts';
import { CERT_DEFAULTS, ensureCertificates } from '../certs/rotation.ts';
import { startWebhook } from '../webhook/main.ts';
import { startGateway } from '../exec-proxy/main.ts';
import { buildKubeconfig } from './kubeconfig.ts';
import { runCommand } from './process.ts';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Listen addresses `start` uses unless the config file or env says otherwise: loopback only. */
// No load balancer routes to a local run: Ctrl-C stops at once (no drain period).
const LOCAL_DEFAULTS = {
  shutdownDrainSeconds: 0,
  webhook: { listen: '127.0.0.1:8443', health: '127.0.0.1:8080' },
  proxy: { listen: '127.0.0.1:9443', health: '127.0.0.1:8081' },
} as const;

interface StartFlags {
  configFile: string | undefined;
  kubeconfig: string | undefined;
  context: string | undefined;
  local: boolean;
}

function parseFlags(argv: readonly string[]): StartFlags {
  const flags: StartFlags = { configFile: configFileFromArgv(argv), kubeconfig: undefined, context: undefined, local: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new ConfigError('CFG_ERR_ARGV', [{ path: a, message: 'needs a value' }]);
      return v;
    };
    if (a === '--config') i++;
    else if (a.startsWith('--config=')) continue;
    else if (a === '--kubeconfig') flags.kubeconfig = value();
    else if (a === '--context') flags.context = value();
    else if (a === '--local') flags.local = true;
    else throw new ConfigError('CFG_ERR_ARGV', [{ path: a, message: 'unknown flag (kubetrail start [--config FILE] [--kubeconfig FILE] [--context NAME] [--local]; --help for more)' }]);
  }
  return flags;
}

function merge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] = b && typeof b === 'object' && !Array.isArray(b) && v && typeof v === 'object' && !Array.isArray(v) ? merge(b as Record<string, unknown>, v as Record<string, unknown>) : v;
  }
  return out;
}

/**
 * Is this kubeconfig's API server answering? (kubectl decides, as the user's tools would.) `get --raw /version`,
 * not `kubectl version`: the latter exits 1 when it cannot parse the server's version string (an API server
 * built from source reports `v0.0.0-master+$Format:%H$`), although the server answered.
 */
async function reachable(kubeconfig: string, context: string | undefined): Promise<boolean> {
  const args = ['--kubeconfig', kubeconfig, ...(context ? ['--context', context] : []), 'get', '--raw', '/version', '--request-timeout=3s'];
  const r = await runCommand('kubectl', args, { timeoutMs: 10_000 });
  return r.status === 0 && /"gitVersion"/.test(r.stdout);
}

/** The shipped webhook configurations, pointed at this process by URL instead of a Service. */
function localWebhookConfigurations(webhookPort: number, caBundle: string): string {
  const file = path.join(REPO_ROOT, 'manifests', 'base', 'webhook-configurations.yaml');
  const docs = parseAllDocuments(readFileSync(file, 'utf8')).map((d) => d.toJSON() as { metadata: { name: string }; webhooks: { clientConfig: Record<string, unknown> }[] });
  for (const doc of docs) {
    doc.metadata.name = 'kubetrail-local';
    for (const w of doc.webhooks) {
      const service = w.clientConfig['service'] as { path: string };
      w.clientConfig = { url: `https://127.0.0.1:${webhookPort}${service.path}`, caBundle };
    }
  }
  return docs.map((d) => JSON.stringify(d)).join('\n---\n');
}

const USAGE = `usage: kubetrail start [--config FILE] [--kubeconfig FILE] [--context NAME] [--local]

Runs the admission webhook and the gateway on loopback with dev certificates and
the local event log. Upstream is the current kube context when it answers (or
--kubeconfig/--context); otherwise, or with --local, a local control plane is
started and the webhooks are registered against it. Prints an agent kubeconfig
that goes through the gateway. Every setting is also a KUBETRAIL_* variable.
`;

/** Runs `kubetrail start`. */
export async function run(argv: string[]): Promise<number> {
  if (argv.includes('-h') || argv.includes('--help')) {
    process.stdout.write(USAGE);
    return 0;
  }
  const flags = parseFlags(argv);
  let fileDoc: Record<string, unknown> = {};
  if (flags.configFile !== undefined) {
    // Validate the file as is first, so its errors name its own fields.
    loadConfig({ file: flags.configFile });
    fileDoc = (parseYaml(readFileSync(flags.configFile, 'utf8')) as Record<string, unknown> | null) ?? {};
  }
  const first = loadConfig({ env: process.env, document: merge(LOCAL_DEFAULTS, fileDoc) });
  const log = createLogger({ level: first.log.level, name: 'kubetrail-start' });
  mkdirSync(first.dataDir, { recursive: true });

  // Dev certificates for both listeners (renewed when close to expiry).
  const certDir = path.join(first.dataDir, 'dev-certs');
  const certs = ensureCertificates(certDir, {
    ...CERT_DEFAULTS,
    commonName: 'kubetrail-dev',
    dnsNames: ['localhost'],
    ips: ['127.0.0.1'],
    rotateCA: false,
    dropOldCAs: false,
    force: false,
    now: new Date(),
  });
  const tls = { certFile: certs.files.cert, keyFile: certs.files.key };

  const shutdown = new Shutdown(log);
  // Upstream: the given or current kube context when it answers, else a local control plane.
  const candidate = flags.kubeconfig ?? first.proxy.upstream.kubeconfig ?? process.env['KUBECONFIG']?.split(path.delimiter)[0] ?? path.join(homedir(), '.kube', 'config');
  let upstreamKubeconfig: string;
  let agent: { token: string } | undefined;
  let local = false;
  if (!flags.local && existsSync(candidate) && (await reachable(candidate, flags.context))) {
    upstreamKubeconfig = candidate;
    process.stdout.write(`upstream: ${candidate}${flags.context ? ` (context ${flags.context})` : ''}\n`);
  } else {
    process.stdout.write(
      flags.local ? 'upstream: starting a local control plane (--local)\n' : `upstream: no reachable kube context (${candidate}); starting a local control plane (etcd + kube-apiserver)\n`,
    );
    const { startControlPlane } = await import('../test/harness/harness.ts');
    const cp = await startControlPlane({ dir: path.join(first.dataDir, 'control-plane', String(Date.now())) });
    shutdown.add('control plane', () => cp.stop());
    upstreamKubeconfig = cp.adminKubeconfig;
    agent = { token: cp.agentToken };
    local = true;
  }

  const config: Config = loadConfig({
    env: process.env,
    document: merge(merge(LOCAL_DEFAULTS, fileDoc), {
      webhook: { tls },
      proxy: { tls, upstream: { kubeconfig: upstreamKubeconfig, inCluster: false, ...(flags.context && !local ? { context: flags.context } : {}) } },
      ...(fileDoc['policies'] === undefined && process.env['KUBETRAIL_POLICIES_DIR'] === undefined ? { policies: { dir: path.join(REPO_ROOT, 'policies') } } : {}),
    }),
  });

  const registry = createMetricsRegistry();
  const webhookSink = await createEventPipeline({ config, log, registry, component: 'webhook' });
  shutdown.add('webhook events', () => webhookSink.close());
  const proxySink = await createEventPipeline({ config, log, registry, component: 'proxy' });
  shutdown.add('gateway events', () => proxySink.close());

  const webhook = await startWebhook({ config, log, sink: webhookSink, registry });
  shutdown.add('webhook', () => webhook.close());
  const webhookHealth = await startHealthServer(config.webhook.health, registry);
  webhookHealth.addCheck('policies', () => webhook.ready());
  webhookHealth.addCheck('events', () => webhookSink.ready());
  shutdown.add('webhook health', () => webhookHealth.close());

  if (local) {
    const applied = await runCommand('kubectl', ['--kubeconfig', upstreamKubeconfig, 'apply', '-f', '-'], { input: localWebhookConfigurations(webhook.port, certs.caBundle) });
    if (applied.status !== 0) throw new Error(`registering the webhooks failed: ${applied.stderr.trim()}`);
    shutdown.add('webhook registration', async () => {
      await runCommand('kubectl', ['--kubeconfig', upstreamKubeconfig, 'delete', 'validatingwebhookconfiguration,mutatingwebhookconfiguration', 'kubetrail-local', '--ignore-not-found']);
    });
  }

  // With the file names, the gateway watches them and serves a renewed pair without a restart (as the webhook does from config.webhook.tls).
  const gateway = await startGateway({ config, log, sink: proxySink, tls: { cert: readFileSync(tls.certFile), key: readFileSync(tls.keyFile), certFile: tls.certFile, keyFile: tls.keyFile }, registry });
  shutdown.add('gateway', () => gateway.close());
  const proxyHealth = await startHealthServer(config.proxy.health, registry);
  proxyHealth.addCheck('events', () => proxySink.ready());
  shutdown.add('gateway health', () => proxyHealth.close());

  printWelcome({ config, log, webhookPort: webhook.port, gatewayUrl: gateway.url, caPem: certs.caBundlePem, agent, local, webhookHealth: webhookHealth.port, proxyHealth: proxyHealth.port });
  shutdown.installSignalHandlers();
  return new Promise<number>(() => undefined);
}

function printWelcome(o: {
  config: Config;
  log: Logger;
  webhookPort: number;
  gatewayUrl: string;
  caPem: string;
  agent: { token: string } | undefined;
  local: boolean;
  webhookHealth: number;
  proxyHealth: number;
}): void {
  const dataDir = o.config.dataDir;
  const lines = [
    '',
    'kubetrail is running',
    `  webhook   https://127.0.0.1:${o.webhookPort}  (/validate, /mutate; health http://127.0.0.1:${o.webhookHealth}/readyz)`,
    `  gateway   ${o.gatewayUrl}  (health http://127.0.0.1:${o.proxyHealth}/readyz)`,
    `  events    ${path.join(dataDir, 'log')}  (npm run kubetrail -- events)`,
    `  policies  ${o.config.policies.dir}  (edit a file: reloaded without restart)`,
  ];
  if (o.agent) {
    const tokenFile = path.join(dataDir, 'agent.token');
    writeFileSync(tokenFile, `${o.agent.token}\n`, { mode: 0o600 });
    const kubeconfig = path.join(dataDir, 'agent.kubeconfig');
    writeFileSync(kubeconfig, buildKubeconfig({ server: o.gatewayUrl, caPem: o.caPem, tokenFile, name: 'kubetrail-agent', namespace: 'agents' }), { mode: 0o600 });
    lines.push(
      '',
      `agent kubeconfig: ${kubeconfig}`,
      '',
      'Try it as the agent (user agent-ci, through the gateway):',
      `  export KUBECONFIG=${kubeconfig}`,
      '  kubectl run priv --image=nginx --privileged        # denied by the starter pack',
      '  kubectl create deployment web --image=nginx         # admitted, stamped kubetrail.io/*',
      '  kubectl get deployment web -o jsonpath="{.metadata.annotations}"',
      '  npm run kubetrail -- events                         # what kubetrail recorded',
    );
  } else {
    lines.push(
      '',
      'Webhooks are not registered on a real cluster from here (deploy with kubectl apply -k manifests/).',
      'Route a caller through the gateway with a token the cluster accepts:',
      `  npm run kubetrail -- kubeconfig --server ${o.gatewayUrl} --ca-file ${path.join(dataDir, 'dev-certs', 'ca.crt')} --token-file TOKEN_FILE --out agent.kubeconfig`,
    );
  }
  lines.push('', 'Ctrl-C stops everything.', '');
  process.stdout.write(lines.join('\n'));
  o.log.info({ local: o.local }, 'kubetrail started');
}
