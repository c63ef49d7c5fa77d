/**
 * AdmissionReview `admission.k8s.io/v1` parsing and response building: the
 * only code that touches raw webhook JSON. Input is validated field by field
 * into a typed {@link AdmissionRequest}; anything else is an
 * {@link AdmissionError} with a message naming the field (never its content).
 *
 * Reference: k8s.io/api/admission/v1 types.go; the API server checks the
 * response's apiVersion, kind and uid (webhook/request/admissionreview.go).
 */
import { AdmissionError } from './errors.ts';

/** The operations an AdmissionRequest can carry. */
export type AdmissionOperation = 'CREATE' | 'UPDATE' | 'DELETE' | 'CONNECT';

const OPERATIONS: ReadonlySet<string> = new Set(['CREATE', 'UPDATE', 'DELETE', 'CONNECT']);

/** Deepest JSON nesting accepted: real objects stay far below; deeper input would only serve to exhaust the stack of recursive walkers. */
const MAX_JSON_DEPTH = 200;

/** A validated AdmissionRequest. */
export interface AdmissionRequest {
  uid: string;
  kind: { group: string; version: string; kind: string };
  resource: { group: string; version: string; resource: string };
  subResource: string;
  requestKind?: { group: string; version: string; kind: string };
  requestResource?: { group: string; version: string; resource: string };
  requestSubResource?: string;
  name: string;
  namespace: string;
  operation: AdmissionOperation;
  userInfo: { username: string; uid?: string; groups: string[]; extra: Record<string, string[]> };
  object: unknown;
  oldObject: unknown;
  dryRun: boolean;
  options: unknown;
  /**
   * JSON Pointers (from the request: `/object/...`, `/oldObject/...`) of the numbers a double cannot hold faithfully,
   * which are there as strings of their raw text (see {@link parseJsonFaithfully}); absent when there are none.
   */
  rawNumbers?: string[];
}

/** What the webhook answers. */
export interface AdmissionResponse {
  uid: string;
  allowed: boolean;
  /** `details` names what the denial is about (an ApprovalRequest): the API server passes it on to the caller. */
  status?: { code: number; reason?: string; message: string; details?: { name: string; group: string; kind: string; causes?: { reason: string; message: string; field?: string }[] } };
  warnings?: string[];
  auditAnnotations?: Record<string, string>;
  /** RFC 6902 operations (encoded to base64 by {@link encodeResponse}). */
  patch?: unknown[];
}

function invalid(message: string): AdmissionError {
  return new AdmissionError('ADM_ERR_INVALID_REVIEW', message);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function str(o: Record<string, unknown>, key: string, where: string, opts: { required?: boolean; max?: number } = {}): string {
  const v = o[key];
  if (v === undefined || v === null) {
    if (opts.required) throw invalid(`${where}.${key} is required`);
    return '';
  }
  if (typeof v !== 'string') throw invalid(`${where}.${key} must be a string`);
  if (v.length > (opts.max ?? 1024)) throw invalid(`${where}.${key} is too long`);
  return v;
}

function gvk(v: unknown, where: string, third: 'kind' | 'resource', required: boolean): Record<string, string> | undefined {
  if (v === undefined || v === null) {
    if (required) throw invalid(`${where} is required`);
    return undefined;
  }
  if (!isRecord(v)) throw invalid(`${where} must be an object`);
  return { group: str(v, 'group', where), version: str(v, 'version', where, { required: true }), [third]: str(v, third, where, { required: true }) };
}

/**
 * Maximum nesting depth of a JSON value, counted up to `limit + 1` (it stops
 * there, so the recursion is never deeper than the limit and never exhausts
 * the stack). Scalars are skipped without a call and nothing is allocated:
 * this runs over every review (about 3 % of a review's CPU when it pushed a
 * tuple per child onto an explicit stack).
 */
function jsonDepth(v: unknown, limit = MAX_JSON_DEPTH): number {
  if (v === null || typeof v !== 'object') return 0;
  return depthOf(v, limit + 1);
}

/** Depth of the object `v` (1 for a flat one), at most `cap`. */
function depthOf(v: object, cap: number): number {
  if (cap <= 1) return 1;
  let max = 0;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const c: unknown = v[i];
      if (c !== null && typeof c === 'object') {
        const d = depthOf(c, cap - 1);
        if (d > max && (max = d) >= cap - 1) break;
      }
    }
  } else {
    const o = v as Record<string, unknown>;
    for (const k in o) {
      const c = o[k];
      if (c !== null && typeof c === 'object') {
        const d = depthOf(c, cap - 1);
        if (d > max && (max = d) >= cap - 1) break;
      }
    }
  }
  return max + 1;
}

