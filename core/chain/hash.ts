/**
 * The hash-chain link of an event: `chain.hash` is the lowercase hex SHA-256
 * of the canonical serialization (canonical.ts) of the whole event with
 * `chain.hash` set to the empty string; `chain.prev` is the hash of the
 * previous event of the same source (component + instance), 64 zeros for the
 * first; `chain.seq` counts from 1.
 */
import { hash } from 'node:crypto';
import type { ChainLink, KubetrailEvent } from '../events/model.ts';
import { canonicalJson } from './canonical.ts';

/** `prev` of the first event of a chain. */
export const GENESIS_HASH = '0'.repeat(64);

/** The event with its link filled in, and its canonical serialization (what is stored and sent as native JSON). */
export interface SealedEvent {
  readonly event: KubetrailEvent;
  /** Canonical JSON of `event`, hash included; no trailing newline. */
  readonly line: string;
}

/** SHA-256 hex of a string's UTF-8 bytes. */
export function sha256Hex(s: string): string {
  // One-shot crypto.hash: no Hash object per event (Node >= 21.7).
  return hash('sha256', s, 'hex');
}

// Top-level members after "chain" in sorted order are correlation, id, source,
// target, time, type: none of them holds a nested object with a "chain"
// member, and inside JSON strings every `"` is escaped, so the LAST occurrence
// of this marker is always the top-level chain member.
const MARKER = '"chain":{"hash":""';

/**
 * Fills `event.chain` with {seq, prev, hash} and returns the event and its
 * canonical line. One canonical serialization and one SHA-256 per event.
 */
export function seal(event: Omit<KubetrailEvent, 'chain'>, seq: number, prev: string): SealedEvent {
  const chain: ChainLink = { hash: '', prev, seq };
  // A spread keeps an existing `chain` member (the sealer reserves it) in its place.
  const full = { ...event, chain } as KubetrailEvent;
  const unsealed = canonicalJson(full);
  const digest = sha256Hex(unsealed);
  const at = unsealed.lastIndexOf(MARKER) + MARKER.length - 1;
  chain.hash = digest;
  return { event: full, line: unsealed.slice(0, at) + digest + unsealed.slice(at) };
}

/** Recomputes the hash an event should carry (verify's side of {@link seal}). */
export function computeHash(event: KubetrailEvent): string {
  const c = event.chain;
  if (c === undefined) throw new TypeError('event has no chain link');
  return sha256Hex(canonicalJson({ ...event, chain: { ...c, hash: '' } }));
}
