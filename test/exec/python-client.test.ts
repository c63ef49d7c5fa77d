/**
 * The official Python `kubernetes` client through the stream relay (fake exec
 * upstream, real processes). Its `write_stdin("...")` sends a WebSocket text
 * message on v4.channel.k8s.io, which the API server accepts; so must the
 * relay. Skipped when the client is not installed (`pip install kubernetes`).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { recorded, sessionEnd, startRig } from './helpers.ts';

const hasClient = spawnSync('python3', ['-c', 'import kubernetes.stream'], { encoding: 'utf8' }).status === 0;

const SCRIPT = `
import sys
from kubernetes import client, config
from kubernetes.stream import stream
config.load_kube_config(config_file=sys.argv[1])
resp = stream(client.CoreV1Api().connect_get_namespaced_pod_exec, 'web-1', 'agents',
              command=['sh', '-c', 'read x; echo got-$x'], stdin=True, stdout=True, stderr=True, tty=False,
              _preload_content=False)
resp.write_stdin('hello\\n')
out = ''
while resp.is_open():
    resp.update(timeout=10)
    if resp.peek_stdout():
        out += resp.read_stdout()
resp.close()
sys.stdout.write(out)
`;

test('the Python client: write_stdin (a text message) reaches the command, its output arrives and both are recorded', { skip: hasClient ? false : 'python kubernetes client not installed' }, async (t) => {
  const rig = await startRig();
  t.after(() => rig.close());
  // Asynchronously: the relay under test runs in this process.
  const child = spawn('python3', ['-c', SCRIPT, rig.gw.kubeconfig], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 });
  const r = { stdout: '', stderr: '', status: null as number | null };
  child.stdout.on('data', (d: Buffer) => (r.stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (r.stderr += d.toString()));
  r.status = await new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, 'got-hello\n');
  const id = rig.gw.sessions.at(-1) as string;
  const end = await sessionEnd(rig.sink, id);
  assert.match(end.protocol ?? '', /^v[45]\.channel\.k8s\.io$/);
  assert.equal(end.error, undefined);
  assert.equal(recorded(rig.sink, id, 'stdin').toString(), 'hello\n');
  assert.equal(recorded(rig.sink, id, 'stdout').toString(), 'got-hello\n');
});
