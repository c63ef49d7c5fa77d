/**
 * CPU accounting for benchmarks, from /proc (Linux; clock ticks of 10 ms):
 * a process's or one thread's CPU time, the whole machine's busy time, and
 * the harness processes (API server, etcd, Kafka broker) to account for.
 * Everything answers NaN (or nothing) where /proc is missing.
 */
import { readdirSync, readFileSync } from 'node:fs';

/** CPU time (ms) a process has used so far, from /proc (Linux; clock ticks of 10 ms), or NaN. */
export function procCpuMs(pid: number | undefined, tid?: number): number {
  if (pid === undefined) return NaN;
  try {
    const stat = readFileSync(tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * 10;
  } catch {
    return NaN;
  }
}

/** Busy CPU time (ms) of the whole machine so far (all cores, /proc/stat), or NaN. */
export function machineBusyMs(): number {
  try {
    const f = (readFileSync('/proc/stat', 'utf8').split('\n')[0] as string).trim().split(/\s+/).slice(1).map(Number);
    const idle = (f[3] ?? 0) + (f[4] ?? 0);
    return (f.reduce((a, b) => a + b, 0) - idle) * 10;
  } catch {
    return NaN;
  }
}

/** The harness processes whose CPU the pods part accounts for: the API server, etcd and the Kafka broker of this harness. */
export function harnessPids(harnessDir: string): Record<string, number> {
  const out: Record<string, number> = {};
  let entries: string[] = [];
  try {
    entries = readdirSync('/proc').filter((e) => /^\d+$/.test(e));
  } catch {
    return out;
  }
  for (const e of entries) {
    try {
      const cmd = readFileSync(`/proc/${e}/cmdline`, 'utf8');
      if (!cmd.includes(harnessDir)) continue;
      const comm = readFileSync(`/proc/${e}/comm`, 'utf8').trim();
      if (comm === 'kube-apiserver') out['apiserver'] = Number(e);
      else if (comm === 'etcd') out['etcd'] = Number(e);
      else if (comm === 'java' && cmd.includes('server.properties')) out['broker'] = Number(e);
    } catch {
      // gone meanwhile
    }
  }
  return out;
}
