/**
 * Who a caller is, once authenticated. The gateway produces it (OIDC JWT or
 * TokenReview), forwards it as Impersonate-* headers, and stamps it on every
 * event as the `actor`; it is the same shape as the event model's Actor.
 */
import type { Actor } from './events/model.ts';

/** An authenticated caller. */
export type Identity = Actor;
