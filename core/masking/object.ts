/**
 * Masking of captured Kubernetes objects before they go into events. Pure:
 * never mutates its input, so what the API server admits is never affected
 * (masking happens in events only). The result shares every unchanged
 * subtree with the input (copy on write: most of a Pod has nothing to mask,
 * and copying 15 KiB of it for every review cost more than the masking).
 *
 * What is masked:
 * - Secret (`v1` `Secret`): every value of `data` and `stringData` (the keys stay,
 *   so an event still says which keys changed).
 * - `env` entries anywhere in the object (Pods, every workload's pod template,
 *   CronJob job templates, init and ephemeral containers, and CRDs that embed
 *   containers): the `value` of every entry whose `name` matches one of the
 *   configured patterns (case-insensitive regexes, config.masking.envNamePatterns).
 * - Configured JSON paths (config.masking.paths): dotted, `*` for any key or
 *   index, e.g. `spec.template.spec.containers.*.args`; the whole value at the
 *   path is replaced, whatever its type.
 * - The `kubectl.kubernetes.io/last-applied-configuration` annotation holds a
 *   full copy of the applied object (a Secret's data in clear): it is parsed
 *   and masked by the same rules, or replaced whole when it is not JSON.
 * - Secret-shaped substrings of any string value (a JWT in a ConfigMap, an AWS
 *   key in a container arg or an exec command), when the caller passes value
 *   patterns (the patterns of the MaskingPolicy documents that apply to the
 *   request): each match becomes `[masked:<pattern name>]`, as in recorded
 *   sessions. Keys are never rewritten.
 * - Credentials, whatever the configuration (credentials.ts): the tokens of
 *   `authentication.k8s.io` objects (TokenReview, TokenRequest), kubeconfigs
 *   with credentials in any string, ConfigMap binaryData holding one, and
 *   JWT, base64-JWT, PEM private key and `Bearer` token shapes anywhere.
 *
 * Mask format: the string `***MASKED***`. With a `correlationKey`, it is
 * `***MASKED:<16 hex of HMAC-SHA256(key, value)>***` instead, so equal values
 * can be correlated across events without being revealed. A bare SHA-256 is
 * deliberately not offered: passwords are low-entropy and an unkeyed hash of
 * them can be reversed by guessing.
 */
import { createHmac } from 'node:crypto';
import { maskCredentialFields, maskCredentialText, type KindHint, type MaskFn } from './credentials.ts';
import { buildCanonicalView, type ViewHook } from '../chain/canonical.ts';

/** The mask that replaces a value when no correlation key is set. */
export const MASK = '***MASKED***';

/** The annotation kubectl apply writes, holding the whole applied object. */
export const LAST_APPLIED_ANNOTATION = 'kubectl.kubernetes.io/last-applied-configuration';

/** Compiled masking rules. Build once with {@link compileObjectMasking}. */
export interface ObjectMasking {
  readonly envName: RegExp | undefined;
  readonly paths: readonly (readonly string[])[];
  readonly correlationKey: Uint8Array | undefined;
}

/** Options of {@link compileObjectMasking}. */
export interface ObjectMaskingOptions {
  /** Env var names whose values are masked (case-insensitive regexes; any match). */
  envNamePatterns?: readonly string[];
  /** Extra JSON paths: dotted, `*` for any key or index, `\.` for a dot inside a key. */
  paths?: readonly string[];
  /** When set, masks carry a keyed hash so equal values correlate. */
  correlationKey?: Uint8Array;
}

