/**
 * Credentials masked in every captured object whatever the configuration:
 * these rules cannot be turned off, because a credential in an event lets
 * anyone who reads the topic act as its owner (issue 13 item 1: the
 * gateway's TokenReviews put every caller's bearer token on the topic).
 *
 * By kind (see {@link maskCredentialFields}):
 * - every object of the `authentication.k8s.io` group: `spec.token`
 *   (TokenReview: the token being checked) and `status.token` (TokenRequest,
 *   the `serviceaccounts/token` subresource: the token issued);
 * - a ConfigMap's `binaryData` value whose decoded bytes hold a credential
 *   (a kubeconfig, a JWT, a private key) is masked whole.
 * (Secret `data`/`stringData` of every type are masked whole by object.ts.)
 *
 * In every string value (see {@link maskCredentialText}):
 * - a kubeconfig with credentials (a `users:` section and a `token`,
 *   `client-key-data`, `password`, `auth-provider`, `exec`, ... key): the
 *   whole string, since its YAML cannot be rewritten faithfully and every
 *   part of a user entry may be secret (exec env, auth-provider config);
 *   likewise a Docker config with registry credentials (`"auths"` and an
 *   `auth`, `password`, `identitytoken` or `registrytoken` member);
 * - the secret of an AWS credentials file (`aws_secret_access_key = ...`);
 * - a JWT (ServiceAccount and OIDC tokens), a base64-encoded JWT, a PEM
 *   private key (to its END line, or to the end of the string when it has
 *   none), the token after `Bearer `: the match only, as
 *   `[masked:<name>]` like MaskingPolicy patterns.
 * Static tokens with no recognisable shape (a token file's random hex) are
 * caught only where they sit in a known field: TokenReview, a kubeconfig,
 * an `Authorization: Bearer` header, a Secret.
 */

/** Replaces a whole value by the mask (object.ts's maskValue: MASK, or a keyed hash). */
export type MaskFn = (v: unknown) => string;

/** Group/kind of the object when it carries no apiVersion/kind of its own (the AdmissionRequest's `kind`). */
export interface KindHint {
  group: string;
  kind: string;
}

