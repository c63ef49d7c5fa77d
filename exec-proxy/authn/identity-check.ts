/**
 * What an identity must be for the gateway to forward it faithfully as
 * `Impersonate-*` header values (issue 13 item 9). Checked by every
 * authenticator before it caches an identity, so a token whose claims (or
 * whose TokenReview answer) cannot be sent as is fails authentication (401)
 * instead of reaching the header writer (a 500) or the wire:
 *
 * - no control characters (C0, DEL, C1), tab included: a header value cannot
 *   carry CR/LF/NUL, and the others end up in events and terminals;
 * - no leading or trailing space: Go's net/http trims them from header
 *   values, so the API server would act as `admin` for a token whose `sub`
 *   is `admin `, while the gateway recorded someone else;
 * - well-formed Unicode (no lone surrogates, which UTF-8 cannot carry);
 * - bounded sizes, so a token cannot make the upstream request too large
 *   for the API server (Go's default limit on all headers is 1 MiB).
 */
import type { Identity } from '../../core/identity.ts';
import { AuthError } from '../errors.ts';

/** Size limits of one identity (one literal, so they are documented in one place). */
const IDENTITY_LIMITS = Object.freeze({
  /** UTF-8 bytes of the username, uid, one group, one extra key or value. */
  maxValueBytes: 4096,
  /** Groups of one identity. */
  maxGroups: 1000,
  /** Values of all extra keys together. */
  maxExtraValues: 1000,
});

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

function checkValue(v: string, what: string): void {
  if (CONTROL.test(v)) throw new AuthError('AUTH_ERR_USER_VALIDATION', `${what} contains a control character`);
  if (v.startsWith(' ') || v.endsWith(' ')) throw new AuthError('AUTH_ERR_USER_VALIDATION', `${what} has leading or trailing space`);
  if (!v.isWellFormed()) throw new AuthError('AUTH_ERR_USER_VALIDATION', `${what} is not well-formed Unicode`);
  if (Buffer.byteLength(v, 'utf8') > IDENTITY_LIMITS.maxValueBytes) throw new AuthError('AUTH_ERR_USER_VALIDATION', `${what} is longer than ${IDENTITY_LIMITS.maxValueBytes} bytes`);
}

/** Throws AUTH_ERR_USER_VALIDATION (401) unless every value of `id` can be forwarded as is. Messages name the field, never the value. */
export function checkIdentity(id: Identity): void {
  checkValue(id.username, 'username');
  if (id.uid !== undefined) checkValue(id.uid, 'uid');
  if (id.groups.length > IDENTITY_LIMITS.maxGroups) throw new AuthError('AUTH_ERR_USER_VALIDATION', `more than ${IDENTITY_LIMITS.maxGroups} groups`);
  for (const g of id.groups) checkValue(g, 'a group');
  let extraValues = 0;
  for (const [k, values] of Object.entries(id.extra ?? {})) {
    checkValue(k, 'an extra key');
    extraValues += values.length;
    if (extraValues > IDENTITY_LIMITS.maxExtraValues) throw new AuthError('AUTH_ERR_USER_VALIDATION', `more than ${IDENTITY_LIMITS.maxExtraValues} extra values`);
    for (const v of values) checkValue(v, 'an extra value');
  }
}
