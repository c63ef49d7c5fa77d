/** The exec/attach options a client asks for, read from the request query as the API server reads them. */

/** Parsed exec/attach options from the request query (PodExecOptions / PodAttachOptions). */
export interface ExecOptions {
  command: string[];
  container: string;
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  tty: boolean;
}

/** Booleans as the API server converts them: absent, "0" or "false" are false (apimachinery conversion.go). */
function qbool(q: URLSearchParams, name: string): boolean {
  const v = q.get(name);
  return v !== null && v !== '0' && v !== 'false';
}

/** Reads PodExecOptions / PodAttachOptions from a query. */
export function execOptions(q: URLSearchParams): ExecOptions {
  return { command: q.getAll('command'), container: q.get('container') ?? '', stdin: qbool(q, 'stdin'), stdout: qbool(q, 'stdout'), stderr: qbool(q, 'stderr'), tty: qbool(q, 'tty') };
}
