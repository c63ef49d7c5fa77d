/**
 * Benchmark servers in child processes, so that no load generator shares
 * their event loop: a child is `node <script> <mode>`, prints one JSON line
 * (`{port, ca, caBundle, ...}`) once it listens, answers 'stats' over IPC,
 * and exits on SIGTERM.
 */
import { spawn, type ChildProcess } from 'node:child_process';

export interface Child {
  proc: ChildProcess;
  port: number;
  ca: string;
  caBundle: string;
}

export function startChild(script: string, mode: string, nodeArgs: readonly string[] = []): Promise<Child> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [...nodeArgs, script, mode], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'], env: process.env });
    let buf = '';
    proc.stdout?.on('data', (c: Buffer) => {
      buf += c.toString();
      const nl = buf.indexOf('\n');
      if (nl >= 0) {
        const info = JSON.parse(buf.slice(0, nl)) as { port: number; ca: string; caBundle: string };
        resolve({ proc, ...info });
      }
    });
    proc.on('exit', (code) => reject(new Error(`${mode} exited with ${code}`)));
  });
}

/** Asks a child (over IPC) for its figures: it answers the message 'stats' with one message. */
export function childStats<S>(c: Child): Promise<S> {
  return new Promise((resolve) => {
    c.proc.once('message', (m) => resolve(structuredClone(m) as S));
    c.proc.send('stats');
  });
}

export async function stopChild(c: Child): Promise<void> {
  const exited = new Promise((r) => c.proc.once('exit', r));
  c.proc.kill('SIGTERM');
  await exited;
}
