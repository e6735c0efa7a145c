import type { FastifyError } from 'fastify';
import { FieldlinkError, type ErrorCode } from '../../common/errors.js';

/** The error body of every companion response: a registry code, a sentence, and optional details. */
export interface Problem {
  code: ErrorCode;
  message: string;
  details?: Record<string, unknown>;
}

export const problemSchema = {
  $id: 'Problem',
  type: 'object',
  description: 'Error body; `code` is listed in docs/errors.md',
  required: ['code', 'message'],
  properties: {
    code: { type: 'string' },
    message: { type: 'string' },
    details: { type: 'object', additionalProperties: true },
  },
} as const;

const problemRef = { $ref: 'Problem#' } as const;

/** Response schemas for the errors any authenticated route can give. */
export const authProblems = { 400: problemRef, 401: problemRef, 403: problemRef, 429: problemRef, 500: problemRef } as const;

const statusByCode: Partial<Record<ErrorCode, number>> = {
  REQUEST_INVALID: 400,
  CONFIG_INVALID: 400,
  COMMAND_INVALID: 400,
  AUTH_REQUIRED: 401,
  AUTH_FORBIDDEN: 403,
  ROUTE_NOT_FOUND: 404,
  DEVICE_NOT_FOUND: 404,
  TOKEN_NOT_FOUND: 404,
  PAIRING_CODE_UNKNOWN: 404,
  PAIRING_SESSION_NOT_FOUND: 404,
  PAIRING_DEVICE_NOT_FOUND: 404,
  LOCATION_OVERRIDE_NOT_FOUND: 404,
  PAIRING_SESSION_EXPIRED: 410,
  DEVICE_PAIRED_ELSEWHERE: 409,
  DEVICE_ALREADY_EXISTS: 409,
  COMMAND_QUEUE_FULL: 409,
  COMMAND_NOT_FOUND: 404,
  PRECONDITION_FAILED: 412,
  HUB_AUTH_FAILED: 503,
  TOKEN_NAME_TAKEN: 409,
  RATE_LIMITED: 429,
  HUB_THROTTLED: 503,
  HUB_UNREACHABLE: 503,
  HUB_REQUEST_FAILED: 503,
  CLOUD_STORE_FAILED: 503,
  TIMEOUT: 504,
};

export function httpStatusOf(code: ErrorCode): number {
  return statusByCode[code] ?? 500;
}

function fieldPath(context: string | undefined, v: { instancePath?: string; params?: Record<string, unknown> }): string {
  const missing = v.params?.['missingProperty'];
  const extra = v.params?.['additionalProperty'];
  const leaf = typeof missing === 'string' ? `/${missing}` : typeof extra === 'string' ? `/${extra}` : '';
  return `${context ?? 'request'}${v.instancePath ?? ''}${leaf}`;
}

/** Any error a handler or fastify throws, as a FieldlinkError the error handler can send. */
export function toFieldlinkError(err: unknown): FieldlinkError {
  if (err instanceof FieldlinkError) return err;
  const fe = err as Partial<FastifyError>;
  if (Array.isArray(fe.validation)) {
    const errors = fe.validation.map((v) => ({ field: fieldPath(fe.validationContext, v), message: v.message ?? 'invalid' }));
    const first = errors[0];
    return new FieldlinkError('REQUEST_INVALID', {
      message: first ? `${first.field}: ${first.message}` : 'request does not match the schema',
      details: { field: first?.field, errors },
      cause: err,
    });
  }
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    // Fastify's own client errors: unparsable JSON, unsupported media type, body too large.
    return new FieldlinkError('REQUEST_INVALID', { message: fe.message ?? 'bad request', details: { fastifyCode: fe.code }, cause: err });
  }
  return new FieldlinkError('INTERNAL_ERROR', { cause: err });
}

export function problemOf(err: FieldlinkError): Problem {
  const body: Problem = { code: err.code, message: err.message };
  if (err.details !== undefined) body.details = err.details;
  return body;
}
