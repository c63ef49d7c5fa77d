/**
 * What an approval is bound to: the SHA-256 of the canonical RAW object of a
 * write (not the masked one: masking maps two different secret values to the
 * same text, so an approval of one would admit the other), less the fields the
 * API server or kubetrail set differently on every attempt of the same change
 * (uid, resourceVersion, creationTimestamp, managedFields, kubetrail's stamp),
 * so a retry of the very same change hashes the same and any other change
 * does not. The match key adds who asked and what operation on what target.
 */
import { createHash } from 'node:crypto';
import { canonicalJson } from '../chain/canonical.ts';
import type { ApprovalRequester, ApprovalTargetRequest } from './types.ts';

/** metadata fields that differ between two attempts of the same write. */
const VOLATILE_METADATA = ['uid', 'resourceVersion', 'creationTimestamp', 'generation', 'managedFields', 'selfLink'] as const;

function sha256(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

/**
 * SHA-256 (hex) of `object` as the approval sees it. `stampAnnotations` are
 * the annotation keys kubetrail's mutating webhook writes (a new event id on
 * every attempt). A generated name (metadata.generateName) is left out too: the
 * API server picks a new one for each attempt.
 */
export function approvalBodySha256(object: unknown, stampAnnotations: readonly string[]): string {
  if (object === null || typeof object !== 'object' || Array.isArray(object)) return sha256(canonicalJson(object ?? null));
  const o = { ...(object as Record<string, unknown>) };
  const md = o['metadata'];
  if (md !== null && typeof md === 'object' && !Array.isArray(md)) {
    const m = { ...(md as Record<string, unknown>) };
    for (const k of VOLATILE_METADATA) delete m[k];
    if (typeof m['generateName'] === 'string' && m['generateName'] !== '') delete m['name'];
    const ann = m['annotations'];
    if (ann !== null && typeof ann === 'object' && !Array.isArray(ann)) {
      const a = { ...(ann as Record<string, unknown>) };
      for (const k of stampAnnotations) delete a[k];
      if (Object.keys(a).length === 0) delete m['annotations'];
      else m['annotations'] = a;
    }
    o['metadata'] = m;
  }
  return sha256(canonicalJson(o));
}

/** The match key (hex SHA-256): requester (username + uid) + operation + target + body hash. */
export function approvalMatchKey(requester: ApprovalRequester, r: ApprovalTargetRequest): string {
  return sha256(
    canonicalJson({
      user: requester.username,
      uid: requester.uid ?? '',
      kind: r.kind,
      verb: r.verb,
      group: r.apiGroup,
      resource: r.resource,
      subresource: r.subresource ?? '',
      namespace: r.namespace ?? '',
      name: r.name ?? '',
      body: r.bodySha256 ?? '',
      pod: r.pod ?? '',
      container: r.container ?? '',
      command: r.command ?? [],
      line: r.line ?? '',
    }),
  );
}

/** The label value for a match key (label values hold at most 63 characters). */
export function matchLabelValue(key: string): string {
  return key.slice(0, 63);
}
