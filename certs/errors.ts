/**
 * Errors of the certificate area (`kubetrail certs`, rotation). One base with
 * a literal-union code, like every other area (see core/errors.ts).
 */
import { KubetrailError } from '../core/errors.ts';

/** Codes of certificate errors. */
export type CertErrorCode =
  /** Bad command-line input or options (missing --out, no SANs, bad IP, bad number). */
  | 'CERT_ERR_ARGS'
  /** The output directory holds material that does not fit together (a CA without its key, a key that is not the CA's). */
  | 'CERT_ERR_STATE'
  /** A file could not be read or written. */
  | 'CERT_ERR_IO';

/** A certificate operation failed; nothing on disk was changed unless the code is CERT_ERR_IO. */
export class CertError extends KubetrailError<CertErrorCode> {
  constructor(code: CertErrorCode, message: string, options: { cause?: unknown } = {}) {
    super(code, message, { status: code === 'CERT_ERR_ARGS' ? 400 : 500, ...options });
  }
}
