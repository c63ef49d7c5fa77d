/**
 * Built-in secret patterns for inline stream masking. Each pattern names the
 * literal(s) every match starts with and the characters a match is made of, so
 * the stream masker can tell when the tail of a frame might be the beginning
 * of a secret that the next frame completes (and hold just that tail back).
 * All patterns are ASCII: the masker runs them over bytes read as latin1.
 */

/** A secret pattern. */
export interface MaskPattern {
  readonly name: string;
  /** Global regex over latin1 text; every match is replaced. */
  readonly regex: RegExp;
  /** Literals every match starts with; empty: no hold-back (masked within one frame only). */
  readonly starts: readonly string[];
  /** A character that may continue a match still being received. */
  readonly chars: RegExp;
  /** The longest match; bounds the hold-back. */
  readonly maxLength: number;
  /**
   * A secret that is a region, not a token: from a match of `open` everything
   * is masked until a match of `close` or the end of the stream (a key shown
   * by `head key.pem` has no END line).
   */
  readonly block?: { readonly open: RegExp; readonly close: RegExp };
}

/** Built-in patterns, by the name a MaskingPolicy uses to enable them. */
export const BUILTIN_PATTERNS: Readonly<Record<string, MaskPattern>> = Object.freeze({
  // AWS access key ids: a four-letter kind prefix and 16 upper-case alphanumerics.
  'aws-access-key': {
    name: 'aws-access-key',
    regex: /(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}(?![A-Z0-9])/g,
    starts: ['AKIA', 'ASIA', 'AGPA', 'AIDA', 'AROA', 'ANPA', 'ANVA', 'AIPA'],
    chars: /[A-Z0-9]/,
    maxLength: 20,
  },
  // The secret half is 40 base64 characters; without context it is indistinguishable
  // from any other base64, so it is recognised by the key name in front of it.
  'aws-secret-key': {
    name: 'aws-secret-key',
    regex: /aws_secret_access_key["']?\s*[:=]\s*["']?[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])/g,
    starts: ['aws_secret_access_key'],
    chars: /[A-Za-z0-9/+_"':= \t]/,
    maxLength: 80,
  },
  // A JWT (JWS compact form): base64url header and payload, both JSON objects ("eyJ" = '{"').
  jwt: {
    name: 'jwt',
    regex: /eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}/g,
    starts: ['eyJ'],
    chars: /[A-Za-z0-9_.-]/,
    maxLength: 16 * 1024,
  },
  // A ServiceAccount token as a Secret's data shows it (`kubectl get secret -o yaml`):
  // the JWT base64-encoded once more, so it starts with base64("eyJ") = "ZXlK".
  'k8s-sa-token': {
    name: 'k8s-sa-token',
    regex: /ZXlK[A-Za-z0-9+/]{60,}={0,2}/g,
    starts: ['ZXlK'],
    chars: /[A-Za-z0-9+/=]/,
    maxLength: 16 * 1024,
  },
  // PEM private keys of any algorithm (RSA, EC, OPENSSH, ENCRYPTED, plain PKCS#8).
  'pem-private-key': {
    name: 'pem-private-key',
    regex: /-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----[\s\S]*?-----END \1PRIVATE KEY-----/g,
    starts: ['-----BEGIN'],
    chars: /[\sA-Za-z0-9+/=:,.\-]/,
    maxLength: 16 * 1024,
    block: { open: /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/, close: /-----END [A-Z0-9 ]*PRIVATE KEY-----/ },
  },
});

/** Names of the built-in patterns. */
export const BUILTIN_PATTERN_NAMES: readonly string[] = Object.keys(BUILTIN_PATTERNS);
