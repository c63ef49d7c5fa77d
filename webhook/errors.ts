/**
 * Errors of the admission webhook. Every rejected HTTP request maps to one of
 * these codes and its status; the message is written for the API server
 * operator (it never echoes request content or internal error text).
 */
import { KubetrailError } from '../core/errors.ts';

/** Codes of admission webhook errors. */
export type AdmissionErrorCode =
  /** Neither /validate nor /mutate. */
  | 'ADM_ERR_NOT_FOUND'
  /** Not POST. */
  | 'ADM_ERR_METHOD'
  /** Not application/json. */
  | 'ADM_ERR_CONTENT_TYPE'
  /** Body larger than webhook.maxBodyBytes. */
  | 'ADM_ERR_TOO_LARGE'
  /** Body is not JSON (or not UTF-8 JSON). */
  | 'ADM_ERR_INVALID_JSON'
  /** JSON, but not an admission.k8s.io/v1 AdmissionReview with a valid request. */
  | 'ADM_ERR_INVALID_REVIEW'
  /** The body could not be read (client went away, socket error). */
  | 'ADM_ERR_READ';

/** A request the webhook refuses before it is a review. */
export class AdmissionError extends KubetrailError<AdmissionErrorCode> {
  constructor(code: AdmissionErrorCode, message: string, options: { status?: number; cause?: unknown } = {}) {
    super(code, message, { status: options.status ?? STATUS[code], cause: options.cause });
  }
}

const STATUS: Record<AdmissionErrorCode, number> = {
  ADM_ERR_NOT_FOUND: 404,
  // The issue asks for 400 on every malformed request, method and content type included (405/415 would also be defensible).
  ADM_ERR_METHOD: 400,
  ADM_ERR_CONTENT_TYPE: 400,
  ADM_ERR_TOO_LARGE: 413,
  ADM_ERR_INVALID_JSON: 400,
  ADM_ERR_INVALID_REVIEW: 400,
  ADM_ERR_READ: 400,
};