const JWT = /eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}/g;
// A JWT base64-encoded once more (a Secret's data shown by kubectl), base64("eyJ") = "ZXlK".
const B64_JWT = /ZXlK[A-Za-z0-9+/]{60,}={0,2}/g;
// Open-ended: a key cut short (`head key.pem`) is masked to the end of the string.
const PEM_KEY = /-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----[\s\S]*?(?:-----END \1PRIVATE KEY-----|$)/g;
const BEARER = /\b(bearer)(\s+)[A-Za-z0-9._~+/-]{8,}=*/gi;
// A literal every credential shape contains (the `Bearer` word in any case).
const ANY_LITERAL = /eyJ|ZXlK|PRIVATE KEY|users|auths|aws_secret_access_key|[bB][eE][aA][rR][eE][rR]/;
// A Docker config (`~/.docker/config.json`, the content of a dockerconfigjson Secret) with registry credentials.
const DOCKER_AUTHS = /"auths"\s*:/;
const DOCKER_CREDENTIAL = /"(?:auth|password|identitytoken|registrytoken)"\s*:/;
// An AWS shared credentials file's secret (the value only; the key id is not a secret on its own).
const AWS_SECRET = /(aws_secret_access_key["']?\s*[:=]\s*["']?)[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])/g;
const BEARER_WORD = /bearer/i;
const KUBECONFIG_USERS = /(?:^|[\s{,"'])users["']?\s*:/;
const KUBECONFIG_CREDENTIAL = /(?:^|[\s{,"'-])["']?(?:token|tokenFile|token-file|client-key-data|client-key|password|auth-provider|exec|id-token|refresh-token|client-secret|access-token)["']?\s*:/;

/** True when `s` looks like a kubeconfig that carries credentials (YAML or JSON). */
function isKubeconfigWithCredentials(s: string): boolean {
  return s.includes('users') && KUBECONFIG_USERS.test(s) && KUBECONFIG_CREDENTIAL.test(s);
}

/** True when `s` holds something {@link maskCredentialText} would mask. */
function holdsCredential(s: string): boolean {
  return maskCredentialText(s, () => '') !== s;
}

/**
 * `s` with its credentials masked (see the module comment); `s` itself when
 * there is none. Strings shorter than any credential, and strings without
 * one of the literals every credential shape contains, cost one length
 * check and a few substring searches: this runs over every string of every
 * captured object.
 */
export function maskCredentialText(s: string, mask: MaskFn): string {
  // One regex test rejects almost every string (3x faster than a search per literal: 35 against 90 µs for the 247
  // long strings of a 14 KiB Pod, on the shared 2-core test machine); the literals are told apart only on a hit.
  if (s.length < 16 || !ANY_LITERAL.test(s)) return s;
  const jwt = s.includes('eyJ');
  const b64 = s.includes('ZXlK');
  const pem = s.includes('PRIVATE KEY');
  const bearer = BEARER_WORD.test(s);
  const kubeconfig = s.includes('users');
  if (kubeconfig && isKubeconfigWithCredentials(s)) return mask(s);
  if (s.includes('auths') && DOCKER_AUTHS.test(s) && DOCKER_CREDENTIAL.test(s)) return mask(s);
  let out = s;
  if (pem) out = out.replace(PEM_KEY, '[masked:pem-private-key]');
  if (jwt) out = out.replace(JWT, '[masked:jwt]');
  if (b64) out = out.replace(B64_JWT, '[masked:k8s-sa-token]');
  if (bearer) out = out.replace(BEARER, '$1$2[masked:bearer-token]');
  if (s.includes('aws_secret_access_key')) out = out.replace(AWS_SECRET, '$1[masked:aws-secret-key]');
  return out;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function groupOf(obj: Record<string, unknown>, hint: KindHint | undefined): { group: string; kind: unknown } {
  const av = obj['apiVersion'];
  if (typeof av === 'string') {
    const slash = av.indexOf('/');
    return { group: slash < 0 ? '' : av.slice(0, slash), kind: obj['kind'] };
  }
  return { group: hint?.group ?? '', kind: obj['kind'] ?? hint?.kind };
}

/** `obj` with `field.token` masked when present (copying what changes). */
function maskToken(obj: Record<string, unknown>, field: string, mask: MaskFn): Record<string, unknown> {
  const sub = obj[field];
  if (!isRecord(sub) || sub['token'] === undefined || sub['token'] === null || sub['token'] === '') return obj;
  return { ...obj, [field]: { ...sub, token: mask(sub['token']) } };
}

/**
 * The kind-specific rules (see the module comment) on a top-level captured
 * object, copying only what changes: `obj` itself when nothing is masked.
 * The copies it makes are plain objects whose key order is kept, so a
 * canonical view stays one only when nothing changes (object.ts marks it
 * after this).
 */
export function maskCredentialFields(obj: Record<string, unknown>, mask: MaskFn, hint?: KindHint): Record<string, unknown> {
  const { group, kind } = groupOf(obj, hint);
  let out = obj;
  if (group === 'authentication.k8s.io') {
    out = maskToken(out, 'spec', mask);
    out = maskToken(out, 'status', mask);
  } else if (group === '' && kind === 'ConfigMap' && isRecord(out['binaryData'])) {
    const bin = out['binaryData'];
    let copy: Record<string, unknown> | undefined;
    for (const k of Object.keys(bin)) {
      const v = bin[k];
      if (typeof v !== 'string') continue;
      if (holdsCredential(Buffer.from(v, 'base64').toString('latin1'))) (copy ??= { ...bin })[k] = mask(v);
    }
    if (copy !== undefined) out = { ...out, binaryData: copy };
  }
  return out;
}
