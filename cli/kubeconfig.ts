/**
 * `kubetrail kubeconfig`: writes a kubeconfig that routes a caller through the
 * gateway. The caller's credential is a token file or an exec credential
 * plugin (an OIDC helper such as kubelogin). The gateway's CA is embedded so
 * the file is self-contained.
 *
 * A token file is named under two keys, because the clients disagree on its
 * name: `tokenFile` (the kubeconfig schema: kubectl and client-go re-read it
 * periodically, so rotated ServiceAccount tokens keep working; the Python
 * client reads it at load) and `token-file` (the only key
 * @kubernetes/client-node 2.x reads, once, at load: issue 13 item 11). Each
 * client ignores the key it does not know.
 *
 *   kubetrail kubeconfig --server https://127.0.0.1:9443 --ca-file ca.crt --token-file /var/run/token [--out FILE]
 *   kubetrail kubeconfig --server URL --ca-file ca.crt --exec-plugin kubectl-oidc_login --exec-arg get-token --exec-arg --oidc-issuer-url=...
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { KubetrailError } from '../core/errors.ts';

/** Codes of `kubetrail kubeconfig` usage errors. */
export type KubeconfigErrorCode = 'CLI_ERR_USAGE';

/** A usage error of the command; the message says what to fix. */
export class KubeconfigError extends KubetrailError<KubeconfigErrorCode> {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('CLI_ERR_USAGE', message, { status: 400, ...options });
  }
}

/** What the kubeconfig should say. Exactly one of tokenFile and exec. */
export interface KubeconfigSpec {
  server: string;
  /** PEM of the gateway's CA, embedded as certificate-authority-data. */
  caPem?: string;
  tokenFile?: string;
  exec?: { command: string; args: string[]; apiVersion?: string; env?: { name: string; value: string }[] };
  /** Name of the cluster, user and context entries. */
  name?: string;
  namespace?: string;
}

/** Builds the kubeconfig YAML. */
export function buildKubeconfig(spec: KubeconfigSpec): string {
  if ((spec.tokenFile === undefined) === (spec.exec === undefined)) throw new KubeconfigError('give exactly one of --token-file or --exec-plugin');
  let url: URL;
  try {
    url = new URL(spec.server);
  } catch (err) {
    throw new KubeconfigError(`--server is not a URL: ${spec.server}`, { cause: err });
  }
  if (url.protocol !== 'https:') throw new KubeconfigError('--server must be an https:// URL (the gateway only speaks TLS)');
  const name = spec.name ?? 'kubetrail';
  // Without a trailing slash: client-node appends paths as they are, and "https://gw/" + "/api" is "//api", which the gateway refuses.
  const cluster: Record<string, unknown> = { server: spec.server.replace(/\/+$/, '') };
  if (spec.caPem !== undefined) cluster['certificate-authority-data'] = Buffer.from(spec.caPem).toString('base64');
  const user: Record<string, unknown> = {};
  if (spec.tokenFile !== undefined) {
    user['tokenFile'] = path.resolve(spec.tokenFile);
    user['token-file'] = path.resolve(spec.tokenFile);
  }
  if (spec.exec !== undefined) {
    user['exec'] = {
      apiVersion: spec.exec.apiVersion ?? 'client.authentication.k8s.io/v1',
      command: spec.exec.command,
      args: spec.exec.args,
      ...(spec.exec.env && spec.exec.env.length > 0 ? { env: spec.exec.env } : {}),
      interactiveMode: 'IfAvailable',
      provideClusterInfo: false,
    };
  }
  const context: Record<string, unknown> = { cluster: name, user: name };
  if (spec.namespace !== undefined) context['namespace'] = spec.namespace;
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name, cluster }],
    users: [{ name, user }],
    contexts: [{ name, context }],
    'current-context': name,
  });
}

const USAGE = `usage: kubetrail kubeconfig --server URL [--ca-file F] (--token-file F | --exec-plugin CMD [--exec-arg A]... [--exec-env NAME=VALUE]...)
                            [--namespace NS] [--name N] [--out FILE]
`;

/** Runs `kubetrail kubeconfig`. */
export async function run(argv: string[]): Promise<number> {
  let values: ReturnType<typeof parse>['values'];
  function parse(a: string[]) {
    return parseArgs({
      args: a,
      options: {
        server: { type: 'string' },
        'ca-file': { type: 'string' },
        'token-file': { type: 'string' },
        'exec-plugin': { type: 'string' },
        'exec-arg': { type: 'string', multiple: true },
        'exec-env': { type: 'string', multiple: true },
        'exec-api-version': { type: 'string' },
        namespace: { type: 'string' },
        name: { type: 'string' },
        out: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    });
  }
  try {
    ({ values } = parse(argv));
  } catch (err) {
    throw new KubeconfigError(`${(err as Error).message}\n${USAGE}`, { cause: err });
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (values.server === undefined) throw new KubeconfigError(`--server is required\n${USAGE}`);
  const spec: KubeconfigSpec = { server: values.server };
  if (values['ca-file'] !== undefined) {
    try {
      spec.caPem = readFileSync(values['ca-file'], 'utf8');
    } catch (err) {
      throw new KubeconfigError(`cannot read --ca-file ${values['ca-file']}`, { cause: err });
    }
  }
  if (values['token-file'] !== undefined) spec.tokenFile = values['token-file'];
  if (values['exec-plugin'] !== undefined) {
    const env = (values['exec-env'] ?? []).map((kv) => {
      const i = kv.indexOf('=');
      if (i <= 0) throw new KubeconfigError(`--exec-env wants NAME=VALUE, got ${kv}`);
      return { name: kv.slice(0, i), value: kv.slice(i + 1) };
    });
    spec.exec = { command: values['exec-plugin'], args: values['exec-arg'] ?? [], env };
    if (values['exec-api-version'] !== undefined) spec.exec.apiVersion = values['exec-api-version'];
  }
  if (values.namespace !== undefined) spec.namespace = values.namespace;
  if (values.name !== undefined) spec.name = values.name;
  const yaml = buildKubeconfig(spec);
  if (values.out !== undefined) writeFileSync(values.out, yaml, { mode: 0o600 });
  else process.stdout.write(yaml);
  return 0;
}
