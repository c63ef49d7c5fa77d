/**
 * What the index keeps of one event: the columns queries filter on and the
 * free text FTS5 searches, all derived from the event itself (the index holds
 * nothing that is not in the trail). Pure: no database, no I/O.
 */
import type { KubetrailEvent, SessionBody, SessionDataBody } from '../events/model.ts';
import { chunkBytes } from '../events/asciicast.ts';

/** The indexed fields of one event. */
export interface IndexedFields {
  t: number;
  type: string;
  user: string | null;
  groups: readonly string[];
  namespace: string | null;
  resource: string | null;
  name: string | null;
  verb: string | null;
  /** allow | deny, where the event carries a decision. */
  decision: string | null;
  policy: string | null;
  /** approval.* events: requested | decided | expired | used; requireApproval decisions: required. */
  approval: string | null;
  session: string | null;
  auditId: string | null;
  source: string;
  seq: number | null;
  /** FTS columns: the exec command, typed lines (stdin and checked lines), everything else worth finding. */
  command: string;
  lines: string;
  text: string;
}

type Loose = Record<string, unknown>;

const str = (v: unknown): string | null => (typeof v === 'string' && v !== '' ? v : null);

/** The verb a person would name: the admission operation, the API verb, the session kind or the guardrail action. */
export function verbOf(e: KubetrailEvent): string {
  const b = e.body as unknown as Loose;
  if (typeof b['operation'] === 'string') return b['operation'].toLowerCase();
  if (typeof b['verb'] === 'string') return b['verb'];
  if (typeof b['kind'] === 'string') return b['kind'];
  if (typeof b['action'] === 'string') return b['action'];
  return '';
}

function decisionOf(b: Loose, type: string): { decision: string | null; policy: string | null; action: string | null } {
  const d = b['decision'];
  if (d !== null && typeof d === 'object' && !Array.isArray(d)) {
    const dd = d as Loose;
    return { decision: dd['allowed'] === true ? 'allow' : dd['allowed'] === false ? 'deny' : null, policy: str(dd['policy']), action: str(dd['action']) };
  }
  if (type === 'guardrail.decision') {
    const action = str(b['action']);
    return { decision: action === 'deny' ? 'deny' : 'allow', policy: str(b['policy']), action };
  }
  return { decision: null, policy: str(b['policy']), action: null };
}

/** Printable text of stdin bytes: control characters become spaces, so typed words can be found. */
function typedText(e: KubetrailEvent): string {
  const b = e.body as SessionDataBody;
  if (b.stream !== 'stdin') return '';
  try {
    return chunkBytes(b).toString('utf8').replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
  } catch {
    return ''; // a corrupt chunk: verify reports it; the index just cannot search it
  }
}

function inputText(v: unknown): string {
  if (v === undefined || v === null) return '';
  if (typeof v === 'string') return v;
  const o = v as Loose;
  if (typeof o['line'] === 'string') return o['line'];
  return JSON.stringify(v);
}

/** Derives the indexed fields of `e`. */
export function indexedFields(e: KubetrailEvent): IndexedFields {
  const b = (e.body ?? {}) as unknown as Loose;
  const type = e.type as string;
  const { decision, policy, action } = decisionOf(b, type);
  let approval: string | null = null;
  if (type.startsWith('approval.')) approval = type.slice('approval.'.length);
  else if (action === 'requireApproval') approval = 'required';
  const session = type.startsWith('session.') ? (e.body as SessionBody) : undefined;
  const command = Array.isArray(session?.command) ? session.command.join(' ') : type === 'api.request' ? '' : Array.isArray(b['command']) ? (b['command'] as unknown[]).join(' ') : '';
  let lines = '';
  if (type === 'session.data') lines = typedText(e);
  else if (type === 'guardrail.decision') lines = inputText(b['input']);
  const textParts = [e.actor?.username, e.target?.namespace, e.target?.name, e.target?.resource, str(b['pod']), str(b['path']), policy, str(b['rule']), str(b['message'])];
  const dm = (b['decision'] as Loose | undefined)?.['message'];
  if (typeof dm === 'string') textParts.push(dm);
  return {
    t: Date.parse(e.time),
    type,
    user: str(e.actor?.username),
    groups: e.actor?.groups ?? [],
    namespace: str(e.target?.namespace) ?? str(b['namespace']),
    resource: str(e.target?.resource) ?? (session ? 'pods' : null),
    name: str(e.target?.name) ?? str(b['pod']),
    verb: str(verbOf(e)),
    decision,
    policy,
    approval,
    session: str(e.correlation?.session),
    auditId: str(e.correlation?.auditId),
    source: `${e.source?.component ?? ''}/${e.source?.instance ?? ''}`,
    seq: typeof e.chain?.seq === 'number' ? e.chain.seq : null,
    command,
    lines,
    text: textParts.filter((s): s is string => typeof s === 'string' && s !== '').join(' '),
  };
}
