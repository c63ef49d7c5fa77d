/**
 * Clients that are not kubectl, through the gateway to real containers: the
 * Python `kubernetes` client's stream() exec (WebSocket v4.channel.k8s.io) and
 * @kubernetes/client-node's Exec and Attach.
 *
 * The Python client comes from PyPI (kubernetes==37.0.2) in a virtualenv at
 * `$KUBETRAIL_CACHE/py` (.ci/run creates it); the test fails if it is missing.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { Attach, Exec, KubeConfig, type V1Status } from '@kubernetes/client-node';
import { cacheDir } from '../harness/harness.ts';
import { run } from '../support/env.ts';
import { recorded, sessionEnd } from '../exec/helpers.ts';
import { runPod, startNodeGateway, uniq } from './support.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));

// The Python client writes stdin as WebSocket text frames on v4.channel.k8s.io (a binary
// protocol): the relay forwards them as the same bytes (issue 13 item 10).
test('the Python kubernetes client stream() exec reaches a real container through the gateway: stdin, stdout, stderr and the exit code', async (t) => {
  const python = path.join(cacheDir(), 'py', 'bin', 'python');
  assert.ok(existsSync(python), `${python} missing: python3 -m venv ${path.dirname(path.dirname(python))} && ${path.dirname(python)}/pip install kubernetes==37.0.2`);
  const pod = await runPod(t, `kt-py-${uniq()}`, { command: ['sleep', '3600'] });
  const g = await startNodeGateway();
  t.after(() => g.close());
  const r = await run(python, [path.join(HERE, 'py-exec.py'), g.kubeconfig, 'agents', pod, 'hello-from-python\n'], undefined, { timeoutMs: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  const res = JSON.parse(r.stdout.trim().split('\n').at(-1) as string) as { stdout: string; stderr: string; returncode: number };
  assert.equal(res.stdout, 'py:hello-from-python\n');
  assert.equal(res.stderr, 'to-stderr\n');
  assert.equal(res.returncode, 4);
  const sink = g.memory!;
  const id = sink.ofType('session.start').at(-1)?.correlation?.session as string;
  const end = await sessionEnd(sink, id);
  assert.equal(end.exitCode, 4);
  assert.equal(recorded(sink, id, 'stdin').toString(), 'hello-from-python\n');
});

function kubeConfigOf(file: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(file);
  return kc;
}

function collect(): { stream: PassThrough; text: () => string } {
  const s = new PassThrough();
  let text = '';
  s.on('data', (c: Buffer) => (text += c.toString()));
  return { stream: s, text: () => text };
}

test('@kubernetes/client-node Exec runs a command in a real container through the gateway and reports its exit status', async (t) => {
  const pod = await runPod(t, `kt-cn-exec-${uniq()}`, { command: ['sleep', '3600'] });
  const g = await startNodeGateway();
  t.after(() => g.close());
  const out = collect();
  const err = collect();
  const status = await new Promise<V1Status>((resolve, reject) => {
    new Exec(kubeConfigOf(g.inlineTokenKubeconfig))
      .exec('agents', pod, 'app', ['sh', '-c', 'tr a-z A-Z; echo e >&2; exit 5'], out.stream, err.stream, Readable.from([Buffer.from('from client-node\n')]), false, resolve)
      .catch(reject);
  });
  assert.equal(status.status, 'Failure');
  assert.equal(status.details?.causes?.find((c) => c.reason === 'ExitCode')?.message, '5');
  assert.equal(out.text(), 'FROM CLIENT-NODE\n');
  assert.equal(err.text(), 'e\n');
  const sink = g.memory!;
  const end = await sessionEnd(sink, sink.ofType('session.start').at(-1)?.correlation?.session as string);
  assert.equal(end.exitCode, 5);
});

test('@kubernetes/client-node Attach relays stdin to and output from the main process of a real container', async (t) => {
  const pod = await runPod(t, `kt-cn-attach-${uniq()}`, { command: ['sh', '-c', 'while read l; do echo "got:$l"; done'], stdin: true });
  const g = await startNodeGateway();
  t.after(() => g.close());
  const out = collect();
  const stdin = new PassThrough();
  const ws = await new Attach(kubeConfigOf(g.inlineTokenKubeconfig)).attach('agents', pod, 'app', out.stream, out.stream, stdin, false);
  stdin.write('hello\n');
  stdin.write('world\n');
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no reply in 30 s: ${JSON.stringify(out.text())}`)), 30_000);
    const check = (): void => {
      if (out.text().includes('got:world\n')) {
        clearTimeout(timer);
        resolve();
      } else setTimeout(check, 50);
    };
    check();
  });
  assert.equal(out.text(), 'got:hello\ngot:world\n');
  ws.close();
  const sink = g.memory!;
  const id = sink.ofType('session.start').at(-1)?.correlation?.session as string;
  const end = await sessionEnd(sink, id);
  assert.equal(end.kind, 'attach');
  assert.equal(recorded(sink, id, 'stdin').toString(), 'hello\nworld\n');
});