/** Splits `a.b\.c.*` into `['a', 'b.c', '*']`. */
export function splitMaskPath(p: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < p.length; i++) {
    const ch = p[i] as string;
    if (ch === '\\' && p[i + 1] === '.') {
      cur += '.';
      i++;
    } else if (ch === '.') {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out;
}

/**
 * Compiles masking rules. Throws TypeError on an invalid regex or an empty
 * path segment (config is validated at start, so this is a programming error
 * or a bad config value caught before anything listens).
 */
export function compileObjectMasking(opts: ObjectMaskingOptions = {}): ObjectMasking {
  const pats = opts.envNamePatterns ?? [];
  let envName: RegExp | undefined;
  if (pats.length > 0) {
    try {
      envName = new RegExp(pats.map((p) => `(?:${p})`).join('|'), 'i');
    } catch (err) {
      throw new TypeError(`masking.envNamePatterns: not a valid regex: ${(err as Error).message}`);
    }
  }
  const paths = (opts.paths ?? []).map((p) => {
    const segs = splitMaskPath(p);
    if (segs.some((s) => s === '')) throw new TypeError(`masking.paths: empty segment in "${p}"`);
    return segs;
  });
  return { envName, paths, correlationKey: opts.correlationKey };
}

function maskValue(m: ObjectMasking, v: unknown): string {
  if (m.correlationKey === undefined) return MASK;
  const text = typeof v === 'string' ? v : JSON.stringify(v) ?? '';
  return `***MASKED:${createHmac('sha256', m.correlationKey).update(text).digest('hex').slice(0, 16)}***`;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** A secret-shaped substring to mask in string values (a global regex), as MaskingPolicy patterns are. */
export interface ValuePattern {
  readonly name: string;
  readonly regex: RegExp;
}

const maskConstant: MaskFn = () => MASK;

/** The whole-value mask of `m` as a function (a constant one without a correlation key: no closure per string). */
function maskFnOf(m: ObjectMasking): MaskFn {
  return m.correlationKey === undefined ? maskConstant : (v) => maskValue(m, v);
}

/** A string value masked: its built-in credentials (credentials.ts, always), then `patterns`. */
function maskText(m: ObjectMasking, s: string, patterns: readonly ValuePattern[]): string {
  const out = maskCredentialText(s, maskFnOf(m));
  return patterns.length > 0 ? maskString(out, patterns) : out;
}

/** Replaces every match of `patterns` in `s` by `[masked:<name>]`. */
function maskString(s: string, patterns: readonly ValuePattern[]): string {
  let out = s;
  for (const p of patterns) {
    p.regex.lastIndex = 0;
    if (p.regex.test(out)) {
      p.regex.lastIndex = 0;
      out = out.replace(p.regex, `[masked:${p.name}]`);
    }
    p.regex.lastIndex = 0;
  }
  return out;
}

/**
 * Masks `env[].value` by name (and secret-shaped substrings) in `v`, copying
 * only what changes: a subtree with nothing to mask is returned as it is (the
 * same reference), so the result shares every unchanged part with the input.
 * The input is never written to.
 */
function maskShared(m: ObjectMasking, v: unknown, key: string | undefined, patterns: readonly ValuePattern[]): unknown {
  if (typeof v === 'string') return maskText(m, v, patterns);
  if (v === null || typeof v !== 'object') return v;
  if (Array.isArray(v)) {
    const isEnv = key === 'env' && m.envName !== undefined;
    let out: unknown[] | undefined;
    for (let i = 0; i < v.length; i++) {
      const e: unknown = v[i];
      // Scalars other than strings never change: skip the call.
      if (e === null || (typeof e !== 'object' && typeof e !== 'string')) {
        if (out !== undefined) out.push(e);
        continue;
      }
      let r: unknown;
      if (isEnv && isRecord(e) && typeof e['name'] === 'string' && 'value' in e && m.envName!.test(e['name'])) {
        const inner = maskShared(m, e, undefined, patterns) as Record<string, unknown>;
        r = inner === e ? { ...e } : inner;
        (r as Record<string, unknown>)['value'] = maskValue(m, e['value']);
      } else r = maskShared(m, e, undefined, patterns);
      if (r !== e && out === undefined) out = v.slice(0, i);
      if (out !== undefined) out.push(r);
    }
    return out ?? v;
  }
  let out: Record<string, unknown> | undefined;
  const o = v as Record<string, unknown>;
  for (const k in o) {
    if (!Object.hasOwn(o, k)) continue;
    const e = o[k];
    // Scalars other than strings never change: skip the call.
    if (e === null || (typeof e !== 'object' && typeof e !== 'string')) continue;
    const r = maskShared(m, e, k, patterns);
    if (r !== e) {
      out ??= { ...o };
      out[k] = r;
    }
  }
  return out ?? v;
}

/**
 * The masking of {@link maskShared} as a hook of core/chain's
 * buildCanonicalView, which builds the result sorted and checks it: the
 * canonical serialization of the event then does not walk the masked object
 * again (it was ~10 µs of a 15 KiB Pod's 60 µs of masking + canonical JSON),
 * and nothing here can mark as canonical what is not. Same masking as
 * maskShared: strings by {@link maskText}, env entries by name.
 */
function viewHook(m: ObjectMasking, patterns: readonly ValuePattern[]): ViewHook {
  return (v, key, element) => {
    if (typeof v === 'string') return maskText(m, v, patterns);
    if (element && key === 'env' && m.envName !== undefined && isRecord(v) && typeof v['name'] === 'string' && 'value' in v && m.envName.test(v['name'])) {
      return { ...v, value: maskValue(m, v['value']) };
    }
    return v;
  };
}

/** Returns `node` with every value at `segs` masked, copying only the containers on the way (copy on write). */
function maskPath(m: ObjectMasking, node: unknown, segs: readonly string[], i: number): unknown {
  if (node === null || typeof node !== 'object') return node;
  const seg = segs[i] as string;
  const last = i === segs.length - 1;
  const keys = seg === '*' ? (Array.isArray(node) ? node.map((_, j) => String(j)) : Object.keys(node)) : [seg];
  let out: Record<string, unknown> | unknown[] | undefined;
  for (const k of keys) {
    const container = node as Record<string, unknown>;
    if (!Object.hasOwn(container, k)) continue;
    const r = last ? maskValue(m, container[k]) : maskPath(m, container[k], segs, i + 1);
    if (r === container[k]) continue;
    out ??= Array.isArray(node) ? node.slice() : { ...container };
    (out as Record<string, unknown>)[k] = r;
  }
  return out ?? node;
}

function isSecret(o: Record<string, unknown>): boolean {
  return o['kind'] === 'Secret' && (o['apiVersion'] === 'v1' || o['apiVersion'] === undefined);
}

/**
 * Returns `obj` masked (any JSON value; non-objects are returned as they
 * are, strings masked by `patterns`). Never mutates `obj`: what changes is
 * copied, what does not is shared with `obj` (the result may be `obj` itself
 * when nothing is masked), so treat the result as read-only.
 * `patterns`: secret-shaped substrings to mask in every string value.
 * `canonicalView`: for an object that goes into an event as it is (the
 * webhook's captured objects): the result is built by core/chain's
 * buildCanonicalView, keys sorted and checked there, so sealing does not
 * walk it again (same masking, same canonical JSON; only its in-memory key
 * order differs). `kind`: the request's group and kind, for objects sent
 * without apiVersion/kind (credential rules go by kind).
 */
export function maskObject(m: ObjectMasking, obj: unknown, patterns: readonly ValuePattern[] = [], opts: { canonicalView?: boolean; kind?: KindHint } = {}): unknown {
  if (!isRecord(obj)) return maskShared(m, obj, undefined, patterns);
  // A view (built and checked by core/chain, trusted by canonicalJson) is never written to: what changes after the
  // walk is copied, and the copy is an ordinary value canonicalJson checks (sharing the view's members).
  const walked = opts.canonicalView === true ? (buildCanonicalView(obj, viewHook(m, patterns))?.value as Record<string, unknown> | undefined) : undefined;
  let out = walked ?? (maskShared(m, obj, undefined, patterns) as Record<string, unknown>);
  const own = (): Record<string, unknown> => (out === obj || out === walked ? (out = { ...out }) : out);
  if (isSecret(out)) {
    for (const field of ['data', 'stringData']) {
      const d = out[field];
      if (isRecord(d)) {
        const masked: Record<string, unknown> = {};
        for (const k of Object.keys(d)) masked[k] = maskValue(m, d[k]);
        own()[field] = masked;
      } else if (d !== undefined && d !== null) own()[field] = maskValue(m, d);
    }
  }
  out = maskCredentialFields(out, maskFnOf(m), opts.kind);
  for (const segs of m.paths) out = maskPath(m, out, segs, 0) as Record<string, unknown>;
  const md = out['metadata'];
  if (isRecord(md) && isRecord(md['annotations']) && typeof md['annotations'][LAST_APPLIED_ANNOTATION] === 'string') {
    const raw = md['annotations'][LAST_APPLIED_ANNOTATION];
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch {
      parsed = undefined;
    }
    // Recursion depth is one: the copy inside the annotation has no annotation of its own (kubectl strips it).
    const value = isRecord(parsed) ? JSON.stringify(maskObject(m, parsed, patterns)) : maskValue(m, raw);
    if (value !== raw) own()['metadata'] = { ...md, annotations: { ...md['annotations'], [LAST_APPLIED_ANNOTATION]: value } };
  }
  return out;
}