/** A number's text that JSON.parse would not keep: marks it until {@link replaceRaw} turns it into its string. */
class RawNumber {
  readonly text: string;
  constructor(text: string) {
    this.text = text;
  }
}

// Only a text with one of these can hold such a number: >= 16 digits in a row (2^53 has 16) or a 3-digit exponent
// (past 1e308 or below 5e-324). Anything else is parsed by plain JSON.parse, at full speed, with no reviver.
const MAYBE_UNFAITHFUL = /\d{16}|[eE][+-]?\d{3}/;

/** True when `value`, read from `source`, is the number written there (up to ordinary double rounding of decimals). */
function faithful(value: number, source: string): boolean {
  if (!Number.isFinite(value)) return false;
  if (/^-?\d+$/.test(source)) return Number.isSafeInteger(value);
  // A non-zero number that became 0 (underflow).
  return value !== 0 || !/[1-9]/.test(source.replace(/[eE].*$/, ''));
}

function rawNumberReviver(_key: string, value: unknown, context?: { source?: string }): unknown {
  if (typeof value === 'number' && context?.source !== undefined && !faithful(value, context.source)) return new RawNumber(context.source);
  return value;
}

/** Replaces every RawNumber in `v` by its text, collecting JSON Pointers into `at`; refuses nesting past the limit (it recurses). */
function replaceRaw(v: unknown, pointer: string, at: string[], depth: number): unknown {
  if (v instanceof RawNumber) {
    at.push(pointer);
    return v.text;
  }
  if (v === null || typeof v !== 'object') return v;
  if (depth > MAX_JSON_DEPTH + 2) throw invalid(`request is nested deeper than ${MAX_JSON_DEPTH} levels`);
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) v[i] = replaceRaw(v[i], `${pointer}/${i}`, at, depth + 1);
  } else {
    const o = v as Record<string, unknown>;
    for (const k of Object.keys(o)) o[k] = replaceRaw(o[k], `${pointer}/${k.replace(/~/g, '~0').replace(/\//g, '~1')}`, at, depth + 1);
  }
  return v;
}

/**
 * JSON.parse that keeps numbers a double cannot hold: `1e309` (JSON.parse
 * gives Infinity, which the hash chain refuses, so the review could not be
 * recorded) and integers beyond ±2^53 (silently rounded), which the API
 * server passes on as written. Each becomes the string of its raw text, and
 * `rawNumbers` lists where (JSON Pointers): the event stays plain JSON that
 * every consumer and the canonical form read alike, and is faithful. Uses
 * the reviver's source text (ES2025 JSON.parse source text access), only
 * when the text could hold such a number.
 */
function parseJsonFaithfully(text: string): { value: unknown; rawNumbers: string[] } {
  if (!MAYBE_UNFAITHFUL.test(text)) return { value: JSON.parse(text), rawNumbers: [] };
  const value: unknown = JSON.parse(text, rawNumberReviver as (this: unknown, key: string, value: unknown) => unknown);
  const rawNumbers: string[] = [];
  return { value: replaceRaw(value, '', rawNumbers, 0), rawNumbers };
}

/**
 * Parses and validates an AdmissionReview body. Throws AdmissionError
 * `ADM_ERR_INVALID_JSON` or `ADM_ERR_INVALID_REVIEW` (status 400).
 */
export function parseAdmissionReview(body: Buffer | string): AdmissionRequest {
  const text = typeof body === 'string' ? body : body.toString('utf8');
  let doc: unknown;
  let rawNumbers: string[];
  try {
    ({ value: doc, rawNumbers } = parseJsonFaithfully(text));
  } catch (err) {
    if (err instanceof AdmissionError) throw err;
    throw new AdmissionError('ADM_ERR_INVALID_JSON', 'body is not valid JSON', { cause: err });
  }
  if (!isRecord(doc)) throw invalid('body must be a JSON object (an AdmissionReview)');
  if (doc['apiVersion'] !== 'admission.k8s.io/v1') throw invalid('apiVersion must be admission.k8s.io/v1 (register the webhook with admissionReviewVersions: [v1])');
  if (doc['kind'] !== 'AdmissionReview') throw invalid('kind must be AdmissionReview');
  const r = doc['request'];
  if (r === undefined || r === null) throw invalid('request is required');
  if (!isRecord(r)) throw invalid('request must be an object');
  if (jsonDepth(r) > MAX_JSON_DEPTH) throw invalid(`request is nested deeper than ${MAX_JSON_DEPTH} levels`);
  const uid = str(r, 'uid', 'request', { required: true, max: 256 });
  if (uid === '') throw invalid('request.uid must not be empty');
  const operation = str(r, 'operation', 'request', { required: true });
  if (!OPERATIONS.has(operation)) throw invalid('request.operation must be one of CREATE, UPDATE, DELETE, CONNECT');
  const ui = r['userInfo'];
  if (!isRecord(ui)) throw invalid('request.userInfo must be an object');
  const groups = ui['groups'] ?? [];
  if (!Array.isArray(groups) || !groups.every((g) => typeof g === 'string')) throw invalid('request.userInfo.groups must be a list of strings');
  const extraIn = ui['extra'] ?? {};
  if (!isRecord(extraIn)) throw invalid('request.userInfo.extra must be an object');
  const extra: Record<string, string[]> = {};
  for (const [k, v] of Object.entries(extraIn)) {
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw invalid('request.userInfo.extra values must be lists of strings');
    extra[k] = v as string[];
  }
  const userUid = str(ui, 'uid', 'request.userInfo');
  const dryRun = r['dryRun'] ?? false;
  if (typeof dryRun !== 'boolean') throw invalid('request.dryRun must be a boolean');
  const object = r['object'] ?? null;
  const oldObject = r['oldObject'] ?? null;
  if (object !== null && !isRecord(object)) throw invalid('request.object must be an object or null');
  if (oldObject !== null && !isRecord(oldObject)) throw invalid('request.oldObject must be an object or null');
  const req: AdmissionRequest = {
    uid,
    kind: gvk(r['kind'], 'request.kind', 'kind', true) as AdmissionRequest['kind'],
    resource: gvk(r['resource'], 'request.resource', 'resource', true) as AdmissionRequest['resource'],
    subResource: str(r, 'subResource', 'request'),
    name: str(r, 'name', 'request', { max: 253 }),
    namespace: str(r, 'namespace', 'request', { max: 63 }),
    operation: operation as AdmissionOperation,
    userInfo: { username: str(ui, 'username', 'request.userInfo'), ...(userUid ? { uid: userUid } : {}), groups: groups as string[], extra },
    object,
    oldObject,
    dryRun,
    options: r['options'] ?? null,
  };
  const rk = gvk(r['requestKind'], 'request.requestKind', 'kind', false);
  if (rk) req.requestKind = rk as AdmissionRequest['kind'];
  const rr = gvk(r['requestResource'], 'request.requestResource', 'resource', false);
  if (rr) req.requestResource = rr as AdmissionRequest['resource'];
  const rs = str(r, 'requestSubResource', 'request');
  if (rs) req.requestSubResource = rs;
  // Pointers from the review root: keep those inside the request, relative to it (`/object/...`).
  const inRequest = rawNumbers.filter((p) => p.startsWith('/request/')).map((p) => p.slice('/request'.length));
  if (inRequest.length > 0) req.rawNumbers = inRequest;
  if (operation !== 'DELETE' && operation !== 'CONNECT' && object === null) throw invalid(`request.object is required for ${operation}`);
  return req;
}

/** Serialises a response as an AdmissionReview (patch base64-encoded with patchType JSONPatch, or neither). */
export function encodeResponse(res: AdmissionResponse): string {
  const out: Record<string, unknown> = { uid: res.uid, allowed: res.allowed };
  if (res.status) out['status'] = res.status;
  if (res.warnings && res.warnings.length > 0) out['warnings'] = res.warnings;
  if (res.auditAnnotations && Object.keys(res.auditAnnotations).length > 0) out['auditAnnotations'] = res.auditAnnotations;
  if (res.patch && res.patch.length > 0) {
    out['patchType'] = 'JSONPatch';
    out['patch'] = Buffer.from(JSON.stringify(res.patch)).toString('base64');
  }
  return JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: out });
}

/**
 * Parses the `timeout` query parameter the API server sends (a Go duration
 * such as `10s`, `500ms`, `1m30s`); undefined when absent or malformed.
 */
export function parseGoDuration(s: string | null | undefined): number | undefined {
  if (!s) return undefined;
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/gy;
  const unit: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let total = 0;
  let pos = 0;
  re.lastIndex = 0;
  for (let m = re.exec(s); m !== null; m = re.exec(s)) {
    total += Number(m[1]) * (unit[m[2] as string] as number);
    pos = re.lastIndex;
  }
  if (pos !== s.length || pos === 0 || !Number.isFinite(total)) return undefined;
  return total;
}
